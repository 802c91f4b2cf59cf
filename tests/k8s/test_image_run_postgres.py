"""Home on PostgreSQL run as k8s/components/postgres-home says: the base with the
component rendered by kustomize, the Deployment's two replicas started with docker from
that rendering (pods.py: command, environment, config, the Secrets dmr-home-tls and
dmr-home-store as files, user, read-only root), against a PostgreSQL container standing
in for the CloudNativePG Cluster: Debian's postgresql on the project's image (no registry
is reachable), TLS with the certificate k8s/make-secrets.sh issued the Cluster, the
owner's password from the same file as the Secret's, reached under the rendered
home.toml's host name (a network alias). Checked: both replicas become ready by their
own probes (started together: their migrations meet at the advisory lock); a
participant added through one is listed through the other, and both publish the same
signing key (sealed in the database);
with the database stopped both leave readiness and stay live, then come back by
themselves. NetworkPolicies are not enforced by docker: tests/k8s/test_manifests.py
checks them."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.k8s import pods
from tests.k8s.database import START_DATABASE
from tests.k8s.test_image_run import (  # the image fixture is shared, not redefined
    Site,
    image,  # noqa: F401
    probe_ok,
    python_in_site,
    render,
    running,
    wait_ready,
)

pytestmark = pytest.mark.k8s
DATABASE = "k8s-dmr-home-db"
LEAVES_WITHIN = 30.0  # readiness: the gate's probe every 5 s, the app's every 10 s
BACK_WITHIN = 60.0


@pytest.fixture(scope="module")
def postgres_image(image) -> str:  # noqa: F811
    """The project's image with Debian's postgresql added (from Debian's mirror, as the
    image itself was built): the same Debian release as home's."""
    tag = f"{image.rsplit(':', 1)[0]}-postgresql:{image.rsplit(':', 1)[1]}"
    containerfile = (
        f"FROM {image}\nUSER root\n"
        "RUN set -eux; printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
        "chmod 0755 /usr/sbin/policy-rc.d; apt-get update; "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; "
        "apt-get clean; rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d\n"
    )
    subprocess.run(
        [pods.DOCKER, "build", "-q", "-t", tag, "-"],
        input=containerfile,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return tag


@pytest.fixture(scope="module")
def pg_site(k8s_tree, image, tmp_path_factory):  # noqa: F811
    """The base with the postgres-home component and the image built here, and the
    Secrets (k8s/secrets, dmr-home-store included), rendered as an overlay would be."""
    components = ["../components/postgres-home"]
    docs = render(k8s_tree, "run-postgres", image, namespace="dmr", components=components)
    with running(docs, image, k8s_tree, tmp_path_factory) as site:
        yield site


def store_host(site: Site) -> str:
    """The database's host name in the rendered home.toml ([store] url)."""
    config = next(
        d for d in site.docs if d["kind"] == "ConfigMap" and "home.toml" in d.get("data", {})
    )["data"]["home.toml"]
    url = next(line for line in config.splitlines() if line.startswith("url = "))
    return url.split("@", 1)[1].split(":", 1)[0]


def start_database(site: Site, postgres_image: str) -> None:
    pods.docker(
        "run", "-d", "--name", DATABASE, "--network", site.network,
        "--network-alias", store_host(site), "--user", "0:0",
        "-v", f"{site.pki}:/pki:ro", "--entrypoint", "sh", postgres_image,
        "-c", START_DATABASE,
    )  # fmt: skip
    site.started.append(pods.Pod("dmr-home-db", containers=[DATABASE]))
    wait_database(site)


def wait_database(site: Site) -> None:
    deadline = time.monotonic() + 60
    check = "import socket,sys;socket.create_connection((sys.argv[1],5432),2).close()"
    while True:
        done = subprocess.run(
            [pods.DOCKER, "run", "--rm", "--network", site.network, "--entrypoint", "python3",
             site.image, "-c", check, store_host(site)],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, pods.docker("logs", DATABASE, check=False)
        time.sleep(1)


def admin(site: Site, method: str, url: str, body: dict | None = None) -> dict:
    """An admin call from inside the network (verify=False: a pod's address is in no
    certificate; the gate still requires the admin's certificate)."""
    script = (
        "import requests,sys,json,urllib3;urllib3.disable_warnings();"
        "r=requests.request(sys.argv[1],sys.argv[2],json=json.loads(sys.argv[3]) or None,"
        "cert=('/pki/admin/admin.pem','/pki/admin/admin.key'),verify=False,timeout=10);"
        "print(json.dumps({'status':r.status_code,'body':r.json() if r.content else None}))"
    )
    return json.loads(python_in_site(site, "-c", script, method, url, json.dumps(body or {})))


def readiness(pod: pods.Pod, workload: dict) -> dict[str, tuple[bool, bool]]:
    """(ready, live) of each container, by the manifest's own probes."""
    return {
        c["name"]: (probe_ok(pod, c, c["readinessProbe"]), probe_ok(pod, c, c["livenessProbe"]))
        for c in workload["spec"]["template"]["spec"]["containers"]
    }


def test_two_home_replicas_on_a_postgresql_container(pg_site, postgres_image):
    start_database(pg_site, postgres_image)
    workload = pg_site.workload("Deployment", "dmr-home")
    replicas = workload["spec"]["replicas"]
    assert replicas == 2
    homes = [
        pg_site.start("Deployment", "dmr-home", f"dmr-home-7b9c6d5f4-{suffix}")
        for suffix in ("h2x8k", "q9m3t")[:replicas]
    ]
    ready = {pod.name: wait_ready(pod, workload) for pod in homes}
    print(f"ready after (s): {json.dumps(ready)}")

    one, two = (f"https://{pod.ip}:8700" for pod in homes)
    body = {"id": "alice", "rooms": ["lobby"], "endpoint": "https://alice.example/in"}
    created = admin(pg_site, "POST", f"{one}/v1/participants", body)
    assert created["status"] == 201, created
    listed = admin(pg_site, "GET", f"{two}/v1/participants")["body"]["participants"]
    assert [p["id"] for p in listed] == ["alice"]
    keys = [admin(pg_site, "GET", f"{url}/v1/jwks")["body"] for url in (one, two)]
    assert keys[0] == keys[1] and keys[0]["keys"], keys
    print("a participant added through one replica is listed through the other; one key")

    pods.docker("stop", "-t", "5", DATABASE)
    stopped, left = time.monotonic(), {}
    while len(left) < len(homes):
        for pod in homes:
            state = readiness(pod, workload)
            if pod.name not in left and not any(ready for ready, _ in state.values()):
                assert all(live for _, live in state.values()), (state, pod.logs())
                left[pod.name] = round(time.monotonic() - stopped, 1)
        assert time.monotonic() - stopped < LEAVES_WITHIN, (left, [p.logs() for p in homes])
        time.sleep(1)
    print(f"database stopped: not ready after (s) {json.dumps(left)}, every container live")

    pods.docker("start", DATABASE)
    wait_database(pg_site)
    started, back = time.monotonic(), {}
    while len(back) < len(homes):
        for pod in homes:
            if pod.name not in back and all(r for r, _ in readiness(pod, workload).values()):
                back[pod.name] = round(time.monotonic() - started, 1)
        assert time.monotonic() - started < BACK_WITHIN, (back, [p.logs() for p in homes])
        time.sleep(1)
    listed = admin(pg_site, "GET", f"{one}/v1/participants")["body"]["participants"]
    assert [p["id"] for p in listed] == ["alice"]
    print(f"database back: ready again, without a restart, after (s) {json.dumps(back)}")
