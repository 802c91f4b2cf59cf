"""Offline validation of k8s/: kustomize renders base and overlay with no warning; every
document passes the strict schemas of a pinned Kubernetes version (a missing schema is a
failure); checkov's Kubernetes checks fail nothing but reasoned skips; the project's own
rules hold, and each rule catches the error it exists for."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable

import kubernetes_validate
import pytest
import yaml

from tests.k8s import rules
from tests.k8s.conftest import BIN, TARGETS, kustomize

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
def test_kustomize_renders_without_warning(k8s_tree, target):
    out, err = kustomize(k8s_tree, target)
    assert err == "" and out


@pytest.mark.parametrize("target", TARGETS)
def test_strict_schemas(rendered, target):
    errors = []
    for doc in rendered[target]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError,
                kubernetes_validate.InvalidSchemaError) as exc:
            errors.append(f"{rules.ref(doc)} ({doc['apiVersion']}): {exc}")
    assert errors == [], "\n".join(errors)


def test_a_missing_schema_is_a_failure():
    doc = {"apiVersion": "extensions/v1beta1", "kind": "Deployment",
           "metadata": {"name": "old"}, "spec": {}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_checkov(rendered, target, tmp_path):
    manifest = tmp_path / "all.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[target]))
    cmd = [str(BIN / "checkov"), "-f", str(manifest), "--framework", "kubernetes",
           "--skip-download", "--quiet", "--compact", "-o", "json"]
    if SKIPS[target]:
        cmd += ["--skip-check", ",".join(SKIPS[target])]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}"
              for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 100  # the checks really ran


@pytest.mark.parametrize("target", TARGETS)
def test_own_rules_hold(rendered, target):
    problems = [f"[{rule}] {p}" for rule, found in rules.check(rendered[target]).items()
                for p in found]
    assert problems == [], "\n".join(problems)


def test_the_overlay_changes_only_what_an_operator_changes(rendered):
    def strip(docs):
        out = []
        for d in copy.deepcopy(docs):
            d["metadata"]["name"] = d["metadata"]["name"].rsplit("-", 1)[0] \
                if d["kind"] in ("ConfigMap", "Secret") and d["metadata"]["name"] != "dmr-crl" \
                else d["metadata"]["name"]
            out.append(d)
        return {rules.ref(d): d for d in out}
    base, overlay = strip(rendered["base"]), strip(rendered["overlays/example"])
    added = sorted(set(overlay) - set(base))
    assert all(r.startswith("NetworkPolicy/") for r in added) and set(base) <= set(overlay)
    changed = sorted(r for r in base if base[r] != overlay[r])
    assert changed == ["ConfigMap/dmr-router-nginx", "Deployment/dmr-relay",
                       "Deployment/dmr-router", "HorizontalPodAutoscaler/dmr-relay",
                       "StatefulSet/dmr-home"], changed


# --- each rule catches its error: one break of a valid rendering each ------------------

def _first(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"]))


def _relay(docs):
    return _first(docs, "Deployment", "dmr-relay")


def _break_selector(docs):
    _relay(docs)["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "relay"


def _break_service_port(docs):
    _first(docs, "Service", "dmr-home")["spec"]["ports"][0]["targetPort"] = "http"


def _break_numbered_target(docs):
    _first(docs, "Service", "dmr-relay")["spec"]["ports"][0]["targetPort"] = 8443


def _drop_probe(docs):
    del _relay(docs)["spec"]["template"]["spec"]["containers"][1]["readinessProbe"]


def _drop_limits(docs):
    home = _first(docs, "StatefulSet")["spec"]["template"]["spec"]
    del home["containers"][0]["resources"]["limits"]


def _writable_root(docs):
    _first(docs, "Deployment", "dmr-router")["spec"]["template"]["spec"]["containers"][0][
        "securityContext"]["readOnlyRootFilesystem"] = False


def _probe_on_unknown_port(docs):
    _first(docs, "Deployment", "dmr-router")["spec"]["template"]["spec"]["containers"][0][
        "livenessProbe"]["httpGet"]["port"] = "metrics"


def _replicas_under_hpa(docs):
    _relay(docs)["spec"]["replicas"] = 3


def _hpa_to_nothing(docs):
    _first(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "dmr-relays"


def _policy_wrong_port(docs):
    _first(docs, "NetworkPolicy", "dmr-home")["spec"]["ingress"][0]["ports"][0]["port"] = 8443


def _egress_wrong_port(docs):
    _first(docs, "NetworkPolicy", "dmr-router")["spec"]["egress"][0]["ports"][0]["port"] = "http"


def _pdb_both(docs):
    _first(docs, "PodDisruptionBudget", "dmr-relay")["spec"]["maxUnavailable"] = 1


def _pdb_neither(docs):
    del _first(docs, "PodDisruptionBudget", "dmr-router")["spec"]["maxUnavailable"]


BREAKS: dict[str, tuple[str, Callable]] = {
    "selector-off-template": ("selector-matches-template", _break_selector),
    "service-to-missing-port": ("service-targets-named-port", _break_service_port),
    "service-to-a-number": ("service-targets-named-port", _break_numbered_target),
    "no-readiness-probe": ("container-basics", _drop_probe),
    "no-limits": ("container-basics", _drop_limits),
    "writable-root": ("container-basics", _writable_root),
    "probe-on-unknown-port": ("container-basics", _probe_on_unknown_port),
    "replicas-under-hpa": ("hpa-owns-replicas", _replicas_under_hpa),
    "hpa-to-nothing": ("hpa-owns-replicas", _hpa_to_nothing),
    "policy-ingress-wrong-port": ("policy-ports-listen", _policy_wrong_port),
    "policy-egress-wrong-port": ("policy-ports-listen", _egress_wrong_port),
    "pdb-both-bounds": ("pdb-sets-one-bound", _pdb_both),
    "pdb-no-bound": ("pdb-sets-one-bound", _pdb_neither),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_rule_catches_its_error(rendered, name):
    rule, breaks = BREAKS[name]
    docs = copy.deepcopy(rendered["overlays/example"])
    breaks(docs)
    found = {r: p for r, p in rules.check(docs).items() if p}
    assert rule in found, f"{rule} missed {name}"
    # The selector break also orphans the Service and PDB: only selector rules may fire.
    allowed = {rule} | ({"service-targets-named-port", "policy-ports-listen"}
                        if rule == "selector-matches-template" else set())
    assert set(found) <= allowed, found


def test_every_rule_has_a_negative_case():
    assert {rule for rule, _ in BREAKS.values()} == set(rules.RULES)


def test_secrets_come_from_the_generated_folder(k8s_tree, rendered):
    secrets = {d["metadata"]["name"] for d in rendered["base"] if d["kind"] == "Secret"}
    assert "dmr-crl" in secrets and len(secrets) == 4
    assert (k8s_tree / "base/pki/ca.key").exists()
    secret_files = {k for d in rendered["base"] if d["kind"] == "Secret" for k in d["data"]}
    assert "ca.key" not in secret_files  # the CA's key never enters the cluster
