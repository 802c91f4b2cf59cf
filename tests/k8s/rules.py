"""The project's own checks of rendered manifests: what the schemas and checkov do not see.

Each rule takes every document of one rendering and returns its problems, one line each
("Kind/name: what is wrong"). tests/k8s/fixtures/ holds a broken rendering per rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Doc = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def ref(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d.get("kind") in WORKLOADS)


def template_labels(doc: Doc) -> dict[str, str]:
    return doc["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def containers(doc: Doc) -> list[Doc]:
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected(docs: list[Doc], selector: dict[str, str]) -> list[Doc]:
    return [w for w in workloads(docs) if selects(selector, template_labels(w))]


def container_ports(doc: Doc) -> list[Doc]:
    return [
        p for c in doc["spec"]["template"]["spec"].get("containers", []) for p in c.get("ports", [])
    ]


def has_port(ports: list[Doc], port: Any) -> bool:
    key = "name" if isinstance(port, str) else "containerPort"
    return any(p.get(key) == port for p in ports)


# --- the rules -----------------------------------------------------------------------


def selector_matches_template(docs: list[Doc]) -> list[str]:
    """A workload's selector matches its own template; a Service or PDB selects a pod."""
    problems = []
    for w in workloads(docs):
        if not selects(w["spec"]["selector"].get("matchLabels", {}), template_labels(w)):
            problems.append(f"{ref(w)}: spec.selector does not match the template's labels")
    for d in docs:
        if d.get("kind") == "Service" and not selected(docs, d["spec"].get("selector", {})):
            problems.append(f"{ref(d)}: its selector matches no pod template")
        if d.get("kind") == "PodDisruptionBudget" and not selected(
            docs, d["spec"]["selector"].get("matchLabels", {})
        ):
            problems.append(f"{ref(d)}: its selector matches no pod template")
    return problems


def service_targets_named_port(docs: list[Doc]) -> list[str]:
    """Each Service port targets a named container port that the selected pods declare."""
    problems = []
    for svc in (d for d in docs if d.get("kind") == "Service"):
        pods = selected(docs, svc["spec"].get("selector", {}))
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort")
            if not isinstance(target, str):
                problems.append(
                    f"{ref(svc)}: port {port.get('port')} targets {target!r}, "
                    "not a named container port"
                )
            elif not all(has_port(container_ports(p), target) for p in pods) or not pods:
                problems.append(f"{ref(svc)}: no container port named {target!r}")
    return problems


def container_basics(docs: list[Doc]) -> list[str]:
    """Every container: both probes (on a port it declares), requests and limits, and a
    restricted security context."""
    problems = []
    for w in workloads(docs):
        for c in containers(w):
            where = f"{ref(w)} container {c['name']}"
            problems += [f"{where}: {p}" for p in _container_problems(c)]
    return problems


def _container_problems(c: Doc) -> Iterator[str]:
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in c:
            yield f"no {probe}"
        elif "httpGet" in c[probe] and not has_port(
            c.get("ports", []), c[probe]["httpGet"]["port"]
        ):
            yield f"{probe} on port {c[probe]['httpGet']['port']!r}, which it does not declare"
    resources = c.get("resources", {})
    for part in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(part, {}))
        if missing:
            yield f"resources.{part} lacks {', '.join(sorted(missing))}"
    sc = c.get("securityContext", {})
    wanted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    for key, value in wanted.items():
        if sc.get(key) is not value:
            yield f"securityContext.{key} is not {str(value).lower()}"
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        yield "securityContext.capabilities does not drop ALL"


def hpa_owns_replicas(docs: list[Doc]) -> list[str]:
    """Each HPA targets an existing Deployment, and that Deployment sets no replicas."""
    problems = []
    deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
    for hpa in (d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        found = deployments.get(target["name"]) if target.get("kind") == "Deployment" else None
        if found is None:
            problems.append(
                f"{ref(hpa)}: targets {target.get('kind')}/{target['name']}, "
                "which is not a Deployment here"
            )
        elif "replicas" in found["spec"]:
            problems.append(f"{ref(found)}: sets replicas, which its HPA {ref(hpa)} owns")
    return problems


def policy_ports_listen(docs: list[Doc]) -> list[str]:
    """Each NetworkPolicy flow names a port a container really listens on: an ingress port
    on the selected pods, an egress port to pods on those pods (egress to addresses
    outside the cluster, ipBlock, names an external port and is not checked)."""
    problems = []
    for pol in (d for d in docs if d.get("kind") == "NetworkPolicy"):
        own = selected(docs, pol["spec"].get("podSelector", {}).get("matchLabels", {}))
        for rule in pol["spec"].get("ingress", []):
            problems += _flow_problems(pol, "ingress", rule, own)
        for rule in pol["spec"].get("egress", []):
            peers = [
                p for p in rule.get("to", []) if "podSelector" in p and "namespaceSelector" not in p
            ]
            for peer in peers:
                pods = selected(docs, peer["podSelector"].get("matchLabels", {}))
                if not pods:
                    problems.append(f"{ref(pol)}: egress peer selects no pod template")
                problems += _flow_problems(pol, "egress", rule, pods)
    return problems


def _flow_problems(pol: Doc, way: str, rule: Doc, pods: list[Doc]) -> list[str]:
    return [
        f"{ref(pol)}: {way} port {port['port']!r} is no port of {ref(p)}"
        for port in rule.get("ports", [])
        for p in pods
        if not has_port(container_ports(p), port["port"])
    ]


def pdb_sets_one_bound(docs: list[Doc]) -> list[str]:
    """A PodDisruptionBudget sets exactly one of minAvailable and maxUnavailable."""
    return [
        f"{ref(d)}: sets {'both' if n == 2 else 'neither'} of minAvailable and maxUnavailable"
        for d in docs
        if d.get("kind") == "PodDisruptionBudget"
        for n in [len({"minAvailable", "maxUnavailable"} & set(d["spec"]))]
        if n != 1
    ]


CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")


def namespaced(docs: list[Doc]) -> list[str]:
    """Every namespaced object names its namespace (a component's objects come without
    one: an overlay that forgets ``namespace:`` would apply them to kubectl's context)."""
    return [
        f"{ref(d)}: no metadata.namespace"
        for d in docs
        if d.get("kind") not in CLUSTER_SCOPED and not d["metadata"].get("namespace")
    ]


RULES: dict[str, Callable[[list[Doc]], list[str]]] = {
    "selector-matches-template": selector_matches_template,
    "service-targets-named-port": service_targets_named_port,
    "container-basics": container_basics,
    "hpa-owns-replicas": hpa_owns_replicas,
    "policy-ports-listen": policy_ports_listen,
    "pdb-sets-one-bound": pdb_sets_one_bound,
    "namespaced": namespaced,
}


def check(docs: list[Doc]) -> dict[str, list[str]]:
    """Every rule's problems, by rule name (an empty list: the rule holds)."""
    return {name: rule(docs) for name, rule in RULES.items()}
