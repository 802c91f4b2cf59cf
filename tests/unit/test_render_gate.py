"""The gate template (in front of home and each relay): its structure, the trust it sets
up, and `nginx -t` on every rendering made here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dmr_appliance import config, render, serving, tls_profile
from dmr_appliance.cli import main
from dmr_appliance.errors import ConfigError
from tests.support.apps import gate_settings
from tests.support.nginx_conf import parse


def app_config(kind: str, pki, tmp_path: Path, **gate_changes):
    if kind == "relay":
        tls = config.RelayTls(
            ca=pki.ca,
            crl=pki.crl,
            cert=pki.cert("relay", "relay-1"),
            key=pki.key("relay", "relay-1"),
        )
        base = config.RelayConfig(
            tls=tls, gate=gate_settings(config.RelayGate, tmp_path, **gate_changes)
        )
    else:
        tls = config.Tls(
            ca=pki.ca, crl=pki.crl, cert=pki.cert("server", "home"), key=pki.key("server", "home")
        )
        base = config.HomeConfig(tls=tls, gate=gate_settings(config.Gate, tmp_path, **gate_changes))
    return base


VARIANTS = {
    "defaults": {},
    "health-port": {"health_bind": "127.0.0.1:18081"},
    "journal": {"access_log": "journal", "error_log": "stderr"},
    "stdout": {"access_log": "stdout", "worker_processes": "auto"},
}


@pytest.fixture(
    params=[(k, v) for k in ("home", "relay") for v in sorted(VARIANTS)],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def gate(request, pki, tmp_path):
    kind, variant = request.param
    cfg = app_config(kind, pki, tmp_path, **VARIANTS[variant])
    text = render.render_gate(kind, cfg)
    return kind, cfg, text, parse(text)


def tls_server(tree):
    [server] = [
        s for s in tree.one("http").all("server") if any("ssl" in a for a in s.values("listen"))
    ]
    return server


@pytest.mark.needs_nginx
def test_nginx_accepts_every_rendering(gate, tmp_path):
    _, cfg, text, _ = gate
    conf = tmp_path / "gate.conf"
    conf.write_text(text)
    serving.test_config(conf, cfg.gate.prefix)


def test_the_peer_certificate_is_always_set_by_the_gate(gate):
    _, cfg, _, tree = gate
    server = tls_server(tree)
    headers = {args[0]: args[1] for args in server.values("proxy_set_header")}
    assert headers["X-DMR-Peer-Cert"] == "$ssl_client_escaped_cert"
    assert headers["X-DMR-Peer-Addr"] == "$remote_addr"
    # The forwarded certificate passes as sent (the app believes it from a router only);
    # nothing else but a fixed list reaches gunicorn.
    assert headers["X-DMR-Client-Cert"] == "$http_x_dmr_client_cert"
    assert server.values("proxy_pass_request_headers") == [["off"]]
    assert server.values("ssl_verify_client") == [["on"]]
    assert server.values("ssl_crl") == [[str(cfg.tls.crl)]]
    assert server.values("ssl_client_certificate") == [[str(cfg.tls.ca)]]


def test_gunicorn_behind_a_unix_socket_with_a_503_backup(gate):
    _, cfg, _, tree = gate
    [upstream] = tree.one("http").all("upstream")
    servers = upstream.values("server")
    assert servers[0] == [f"unix:{cfg.gate.socket}", "max_fails=0"]
    assert servers[1] == [f"unix:{cfg.gate.prefix}/unavailable.sock", "backup"]
    # As many idle connections to gunicorn as the router may have requests in flight here
    # (more than gunicorn's threads: they queue there), each kept for 10,000 requests; and
    # the router's connections to this gate kept as long (nginx's default closes at 1,000).
    assert upstream.values("keepalive") == [[str(max(cfg.workers * cfg.threads, 64))]]
    assert upstream.values("keepalive_requests") == [["10000"]]
    assert tree.one("http").values("keepalive_requests") == [["10000"]]
    server = tls_server(tree)
    # Only when nothing was sent (no non_idempotent): a POST that reached gunicorn is not
    # passed to the backup.
    assert server.values("proxy_next_upstream") == [["error"]]


def test_the_tls_profile_is_the_one_of_tls_profile_py(gate):
    server = tls_server(gate[3])
    assert server.values("ssl_protocols") == [list(tls_profile.PROTOCOLS)]
    assert server.values("ssl_ciphers") == [[":".join(tls_profile.CIPHERS)]]
    assert server.values("ssl_ecdh_curve") == [[":".join(tls_profile.GROUPS)]]
    assert all(
        "CBC" not in c and "DHE-RSA" not in c.replace("ECDHE", "") for c in tls_profile.CIPHERS
    )


def test_every_nginx_error_is_problem_json(gate):
    server = tls_server(gate[3])
    pages = {args[0] for args in server.values("error_page")}
    locations = {b.args[-1] for b in server.all("location")}
    for status in (
        "400",
        "405",
        "408",
        "413",
        "414",
        "494",
        "495",
        "496",
        "497",
        "500",
        "501",
        "502",
        "503",
        "504",
        "505",
    ):
        assert status in pages and f"/_dmr/problem/{status}" in locations, status


def test_the_health_port_serves_only_the_probes_without_identity(gate):
    _, cfg, _, tree = gate
    plain = [
        s
        for s in tree.one("http").all("server")
        if s.values("listen") and s.values("listen")[0][0].startswith("127.0.0.1:1808")
    ]
    if not cfg.gate.health_bind:
        assert plain == []
        return
    [health] = plain
    headers = {args[0]: args[1] for args in health.values("proxy_set_header")}
    assert headers["X-DMR-Peer-Cert"] == "" and headers["X-DMR-Client-Cert"] == ""
    routes = {
        b.args[-1] for b in health.all("location") if not b.args[-1].startswith("/_dmr/problem/")
    }
    assert routes == {"/healthz", "/readyz", "/"}
    # No client header reaches the app: what it logs as the request id and the peer's
    # address is the gate's own.
    assert health.values("proxy_pass_request_headers") == [["off"]]
    assert headers["X-Request-Id"] == "$request_id"
    assert headers["X-DMR-Peer-Addr"] == "$remote_addr"
    assert not [v for v in headers.values() if v.startswith("$http_")]
    for path in ("/healthz", "/readyz"):
        (check,) = health.location(path).all("if")
        assert check.args[2] == "^(GET|HEAD)$)" and check.values("return") == [["405"]]


def test_every_answer_of_the_health_port_is_problem_json(gate):
    # Unknown paths, other methods, oversize headers: nginx's answers, never an HTML page;
    # the request id in them is nginx's own, never the client's header.
    _, cfg, _, tree = gate
    if not cfg.gate.health_bind:
        return
    [health] = [
        s
        for s in tree.one("http").all("server")
        if s.values("listen") and s.values("listen")[0][0] == cfg.gate.health_bind
    ]
    pages = {args[0]: args for args in health.values("error_page")}
    for status in ("400", "404", "405", "408", "413", "414", "494", "500", "502", "503", "504"):
        assert pages[status][2] == f"/_dmr/problem/{status}", status
        loc = health.location(f"/_dmr/problem/{status}")
        ((_, body),) = loc.values("return")
        assert '"request_id":"$request_id"' in body and "$http_" not in body
        assert ["X-Request-Id", "$request_id", "always"] in loc.values("add_header")
    assert health.location("/").values("return") == [["404"]]


def test_no_client_header_is_written_into_a_body(gate):
    # nginx writes variables into a return body unescaped: only its own, or checked ones.
    _, _, text, _ = gate
    bodies = [line for line in text.splitlines() if line.strip().startswith("return ")]
    assert bodies and not [line for line in bodies if "$http_" in line]


def test_logs_go_where_the_settings_say(gate):
    _, cfg, _, tree = gate
    [access] = tree.one("http").values("access_log")
    if cfg.gate.access_log == "journal":
        assert access[0].startswith("syslog:server=unix:/dev/log,tag=dmr_")
    elif cfg.gate.access_log == "stdout":
        assert access[0] == "/dev/stdout"
    [error] = tree.values("error_log")
    assert error[0] == ("stderr" if cfg.gate.error_log == "stderr" else cfg.gate.error_log)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"worker_processes": "many"}, "'gate.worker_processes' = 'many'"),
        ({"access_log": "/tmp/$evil"}, "'gate.access_log'"),
        ({"prefix": Path('/tmp/a"b')}, "'gate.prefix'"),
    ],
)
def test_values_that_would_bend_the_config_are_refused(pki, tmp_path, changes, needle):
    cfg = app_config("relay", pki, tmp_path, **changes)
    with pytest.raises(ConfigError, match=needle.replace("$", r"\$")):
        render.render_gate("relay", cfg)


@pytest.mark.needs_nginx
def test_cli_render_gate_writes_and_checks(pki, tmp_path, capsys):
    cfg = app_config("home", pki, tmp_path)
    toml = tmp_path / "home.toml"
    toml.write_text(config.to_toml(dataclasses.replace(cfg)))
    out = tmp_path / "gate.conf"
    assert (
        main(["render", "gate", "home", "--config", str(toml), "--output", str(out), "--test"]) == 0
    )
    assert "nginx -t passed" in capsys.readouterr().out
    assert "X-DMR-Peer-Cert" in out.read_text()
