"""Offline validation of k8s/: kustomize renders base and overlay with no warning; every
document passes the strict schemas of a pinned Kubernetes version (a missing schema is a
failure); checkov's Kubernetes checks fail nothing but reasoned skips; the project's own
rules hold, and each rule catches the error it exists for."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s import rules
from tests.k8s.conftest import BIN, ROOT, TARGETS, kustomize

pytestmark = pytest.mark.k8s
KUBERNETES = "1.30"  # the oldest minor release still supported upstream when this was written
# checkov's skips, with the reason each is right (the base alone; the overlay has none).
BASE_SKIPS = {
    "CKV_K8S_43": "the base pins the package version's tag; an overlay pins the digest "
    "(the example overlay does, and passes this check)",
    "CKV2_K8S_6": "NetworkPolicies are the component an overlay takes (the example does)",
}
SKIPS = {"base": BASE_SKIPS, "overlays/example": {}}


@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_renders_the_checkout_without_warning(target):
    out, err = kustomize(ROOT / "k8s", target)  # a clean clone holds no pki/: none needed
    assert err == "" and out


def test_kustomize_renders_the_secrets_from_make_secrets(k8s_tree):
    out, err = kustomize(k8s_tree, "secrets")
    assert err == "" and out


def test_the_secrets_render_their_namespace_first_on_a_fresh_cluster(rendered):
    """README step 2 applies k8s/secrets before the base exists: it creates the namespace
    every Secret of it lives in."""
    docs = rendered["secrets"]
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    assert namespaces == {"dmr"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"dmr"}


@pytest.mark.parametrize("target", [*TARGETS, "secrets"])
def test_strict_schemas(rendered, target):
    errors = []
    for doc in rendered[target]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
        ) as exc:
            errors.append(f"{rules.ref(doc)} ({doc['apiVersion']}): {exc}")
    assert errors == [], "\n".join(errors)


def test_a_missing_schema_is_a_failure():
    doc = {
        "apiVersion": "extensions/v1beta1",
        "kind": "Deployment",
        "metadata": {"name": "old"},
        "spec": {},
    }
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_checkov(rendered, target, tmp_path):
    manifest = tmp_path / "all.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[target]))
    cmd = [
        str(BIN / "checkov"),
        "-f",
        str(manifest),
        "--framework",
        "kubernetes",
        "--skip-download",
        "--quiet",
        "--compact",
        "-o",
        "json",
    ]
    if SKIPS[target]:
        cmd += ["--skip-check", ",".join(SKIPS[target])]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [] and summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 100  # the checks really ran


@pytest.mark.parametrize("target", TARGETS)
def test_own_rules_hold(rendered, target):
    problems = [
        f"[{rule}] {p}" for rule, found in rules.check(rendered[target]).items() for p in found
    ]
    assert problems == [], "\n".join(problems)


def test_the_overlay_changes_only_what_an_operator_changes(rendered):
    def strip(docs):  # generated ConfigMaps' names end in their content's hash
        out = copy.deepcopy(docs)
        for d in (d for d in out if d["kind"] == "ConfigMap"):
            d["metadata"]["name"] = d["metadata"]["name"].rsplit("-", 1)[0]
        return {rules.ref(d): d for d in out}

    base, overlay = strip(rendered["base"]), strip(rendered["overlays/example"])
    added = sorted(set(overlay) - set(base))
    assert all(r.startswith("NetworkPolicy/") for r in added) and set(base) <= set(overlay)
    changed = sorted(r for r in base if base[r] != overlay[r])
    assert changed == [
        "ConfigMap/dmr-router-nginx",
        "Deployment/dmr-relay",
        "Deployment/dmr-router",
        "HorizontalPodAutoscaler/dmr-relay",
        "StatefulSet/dmr-home",
    ], changed


# --- each rule catches its error: one break of a valid rendering each ------------------

DROP = object()  # the value that deletes the key instead of setting it
POD = ("spec", "template", "spec", "containers")
# name: (the rule that must catch it, the object, the path in it, the value put there)
BREAKS: dict[str, tuple[str, str, tuple, Any]] = {
    "selector-off-template": (
        "selector-matches-template",
        "Deployment/dmr-relay",
        ("spec", "selector", "matchLabels", "app.kubernetes.io/name"),
        "relay",
    ),
    "service-to-missing-port": (
        "service-targets-named-port",
        "Service/dmr-home",
        ("spec", "ports", 0, "targetPort"),
        "http",
    ),
    "service-to-a-number": (
        "service-targets-named-port",
        "Service/dmr-relay",
        ("spec", "ports", 0, "targetPort"),
        8443,
    ),
    "no-readiness-probe": (
        "container-basics",
        "Deployment/dmr-relay",
        (*POD, 1, "readinessProbe"),
        DROP,
    ),
    "no-limits": (
        "container-basics",
        "StatefulSet/dmr-home",
        (*POD, 0, "resources", "limits"),
        DROP,
    ),
    "writable-root": (
        "container-basics",
        "Deployment/dmr-router",
        (*POD, 0, "securityContext", "readOnlyRootFilesystem"),
        False,
    ),
    "probe-on-unknown-port": (
        "container-basics",
        "Deployment/dmr-router",
        (*POD, 0, "livenessProbe", "httpGet", "port"),
        "metrics",
    ),
    "replicas-under-hpa": ("hpa-owns-replicas", "Deployment/dmr-relay", ("spec", "replicas"), 3),
    "hpa-to-nothing": (
        "hpa-owns-replicas",
        "HorizontalPodAutoscaler/dmr-relay",
        ("spec", "scaleTargetRef", "name"),
        "dmr-relays",
    ),
    "policy-ingress-wrong-port": (
        "policy-ports-listen",
        "NetworkPolicy/dmr-home",
        ("spec", "ingress", 0, "ports", 0, "port"),
        8443,
    ),
    "policy-egress-wrong-port": (
        "policy-ports-listen",
        "NetworkPolicy/dmr-router",
        ("spec", "egress", 0, "ports", 0, "port"),
        "http",
    ),
    "pdb-both-bounds": (
        "pdb-sets-one-bound",
        "PodDisruptionBudget/dmr-relay",
        ("spec", "maxUnavailable"),
        1,
    ),
    "pdb-no-bound": (
        "pdb-sets-one-bound",
        "PodDisruptionBudget/dmr-router",
        ("spec", "maxUnavailable"),
        DROP,
    ),
    "policy-without-namespace": (
        "namespaced",
        "NetworkPolicy/dmr-default-deny",
        ("metadata", "namespace"),
        DROP,
    ),
}


def broken(docs: list[dict], target: str, path: tuple, value: Any) -> list[dict]:
    """A copy of ``docs`` with ``value`` at ``path`` in object ``target`` (or that key gone)."""
    docs = copy.deepcopy(docs)
    node = next(d for d in docs if rules.ref(d) == target)
    for step in path[:-1]:
        node = node[step]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return docs


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_rule_catches_its_error(rendered, name):
    rule, target, path, value = BREAKS[name]
    docs = broken(rendered["overlays/example"], target, path, value)
    found = {r: p for r, p in rules.check(docs).items() if p}
    assert rule in found, f"{rule} missed {name}"
    # The selector break also orphans the Service and PDB: only selector rules may fire.
    allowed = {rule} | (
        {"service-targets-named-port", "policy-ports-listen"}
        if rule == "selector-matches-template"
        else set()
    )
    assert set(found) <= allowed, found


def test_every_rule_has_a_negative_case():
    assert {rule for rule, *_ in BREAKS.values()} == set(rules.RULES)


def test_secrets_are_the_ones_the_pods_mount(rendered, k8s_tree):
    secrets = {d["metadata"]["name"]: d for d in rendered["secrets"] if d["kind"] == "Secret"}
    mounted = {
        v["secret"]["secretName"]
        for t in TARGETS
        for w in rules.workloads(rendered[t])
        for v in w["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in v
    }
    assert mounted == set(secrets) == {"dmr-home-tls", "dmr-relay-tls", "dmr-router-tls", "dmr-crl"}
    assert {d["metadata"].get("namespace") for d in secrets.values()} == {"dmr"}
    assert (k8s_tree / "secrets/pki/ca.key").exists()
    keys = {k for d in secrets.values() for k in d["data"]}
    assert "ca.key" not in keys  # the CA's key never enters the cluster
    assert not any(d["kind"] == "Secret" for t in TARGETS for d in rendered[t])
