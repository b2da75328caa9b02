#!/usr/bin/env python3
"""Checks the deployment files under deploy/ (run by .ci/run; no container runtime needed).

- Every YAML file parses; Kubernetes objects name apiVersion, kind and metadata.name, and every
  Vitrina container has liveness and readiness probes; compose services have an image or a build.
- Every VITRINA_* variable named in deploy/ or config/*.example.toml is an option of the
  configuration reference (docs/configuration.md, generated from the code) or a variable the
  binary reads itself (VITRINA_LOG).
- A file that runs a cluster (VITRINA_CLUSTER__ENABLED, --cluster, --join, or `enabled = true`
  under [cluster]) also gives etcd endpoints: a cluster node without them refuses to start.
- The systemd unit has the keys a service needs.
- The Grafana dashboard parses, and every metric it queries is one the code records (a string
  literal in src/), so a renamed metric breaks CI, not a dashboard.
Exit status 1 with one line per problem.
"""
import glob
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
READ_BY_THE_BINARY = {"VITRINA_LOG"}


def documented_variables():
    with open(os.path.join(ROOT, "docs/configuration.md")) as f:
        return set(re.findall(r"`(VITRINA_[A-Z0-9_]+)`", f.read()))


def check_kubernetes(path, docs, problems):
    for doc in docs:
        if doc is None:
            continue
        for field in ("apiVersion", "kind"):
            if field not in doc:
                problems.append(f"{path}: an object without {field}")
        if not doc.get("metadata", {}).get("name"):
            problems.append(f"{path}: a {doc.get('kind')} without metadata.name")
        if doc.get("kind") == "StatefulSet":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] == "vitrina":
                    for probe in ("livenessProbe", "readinessProbe"):
                        if probe not in c:
                            problems.append(f"{path}: container vitrina has no {probe}")


def check_compose(path, doc, problems):
    services = doc.get("services") or {}
    if not services:
        problems.append(f"{path}: no services")
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            problems.append(f"{path}: service {name} has neither image nor build")


def metric_names_in_code():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "src/**/*.rs"), recursive=True):
        with open(path) as f:
            names.update(re.findall(r'"(vitrina_[a-z0-9_]+)"', f.read()))
    return names


def check_dashboard(rel, text, problems):
    import json
    try:
        dash = json.loads(text)
    except ValueError as e:
        problems.append(f"{rel}: does not parse: {e}")
        return
    known = metric_names_in_code()
    for panel in dash.get("panels", []):
        for target in panel.get("targets", []):
            for name in re.findall(r"\b(vitrina_[a-z0-9_]+)", target.get("expr", "")):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                if name not in known and base not in known:
                    problems.append(f"{rel}: panel {panel.get('title')!r} queries {name}, which the code does not record")


def check_cluster_has_etcd(rel, text, problems):
    if rel.endswith(".toml"):
        clustered = re.search(r"^\[cluster\][^\[]*^enabled\s*=\s*true", text, re.M | re.S)
        has_etcd = re.search(r"^\[cluster\.etcd\][^\[]*^endpoints\s*=\s*\[\s*\S", text, re.M | re.S)
    else:
        clustered = re.search(r"VITRINA_CLUSTER__ENABLED\b|--cluster\b|--join\b", text)
        has_etcd = re.search(r"VITRINA_CLUSTER__ETCD__ENDPOINTS\b", text)
    if clustered and not has_etcd:
        problems.append(f"{rel}: runs a cluster without etcd endpoints (cluster.etcd.endpoints)")


def main():
    problems = []
    known = documented_variables() | READ_BY_THE_BINARY
    files = sorted(glob.glob(os.path.join(ROOT, "deploy/**/*"), recursive=True))
    files += sorted(glob.glob(os.path.join(ROOT, "config/*.example.toml")))
    for path in files:
        if not os.path.isfile(path):
            continue
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            text = f.read()
        for var in sorted(set(re.findall(r"VITRINA_[A-Z0-9_]*[A-Z0-9]", text))):
            if var not in known:
                problems.append(f"{rel}: {var} is not an option (docs/configuration.md)")
        if path.endswith((".yaml", ".yml")):
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError as e:
                problems.append(f"{rel}: does not parse: {e}")
                continue
            if "/kubernetes/" in path:
                check_kubernetes(rel, docs, problems)
            elif "/compose/" in path:
                check_compose(rel, docs[0], problems)
        if not path.endswith(".json"):
            check_cluster_has_etcd(rel, text, problems)
        if path.endswith(".json") and "/grafana/" in path:
            check_dashboard(rel, text, problems)
        if path.endswith(".service"):
            for key in ("ExecStart=", "User=", "[Install]"):
                if key not in text:
                    problems.append(f"{rel}: no {key}")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"deploy: {len(files)} files checked, 0 problems")


if __name__ == "__main__":
    main()
