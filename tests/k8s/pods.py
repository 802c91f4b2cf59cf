"""Runs a rendered pod template with docker, as a kubelet would: a sandbox container holds
the pod's network namespace (and its Service names as network aliases), then each
container joins it with its command and args, its environment (fieldRef and $(VAR)
resolved), its volumes (ConfigMaps and Secrets written out as files, emptyDirs and claims
as fresh directories), and its security context (user, group, read-only root, dropped
capabilities, no privilege escalation). Nothing of the pod is restated here: it is read."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCKER = "/usr/bin/docker"
Doc = dict[str, Any]
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}...: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Pod:
    name: str
    ip: str = ""
    containers: list[str] = field(default_factory=list)

    @property
    def sandbox(self) -> str:
        return f"k8s-{self.name}"

    def logs(self) -> str:
        """The last lines of every container's output (for a failing test's message)."""
        return "\n".join(
            f"--- {c}\n"
            + subprocess.run(
                [DOCKER, "logs", "--tail", "40", c],
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            ).stdout
            for c in self.containers
        )


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a known variable is replaced, an unknown one kept."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(c: Doc, fields: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in c.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = expand(item.get("value", ""), env)
    return env


def write_volume(volume: Doc, docs: list[Doc], where: Path, fs_group: int) -> None:
    """A pod volume as a host directory, the way the kubelet fills it."""
    where.mkdir(parents=True)
    if "configMap" in volume:
        source = _named(docs, "ConfigMap", volume["configMap"]["name"])
        for key, text in source.get("data", {}).items():
            (where / key).write_text(text)
            os.chmod(where / key, 0o644)
    elif "secret" in volume:
        source = _named(docs, "Secret", volume["secret"]["secretName"])
        mode = volume["secret"].get("defaultMode", 0o644)
        for key, data in source.get("data", {}).items():
            (where / key).write_bytes(base64.b64decode(data))
            os.chown(where / key, 0, fs_group)
            os.chmod(where / key, mode)
    os.chown(where, 0, fs_group)
    os.chmod(where, 0o755 if ("configMap" in volume or "secret" in volume) else 0o2777)


def _named(docs: list[Doc], kind: str, name: str) -> Doc:
    # kustomize appended a hash to generated names and rewrote every reference to match.
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def run_pod(
    workload: Doc,
    docs: list[Doc],
    *,
    name: str,
    image: str,
    network: str,
    aliases: list[str],
    workdir: Path,
) -> Pod:
    """Start ``workload``'s pod template as pod ``name``; returns once every container runs."""
    spec = workload["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    pod = Pod(name)
    user = f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}"
    alias_args = [a for alias in aliases for a in ("--network-alias", alias)]
    docker(
        "run",
        "-d",
        "--name",
        pod.sandbox,
        "--hostname",
        name,
        "--network",
        network,
        *alias_args,
        "--read-only",
        "--user",
        user,
        "--cap-drop",
        "ALL",
        "--entrypoint",
        "sleep",
        image,
        "infinity",
    )
    pod.containers.append(pod.sandbox)
    address = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
    pod.ip = docker("inspect", "-f", address, pod.sandbox)
    volumes = _volumes(workload, docs, workdir / name, pod_sc.get("fsGroup", 0))
    fields = {"metadata.name": name, "status.podIP": pod.ip}
    for c in spec["containers"]:
        pod.containers.append(_run_container(c, pod, pod_sc, volumes, fields, image))
    return pod


def _volumes(workload: Doc, docs: list[Doc], where: Path, fs_group: int) -> dict[str, Path]:
    found = {}
    claims = [
        {"name": t["metadata"]["name"], "claim": True}
        for t in workload["spec"].get("volumeClaimTemplates", [])
    ]
    for volume in [*workload["spec"]["template"]["spec"].get("volumes", []), *claims]:
        write_volume(volume, docs, where / volume["name"], fs_group)
        found[volume["name"]] = where / volume["name"]
    return found


def _run_container(
    c: Doc, pod: Pod, pod_sc: Doc, volumes: dict[str, Path], fields: dict[str, str], image: str
) -> str:
    sc = {**pod_sc, **c.get("securityContext", {})}
    env = container_env(c, fields)
    argv = [expand(a, env) for a in [*c.get("command", []), *c.get("args", [])]]
    name = f"k8s-{pod.name}-{c['name']}"
    args = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        f"container:{pod.sandbox}",
        "--user",
        f"{sc['runAsUser']}:{sc['runAsGroup']}",
    ]
    if "fsGroup" in pod_sc:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [a for cap in sc.get("capabilities", {}).get("drop", []) for a in ("--cap-drop", cap)]
    args += [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    for m in c.get("volumeMounts", []):
        suffix = ":ro" if m.get("readOnly") else ""
        args += ["--volume", f"{volumes[m['name']]}:{m['mountPath']}{suffix}"]
    docker(*args, "--entrypoint", argv[0], image, *argv[1:])
    return name


def remove(names: list[str]) -> None:
    if names:
        docker("rm", "-f", *names, check=False)
