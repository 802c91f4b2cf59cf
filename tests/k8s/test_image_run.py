"""The image run as the manifests say: home, two relays and the router started with docker
from the rendered manifests (command, args, environment, config files, secrets, mounts,
user, read-only root: all parsed from kustomize's output, see pods.py), plus a recipient;
the probes answer as the manifests expect, and a message sent through the router
container is delivered. The image is built from the Debian package (DMR_K8S_IMAGE names
one scripts/k8s.sh built in this run; otherwise this test builds it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from tests.k8s import pods
from tests.k8s.conftest import BIN, ROOT, kustomize

pytestmark = pytest.mark.k8s
READY_WITHIN = 90.0
RECIPIENT = "dmr-recipient"


@pytest.fixture(scope="module")
def image() -> str:
    if os.environ.get("DMR_K8S_IMAGE"):
        return os.environ["DMR_K8S_IMAGE"]
    built = subprocess.run(  # on debian:trixie-slim, or one made from the mirror
        [str(ROOT / "packaging/build-image.sh"), "--tag", "k8s-dmr-appliance"],
        capture_output=True,
        text=True,
        check=True,
    )
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def site(k8s_tree, image, tmp_path_factory):
    """The base and the Secrets with the image built here, rendered by kustomize (its
    `images:` entry), as `kubectl apply -k k8s/secrets` and an overlay would apply them."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [
            "dmr",
            "pki",
            "issue",
            "--dir",
            str(k8s_tree / "secrets/pki"),
            "--kind",
            "server",
            "--name",
            "recipient",
            "--dns",
            RECIPIENT,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    with running(render(k8s_tree, "run", image), image, k8s_tree, tmp_path_factory) as started:
        yield started


