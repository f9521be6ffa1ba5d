//! No image can be built on this machine, so the Dockerfile is checked against the workspace it
//! builds: a new member crate or bench that the dependency stage does not stub would break the
//! image build long after the change that added it.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `[[bench]]` names declared in a manifest.
fn benches(manifest: &str) -> Vec<String> {
    toml_like::parse(manifest).benches
}

/// Just enough of TOML for the two facts needed here (the workspace members and the bench
/// names), without a TOML dependency.
mod toml_like {
    pub struct Doc {
        pub members: Vec<String>,
        pub benches: Vec<String>,
    }

    pub fn parse(text: &str) -> Doc {
        let mut doc = Doc {
            members: Vec::new(),
            benches: Vec::new(),
        };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section == "[workspace]" && line.starts_with("members") {
                doc.members = line
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect();
            }
            if section == "[[bench]]" && line.starts_with("name") {
                doc.benches
                    .push(line.split('"').nth(1).unwrap_or_default().to_string());
            }
        }
        doc
    }
}

#[test]
fn the_dependency_stage_stubs_every_crate_and_bench() {
    let dockerfile = read("Dockerfile");
    let root = read("Cargo.toml");
    let members = toml_like::parse(&root).members;
    assert!(members.len() >= 3, "{members:?}");
    for member in members.iter().filter(|m| m.as_str() != ".") {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/Cargo.toml")),
            "the Dockerfile does not copy {member}/Cargo.toml"
        );
        assert!(
            dockerfile.contains(&format!("COPY {member}/src {member}/src")),
            "the Dockerfile does not copy {member}/src"
        );
        for bench in benches(&read(&format!("{member}/Cargo.toml"))) {
            assert!(
                dockerfile.contains(&format!("> {member}/benches/{bench}.rs")),
                "the dependency stage does not stub {member}/benches/{bench}.rs"
            );
        }
    }
    for bench in benches(&root) {
        assert!(
            dockerfile.contains(&format!("> benches/{bench}.rs")),
            "the dependency stage does not stub benches/{bench}.rs"
        );
    }
}

#[test]
fn the_runtime_is_distroless_non_root_and_runs_wva() {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("a final stage");
    assert!(runtime.starts_with("${RUNTIME_IMAGE}"), "{runtime}");
    let image = base_images(&dockerfile)["RUNTIME_IMAGE"].clone();
    assert!(image.starts_with("gcr.io/distroless/"), "{image}");
    assert!(image.contains(":nonroot@"), "{image}");
    assert!(runtime.contains("USER 65532:65532"));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/wva\"]"));
    assert!(runtime.contains("CMD [\"run\"]"));
    // The chart runs the same user, and mounts the decision log where the image has it.
    let pod = read("charts/workload-variant-autoscaler/templates/controller/_pod.tpl");
    assert!(pod.contains("runAsUser: 65532") && pod.contains("mountPath: /var/lib/wva"));
    assert!(runtime.contains("/var/lib/wva"));
    // The binary built is the one the image runs.
    assert!(read("Cargo.toml").contains("[[bin]]\nname = \"wva\""));
    assert!(dockerfile.contains("cargo build --release --locked --bin wva"));
    // The build script and the protocol it compiles are in the build context.
    assert!(
        dockerfile.contains("COPY build.rs build.rs") && dockerfile.contains("COPY proto proto")
    );
    assert!(
        !read(".dockerignore")
            .lines()
            .any(|l| l.trim() == "proto" || l.trim() == "build.rs")
    );
}

/// The `ARG NAME=image` lines that stages are built `FROM`.
fn base_images(dockerfile: &str) -> std::collections::BTreeMap<String, String> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| dockerfile.contains(&format!("FROM ${{{name}}}")))
        .map(|(name, image)| (name.to_string(), image.to_string()))
        .collect()
}

/// Issue 19: every base image is pinned by digest (a tag can be moved under a rebuild); the
/// digest is a full SHA-256.
#[test]
fn every_base_image_is_pinned_by_digest() {
    let dockerfile = read("Dockerfile");
    let images = base_images(&dockerfile);
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    for stage in stages {
        let image = stage.split_whitespace().next().expect("an image");
        let name = image
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or_else(|| panic!("FROM {image}: expected an image argument"));
        let pinned = &images[name];
        let digest = pinned
            .split_once("@sha256:")
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("{name}={pinned}: not pinned by digest"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {digest} is not a SHA-256 digest"
        );
    }
}

/// The image starts the controller with the allocator's environment, every variable with the
/// value `wva::allocator` names (the figures behind it are there).
#[test]
fn the_image_sets_the_allocators_environment() {
    let dockerfile = read("Dockerfile");
    // `ENV A=1 \` continued lines joined, then split into assignments.
    let env: Vec<(String, String)> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|rest| {
            rest.split_whitespace()
                .filter_map(|a| a.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, value) in wva::allocator::ENVIRONMENT {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "the image does not set {name}={value}: {env:?}"
        );
    }
}
