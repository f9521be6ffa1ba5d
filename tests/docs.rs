//! The user documentation stays true to the program: every setting of `wva run` is in the
//! configuration reference, and every relative link of the docs leads to a file that exists.

use std::path::{Path, PathBuf};

use clap::Args;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_configuration_reference_lists_every_setting_of_wva_run() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs");
    let command = wva::cli::run::RunArgs::augment_args(clap::Command::new("run"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        seen += 1;
        let env = env.to_string_lossy();
        let flag = format!("--{}", arg.get_long().unwrap_or_default());
        if !reference.contains(&format!("`{env}`")) || !reference.contains(&flag) {
            missing.push(format!("{env} ({flag})"));
        }
    }
    assert!(seen >= 30, "only {seen} settings found");
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not list {missing:?}"
    );
    // The two global ones, defined on the top-level command.
    for env in ["`LOG_LEVEL`", "`LOG_FORMAT`"] {
        assert!(reference.contains(env), "{env}");
    }
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("README.md"),
        root().join("charts/workload-variant-autoscaler/README.md"),
    ];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

#[test]
fn relative_links_lead_to_existing_files() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("markdown");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || target.starts_with('#') || target.contains(' ') {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let resolved = file.parent().expect("dir").join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_readme_links_every_guide() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let entry = entry.expect("entry");
        // Figures (docs/img) are linked from the guides that show them.
        if entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        assert!(
            readme.contains(&format!("(docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command_verbatim() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split("## Run the tests")
        .nth(1)
        .expect("a Run the tests section");
    let command = section
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.lines().next())
        .expect("a command block");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == command.trim()),
        ".ci/run does not run the README's test command {command:?}"
    );
    assert!(ci.contains("cargo fmt --all --check"));
    assert!(ci.contains("cargo clippy --all-targets --workspace -- -D warnings"));
}
