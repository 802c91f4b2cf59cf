"""The Kubernetes manifests' files that need no Kubernetes tool: the router's nginx.conf
renderings committed beside their settings are exactly what `dmr render nginx` makes now,
the apps' settings load and render their gates, the base pins the package's version, and
no key or certificate is tracked in git (the secretGenerator reads a git-ignored folder)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

import dmr_appliance
from dmr_appliance import config, render

ROOT = Path(__file__).parents[2]
K8S = ROOT / "k8s"
BASE_ROUTER = K8S / "base/router/router.toml"
RENDERINGS = {
    K8S / "base/router/nginx.conf": [BASE_ROUTER],
    K8S / "overlays/example/nginx.conf": [BASE_ROUTER, K8S / "overlays/example/router.toml"],
    K8S / "overlays/example-postgres/nginx.conf": [
        BASE_ROUTER,
        K8S / "overlays/example-postgres/router.toml",
    ],
}
# A PEM block with a real body (tests quote bare markers, and 4-character bodies, on purpose).
SECRET_TEXT = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY|CERTIFICATE|X509 CRL)-----\r?\n[A-Za-z0-9+/=\r\n]{64,}"
)


@pytest.mark.parametrize("conf", sorted(RENDERINGS), ids=lambda p: str(p.relative_to(K8S)))
def test_committed_router_conf_is_a_fresh_rendering(conf):
    settings = config.load_layers(config.RouterConfig, RENDERINGS[conf], environ={})
    layers = " ".join(f"--config {p.relative_to(ROOT)}" for p in RENDERINGS[conf])
    assert conf.read_text() == render.render(settings), (
        f"{conf.relative_to(ROOT)} is stale: render it again with "
        f"dmr render nginx {layers} --output {conf.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("kind", ["home", "relay"])
def test_app_settings_load_and_render_their_gate(kind):
    settings = config.load(config.KINDS[kind], K8S / f"base/config/{kind}.toml", environ={})
    assert settings.gate.health_bind == "0.0.0.0:8081"
    text = render.render_gate(kind, settings)
    assert "listen 0.0.0.0:8081;" in text and f"unix:{settings.gate.socket}" in text


def test_postgres_home_settings_load_and_name_the_secret_files():
    """k8s/components/postgres-home's home.toml: PostgreSQL, its password, key-encryption
    key and CA read from where the Deployment mounts the Secret dmr-home-store, whose keys
    k8s/secrets generates; no password in the URL (home.toml is a ConfigMap)."""
    component = K8S / "components/postgres-home"
    settings = config.load(config.HomeConfig, component / "home.toml", environ={})
    store = settings.store
    assert store.url.startswith("postgresql://dmr_home@dmr-home-db-rw.dmr-db.svc:5432/")
    assert "sslmode=verify-full" in store.url
    docs = list(yaml.safe_load_all((component / "home.yaml").read_text()))
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    home = next(c for c in pod["containers"] if c["name"] == "home")
    mount = next(m["mountPath"] for m in home["volumeMounts"] if m["name"] == "store")
    volume = next(v for v in pod["volumes"] if v["name"] == "store")
    assert volume["secret"]["secretName"] == "dmr-home-store"
    secrets = yaml.safe_load((K8S / "secrets/kustomization.yaml").read_text())
    files = next(g for g in secrets["secretGenerator"] if g["name"] == "dmr-home-store")["files"]
    keys = {f.split("=", 1)[0] for f in files}
    wanted = {f"{mount}/{key}" for key in keys}
    rootcert = store.url.split("sslrootcert=", 1)[1].split("&", 1)[0]
    assert {store.password_file, store.key_file, rootcert} == wanted
    gate = render.render_gate("home", settings)
    assert "listen 0.0.0.0:8081;" in gate


def test_layered_settings_replace_key_by_key(tmp_path):
    over = tmp_path / "over.toml"
    over.write_text('server_name = "a.example"\n[upstream]\nkeepalive = 7\n')
    settings = config.load_layers(config.RouterConfig, [BASE_ROUTER, over], environ={})
    assert settings.server_name == "a.example" and settings.upstream.keepalive == 7
    assert settings.upstream.relay_tls_name == "dmr-relay"  # kept from the base table


def test_base_image_is_the_package_version():
    tags = set()
    for path in (K8S / "base").glob("*.yaml"):
        tags |= set(re.findall(r"image: (\S+)", path.read_text()))
    assert tags == {f"dmr-appliance:{dmr_appliance.__version__}"}


def test_no_key_or_certificate_is_tracked():
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    tracked = [ROOT / name.decode() for name in listed if name]
    found = [
        str(p.relative_to(ROOT))
        for p in tracked
        if p.is_file() and SECRET_TEXT.search(p.read_bytes())
    ]
    assert found == [], f"keys or certificates tracked in git: {found}"


def test_the_secrets_folder_is_ignored():
    probe = "k8s/secrets/pki/server/home.key"
    answer = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT, check=False)
    assert answer.returncode == 0, f"{probe} would be tracked: add k8s/secrets/pki/ to .gitignore"


def test_the_secrets_apply_first_on_a_fresh_cluster_with_their_namespace():
    """README step 2 (`kubectl apply -k k8s/secrets`) runs before the base creates the
    namespace: the secrets' kustomization creates it too (tests/k8s renders it)."""
    kustomization = yaml.safe_load((K8S / "secrets/kustomization.yaml").read_text())
    docs = [
        yaml.safe_load((K8S / "secrets" / r).read_text())
        for r in kustomization.get("resources", [])
    ]
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    assert kustomization["namespace"] in namespaces
    assert docs == [yaml.safe_load((K8S / "base/namespace.yaml").read_text())]


def readme_yaml(containing: str) -> dict:
    """The README's YAML block holding ``containing``, parsed."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [found] = [b for b in blocks if containing in b]
    return yaml.safe_load(found)


def test_the_readmes_cluster_is_the_one_the_component_reaches():
    """README's CloudNativePG Cluster example and the postgres-home component agree: the
    url's host is the Cluster's rw Service in its namespace, its user and database are the
    Cluster's owner and database, the NetworkPolicy selects the Cluster's pods there, and
    the Secrets the Cluster names are the ones README's commands create from the files
    make-secrets.sh writes."""
    cluster = readme_yaml("kind: Cluster")
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    store = config.load(
        config.HomeConfig, K8S / "components/postgres-home/home.toml", environ={}
    ).store
    user_host, _, rest = store.url.removeprefix("postgresql://").partition(":")
    assert user_host == f"{cluster['spec']['bootstrap']['initdb']['owner']}@{name}-rw.{ns}.svc"
    assert rest.split("/", 1)[1].split("?")[0] == cluster["spec"]["bootstrap"]["initdb"]["database"]
    policy = yaml.safe_load((K8S / "components/postgres-home/policy.yaml").read_text())
    peer = policy["spec"]["egress"][0]["to"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": ns}
    assert peer["podSelector"]["matchLabels"] == {"cnpg.io/cluster": name}
    readme = (ROOT / "README.md").read_text()
    named = [
        cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"],
        *cluster["spec"]["certificates"].values(),
    ]
    for secret in named:
        assert re.search(rf"kubectl -n {ns} create secret \S+ {secret} ", readme), secret
    script = (K8S / "make-secrets.sh").read_text()
    assert f"db_ns={ns} " in script and f"service_names {name}-rw" in script
    assert "issue server home-db" in script and "k8s/secrets/pki/server/home-db.pem" in readme
