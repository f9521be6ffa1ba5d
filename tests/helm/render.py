"""Renders and lints the chart with Helm's own engine (the helm-python-sdk package), for the
Rust chart tests (tests/chart.rs).

Reads one JSON request on stdin and writes one JSON answer on stdout:

  {"command": "helm install wva ./charts/workload-variant-autoscaler -n ns --set a=b ...",
   "env": {"WVA_NS": "..."}, "chart": "/abs/path/of/the/chart", "lint": true}

The command line is read the way helm reads it: the release name, the chart (any path ending
in the chart's directory name means the chart under test), -n/--namespace, -f/--values,
--set, --set-string, --set-json, --set-file and --set-literal, merged in helm's order. Flags
that only matter against a cluster (--create-namespace, --wait, ...) are accepted and ignored.

Answer: {"release", "namespace", "values", "manifests": {template: text}, "lint": report}, or
{"error": "..."} when helm refuses the command, the values or a template.
"""

import json
import os
import shlex
import string
import sys

try:
    import helm_python as helm
except ImportError:
    print(json.dumps({"error": "the Python package helm-python-sdk is missing: pip install helm-python-sdk"}))
    sys.exit(0)

IGNORED_FLAGS = {"--create-namespace", "--wait", "--atomic", "--debug", "--dry-run", "--install", "-i", "--skip-crds"}


def merge(base, override):
    """Helm's coalescing of two value trees: maps merge key by key, anything else replaces,
    null deletes."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse(command, env, chart_dir):
    words = shlex.split(expand(command, env))
    if len(words) < 2 or words[0] != "helm" or words[1] not in ("install", "upgrade", "template"):
        raise ValueError(f"expected 'helm install|upgrade|template ...', got {command!r}")
    words = words[2:]
    positional, namespace = [], "default"
    files, sets = [], {"json": [], "set": [], "string": [], "file": [], "literal": []}
    i = 0
    while i < len(words):
        w = words[i]
        if "=" in w and w.startswith("--"):
            flag, arg = w.split("=", 1)
            step = 1
        else:
            flag, arg = w, (words[i + 1] if i + 1 < len(words) else None)
            step = 2
        if flag in ("-n", "--namespace"):
            namespace = arg
        elif flag in ("-f", "--values"):
            files.append(arg)
        elif flag == "--set":
            sets["set"].append(arg)
        elif flag == "--set-string":
            sets["string"].append(arg)
        elif flag == "--set-json":
            sets["json"].append(arg)
        elif flag == "--set-file":
            sets["file"].append(arg)
        elif flag == "--set-literal":
            sets["literal"].append(arg)
        elif w in IGNORED_FLAGS:
            step = 1
        elif w.startswith("-"):
            raise ValueError(f"unsupported helm flag {w!r}")
        else:
            positional.append(w)
            step = 1
        i += step
    if len(positional) != 2:
        raise ValueError(f"expected a release name and a chart, got {positional!r}")
    release, chart = positional
    if os.path.basename(os.path.normpath(chart)) != os.path.basename(os.path.normpath(chart_dir)):
        raise ValueError(f"the command installs {chart!r}, not this chart")
    values = {}
    for path in files:
        if not os.path.isabs(path):
            # As the seed guides run them: from the chart's directory or from the charts/ one.
            candidates = [os.path.join(chart_dir, os.path.basename(path)), path]
            path = next((c for c in candidates if os.path.exists(c)), path)
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm.values_from_yaml(f.read()))
    for kind, parser in (
        ("json", helm.parse_set_json),
        ("set", helm.parse_set_string),
        ("string", helm.parse_set_string_values),
        ("file", helm.parse_set_file),
        ("literal", helm.parse_set_literal),
    ):
        for expr in sets[kind]:
            values = merge(values, parser(expr))
    return release, namespace, values


def expand(command, env):
    """$VAR and ${VAR} as the shell would: `env` first, then the process environment."""
    return string.Template(command).safe_substitute({**os.environ, **env})


def main():
    request = json.load(sys.stdin)
    chart_dir = request["chart"]
    try:
        release, namespace, values = parse(request["command"], request.get("env", {}), chart_dir)
        helm.validate_release_name(release)
        with helm.Chart.load(chart_dir) as chart:
            merged = chart.merge_values(values)
            chart.validate_schema(merged)
            manifests = chart.render(values=values, name=release, namespace=namespace, is_install=True)
        answer = {"release": release, "namespace": namespace, "values": merged, "manifests": manifests}
        if request.get("lint"):
            answer["lint"] = helm.lint(chart_dir, values, strict=True, namespace=namespace, kube_version="v1.30.0")
    except (helm.HelmError, ValueError, OSError) as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