def render(k8s_tree: Path, target: str, image: str, **fields) -> list[dict]:
    """k8s/TARGET written as an overlay of the base with the image built here (its
    `images:` entry) and FIELDS (namespace, components), rendered by kustomize with the
    Secrets: apart, as both name the namespace (k8s/secrets creates it, for a fresh cluster)."""
    name, tag = image.rsplit(":", 1)
    run = k8s_tree / target
    run.mkdir(exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../base"],
        **fields,
        "images": [{"name": "dmr-appliance", "newName": name, "newTag": tag}],
    }
    (run / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return [
        d for t in (target, "secrets") for d in yaml.safe_load_all(kustomize(k8s_tree, t)[0]) if d
    ]


@contextmanager
def running(docs: list[dict], image: str, k8s_tree: Path, tmp_path_factory) -> Iterator[Site]:
    """A Site on a docker network of its own; its containers and network removed after."""
    network = f"k8s-net-{uuid.uuid4().hex[:8]}"
    pods.docker("network", "create", network)
    started: list[pods.Pod] = []
    try:
        yield Site(
            docs, image, network, k8s_tree / "secrets/pki", tmp_path_factory.mktemp("pods"), started
        )
    finally:
        pods.remove([c for pod in started for c in pod.containers])
        pods.docker("network", "rm", network, check=False)


class Site:
    def __init__(self, docs, image, network, pki: Path, workdir: Path, started) -> None:
        self.docs, self.image, self.network, self.pki = docs, image, network, pki
        self.workdir, self.started = workdir, started

    def workload(self, kind: str, name: str) -> dict:
        return next(d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name)

    def services_of(self, workload: dict) -> list[str]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        return [
            s["metadata"]["name"]
            for s in self.docs
            if s["kind"] == "Service"
            and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]

    def start(self, kind: str, name: str, pod_name: str) -> pods.Pod:
        workload = self.workload(kind, name)
        pod = pods.run_pod(
            workload,
            self.docs,
            name=pod_name,
            image=self.image,
            network=self.network,
            aliases=self.services_of(workload),
            workdir=self.workdir,
        )
        self.started.append(pod)
        return pod


def probe_ok(pod: pods.Pod, container: dict, probe: dict) -> bool:
    if "exec" in probe:
        answer = subprocess.run(
            [pods.DOCKER, "exec", f"k8s-{pod.name}-{container['name']}", *probe["exec"]["command"]],
            capture_output=True,
            check=False,
        )
        return answer.returncode == 0
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    try:
        return (
            requests.get(f"http://{pod.ip}:{port}{probe['httpGet']['path']}", timeout=3).status_code
            == 200
        )
    except requests.RequestException:
        return False


def wait_ready(pod: pods.Pod, workload: dict) -> dict[str, float]:
    """Every container's readiness, then liveness, probe as the manifest states it; returns
    the seconds each container took to become ready."""
    started, took = time.monotonic(), {}
    for c in workload["spec"]["template"]["spec"]["containers"]:
        while not probe_ok(pod, c, c["readinessProbe"]):
            assert time.monotonic() - started < READY_WITHIN, (
                f"{pod.name}/{c['name']} not ready in {READY_WITHIN:.0f} s\n{pod.logs()}"
            )
            time.sleep(1)
        took[c["name"]] = round(time.monotonic() - started, 1)
        assert probe_ok(pod, c, c["livenessProbe"]), f"{pod.name}/{c['name']} not live"
    return took


def test_a_message_through_the_router_container(site):
    recipient_out = site.workdir / "recipient"
    recipient_out.mkdir(mode=0o777)
    pods.docker(
        "run",
        "-d",
        "--name",
        f"k8s-{RECIPIENT}",
        "--network",
        site.network,
        "--network-alias",
        RECIPIENT,
        "--read-only",
        "--user",
        "0:0",
        "-v",
        f"{site.pki}:/pki:ro",
        "-v",
        f"{recipient_out}:/out",
        "--entrypoint",
        "dmr",
        site.image,
        "recipient",
        "--bind",
        "0.0.0.0:9443",
        "--cert",
        "/pki/server/recipient.pem",
        "--key",
        "/pki/server/recipient.key",
        "--ca",
        "/pki/ca.pem",
        "--log",
        "/out/deliveries.jsonl",
    )
    site.started.append(pods.Pod(RECIPIENT, containers=[f"k8s-{RECIPIENT}"]))

    home = site.start("StatefulSet", "dmr-home", "dmr-home-0")
    relays = [
        site.start("Deployment", "dmr-relay", f"dmr-relay-5f7c9d8b6-{s}")
        for s in ("x2k4q", "p8w3z")
    ]
    router = site.start("Deployment", "dmr-router", "dmr-router-6d8f5c7b9-m4n7r")
    ready = {
        pod.name: wait_ready(pod, site.workload(kind, name))
        for pod, kind, name in [
            (home, "StatefulSet", "dmr-home"),
            *[(r, "Deployment", "dmr-relay") for r in relays],
            (router, "Deployment", "dmr-router"),
        ]
    }
    print(f"ready after (s): {json.dumps(ready)}")

    service = site.workload("Service", "dmr-router")["spec"]["ports"][0]
    spec = site.workload("Deployment", "dmr-router")["spec"]["template"]["spec"]
    port = next(
        p["containerPort"]
        for p in spec["containers"][0]["ports"]
        if p["name"] == service["targetPort"]
    )
    sent = subprocess.run(
        [
            pods.DOCKER,
            "run",
            "--rm",
            "--network",
            site.network,
            "--read-only",
            "--user",
            "0:0",
            "-v",
            f"{site.pki}:/pki:ro",
            "-v",
            f"{ROOT / 'tests/system/deliver.py'}:/deliver.py:ro",
            "--entrypoint",
            "python3",
            site.image,
            "/deliver.py",
            f"https://dmr-router:{port}",
            "/pki",
            f"https://{RECIPIENT}:9443/inbox",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, f"{sent.stdout}\n{sent.stderr}\n{router.logs()}"
    answer = json.loads(sent.stdout.strip().splitlines()[-1])
    delivered = [
        json.loads(line) for line in (recipient_out / "deliveries.jsonl").read_text().splitlines()
    ]
    ids = [d.get("message_id") or d.get("id") for d in delivered]
    assert ids.count(answer["message_id"]) == 1, delivered
    print(f"delivered {answer['message_id']} through the router container: {answer['answer']}")
    assert_instances(site, relays)
    assert_a_new_crl_reloads_every_nginx(site, [home, *relays, router])


REFUSED = "client-certificate-invalid"  # nginx's own answer to a revoked certificate
CRL_CHECK = "crl-check"  # the admin certificate the CRL check issues, then revokes


def assert_a_new_crl_reloads_every_nginx(site, started) -> None:
    """An admin certificate of this check's own, accepted by every gate and the router,
    revoked and the new CRL written into each pod's crl volume, as the kubelet refreshes a
    Secret: every gate's and the router's nginx refuses it within seconds, without a
    restart (before a reload the apps refused it, not nginx). Its own: the site's admin
    stays valid for the tests after this one (the PKI is the session's)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    pki = ["--dir", str(site.pki), "--kind", "admin", "--name", CRL_CHECK]
    subprocess.run(["dmr", "pki", "issue", *pki], env=env, check=True, capture_output=True)
    script = (
        "import requests,sys,urllib3;urllib3.disable_warnings();"
        f"r=requests.get(sys.argv[1],cert=('/pki/admin/{CRL_CHECK}.pem',"
        f"'/pki/admin/{CRL_CHECK}.key'),verify=False,timeout=10);print(r.status_code,r.text[:300])"
    )
    urls = {
        pod.name: f"https://{pod.ip}:{8700 if 'home' in pod.name else 8443}/healthz"
        for pod in started
    }
    before = {name: python_in_site(site, "-c", script, url) for name, url in urls.items()}
    # Accepted: an answer past the TLS check (the router has no /healthz: its 404).
    assert not any(a.startswith("400 ") or REFUSED in a for a in before.values()), before
    subprocess.run(["dmr", "pki", "revoke", *pki], env=env, check=True, capture_output=True)
    crl = (site.pki / "crl.pem").read_bytes()
    for pod in started:
        fresh = site.workdir / pod.name / "crl" / "crl.pem.new"
        fresh.write_bytes(crl)
        fresh.chmod(0o444)
        fresh.replace(fresh.with_name("crl.pem"))
    deadline, answers = time.monotonic() + 40, {}
    while urls and time.monotonic() < deadline:
        for name, url in list(urls.items()):
            answers[name] = python_in_site(site, "-c", script, url)
            if REFUSED in answers[name]:
                del urls[name]
        time.sleep(1)
    assert not urls, (answers, [pod.logs() for pod in started])
    for pod in started:
        logs = pod.logs()
        assert '"event":"crl-changed"' in logs, logs
    print(f"a new CRL reloaded the nginx of {sorted(answers)}")


def python_in_site(site, *args: str) -> str:
    """``python3 ARGS`` in a throwaway container of the image on the site's network, as
    root with the PKI mounted read-only: a client inside the cluster. Its stdout."""
    return pods.docker(
        "run", "--rm", "--network", site.network, "--user", "0:0", "-v", f"{site.pki}:/pki:ro",
        "--entrypoint", "python3", site.image, *args,
    )  # fmt: skip


def assert_instances(site, relays) -> None:
    """Both relay pods beat at home under their own names (one pool certificate)."""
    script = (
        "import requests,json;"
        "s=requests.Session();s.verify='/pki/ca.pem';"
        "s.cert=('/pki/admin/admin.pem','/pki/admin/admin.key');"
        "print(json.dumps(s.get('https://dmr-router:8443/v1/home/instances',timeout=10).json()))"
    )
    deadline = time.monotonic() + 30
    while True:
        out = python_in_site(site, "-c", script)
        names = {i["instance"] for i in json.loads(out)["instances"]}
        if names >= {f"relay.{r.name}" for r in relays} or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert names >= {f"relay.{r.name}" for r in relays}, names
    print(f"instances at home: {sorted(names)}")


def test_the_image_holds_no_build_tools_or_apt_lists(image):
    script = (
        "find /var/lib/apt/lists /var/cache/apt -mindepth 1; "
        "for t in gcc cc make dpkg-buildpackage pip; do command -v $t; done; id -u"
    )
    out = pods.docker(
        "run", "--rm", "--read-only", "--entrypoint", "sh", image, "-c", script, check=False
    )
    assert out.splitlines() == ["10001"], out
    labels = json.loads(pods.docker("inspect", "-f", "{{json .Config.Labels}}", image))
    assert image.endswith(":" + labels["org.opencontainers.image.version"])


def test_the_image_is_debian_13_by_default(image):
    """The Containerfile's default base is Debian 13 slim (issue 27): what these pods ran on."""
    script = ". /etc/os-release; echo $VERSION_ID $VERSION_CODENAME; python3 --version"
    out = pods.docker("run", "--rm", "--entrypoint", "sh", image, "-c", script)
    release, python = out.splitlines()
    assert release == "13 trixie", out
    assert python.startswith("Python 3.13"), out
    print(f"image {image}: Debian {release}, {python}")
