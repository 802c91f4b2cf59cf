"""Isolation at the door, tried as a hostile key holder would (real nginx, gunicorn, the
local stack): a revoked certificate that resumes a saved TLS session, and the plain health
ports of the gates and the router.

- nginx checks the CRL at a full handshake only, and its session cache outlives the reload
  that brings a new CRL; the apps check the certificate the gate passes on every route, so
  a resumed session of a revoked certificate is refused everywhere within the apps' CRL
  check (timed here, the figure is in docs/security.md).
- The health ports pass no client header to the app (request id and peer address are the
  gate's own), answer problem+json whatever is asked, and never write a client's header
  into a body.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from dmr_appliance import config, pki, render
from dmr_appliance.local.processes import NginxProcess
from dmr_appliance.local.stack import Stack
from tests.support.apps import App, home_gate
from tests.support.home import home_config, start_home, wait_ready, write_toml
from tests.support.problems import assert_nginx_problem, assert_problem
from tests.support.processes import free_port

# trudy: a certificate never registered at home
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=1, certificates=("trudy",)),
]

NGINX_ID = re.compile(r"[0-9a-f]{32}")
# Quotes, a backslash and control characters: raw in JSON they would end the string,
# escape the next character or break the document.
HOSTILE_ID = 'x","injected":"1\\" \x01\x1f\t\x7f'


@dataclasses.dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    resumed: bool = False

    def problem(self, status: int, code: str) -> dict:
        """nginx's own problem, its request id nginx's, never the client's."""
        doc = assert_nginx_problem(self, status, code)
        assert NGINX_ID.fullmatch(self.headers["X-Request-Id"]), self.headers
        assert "injected" not in doc
        return doc


def exchange(sock: socket.socket, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    sock.sendall(data)
    resp = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    resp.begin()
    return resp.status, resp.headers, resp.read()


def request(method: str, path: str, *fields: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def plain(address: str, data: bytes) -> Answer:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        return Answer(*exchange(sock, data))


# --- a revoked certificate resuming a saved TLS session -------------------------------------


@dataclasses.dataclass
class Saved:
    """A TLS session of trudy's at one endpoint and version, kept as a client keeps it."""

    port: int
    path: str
    context: ssl.SSLContext
    session: ssl.SSLSession | None = None

    def get(self) -> Answer:
        """GET ``path`` on a new connection, resuming the session saved last (if any)."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
            self.context.wrap_socket(raw, server_hostname="localhost", session=self.session) as tls,
        ):
            answer = Answer(*exchange(tls, request("GET", self.path)), resumed=tls.session_reused)
            self.session = tls.session  # TLS 1.3: the newest ticket, read with the answer
        return answer


def saved_sessions(stack: Stack) -> dict[str, Saved]:
    targets = {
        "router /home/metrics": (stack.ports["router"], "/home/metrics"),
        "router /home/openapi.json": (stack.ports["router"], "/home/openapi.json"),
        "home gate /metrics": (stack.ports["home"], "/metrics"),
        "relay gate /metrics": (stack.ports["relay-1"], "/metrics"),
    }
    found = {}
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        for name, (port, path) in targets.items():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = context.maximum_version = version
            context.load_verify_locations(stack.ca)
            context.load_cert_chain(*stack.cert("participant", "trudy"))
            found[f"{name} {version.name}"] = Saved(port, path, context)
    return found


def test_a_revoked_certificate_resuming_a_session_is_refused_everywhere(stack):
    sessions = saved_sessions(stack)
    for name, saved in sessions.items():
        assert saved.get().status == 200, name  # a full handshake, the session saved
        again = saved.get()
        assert again.status == 200 and again.resumed, name  # resumption works
    pki.revoke(stack.pki_dir, "participant", "trudy")  # the stack reloads every nginx
    published = time.monotonic()
    refused_after: dict[str, float] = {}
    while len(refused_after) < len(sessions) and time.monotonic() - published < 15:
        for name, saved in sessions.items():
            if name not in refused_after:
                answer = saved.get()
                if answer.status != 200:
                    assert answer.resumed, f"{name}: a full handshake, not a resumed session"
                    assert_problem(answer, 403, "client-cert-revoked")
                    refused_after[name] = time.monotonic() - published
        time.sleep(0.05)
    still = sorted(set(sessions) - set(refused_after))
    assert still == [], f"resumed sessions of a revoked certificate still answered: {still}"
    slowest = max(refused_after.values())
    print(
        f"resumed sessions of a revoked certificate refused within {slowest * 1000:.0f} ms "
        f"of the CRL's publication ({len(sessions)} endpoint/version pairs)"
    )
    assert slowest < 5.0


def test_a_valid_certificate_keeps_resuming(stack):
    # The check costs no handshake: a resumed session of a good certificate goes on.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(stack.ca)
    context.load_cert_chain(*stack.cert("participant", "alice"))
    saved = Saved(stack.ports["home"], "/metrics", context)
    assert saved.get().status == 200
    again = saved.get()
    assert again.status == 200 and again.resumed


# --- the gates' health ports ----------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory, pki):
    """Home under gunicorn behind its gate, with a health port."""
    state = tmp_path_factory.mktemp("health-home")
    cfg = home_config(state, pki, bind=f"127.0.0.1:{free_port()}", workers=1, threads=4)
    cfg = dataclasses.replace(cfg, gate=home_gate(state, health_bind=f"127.0.0.1:{free_port()}"))
    running = start_home(cfg, write_toml(cfg, state / "home.toml"), state / "gunicorn.log")
    try:
        yield wait_ready(running, pki)
    finally:
        running.process.stop()


def logged(home, request_id: str) -> dict:
    """Home's access-log line of ``request_id``."""
    log = Path(home.config_path).parent / "gunicorn.log"
    deadline = time.monotonic() + 5
    while True:
        lines = [
            json.loads(line)
            for line in log.read_text().splitlines()
            if line.startswith("{") and '"response"' in line
        ]
        found = [e for e in lines if e.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            (line,) = found
            return line
        time.sleep(0.05)


def test_a_health_port_caller_sets_neither_the_request_id_nor_the_peer_address(home):
    health = home.config.gate.health_bind
    answer = plain(
        health,
        request(
            "GET",
            "/healthz",
            "X-Request-Id: planted-id-0001",
            "X-DMR-Peer-Addr: 203.0.113.9",
            "X-Forwarded-For: 203.0.113.9",
        ),
    )
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ok"}
    request_id = answer.headers["X-Request-Id"]
    assert NGINX_ID.fullmatch(request_id), request_id  # the gate's own
    line = logged(home, request_id)
    assert line["path"] == "/healthz" and line["remote_addr"] == "127.0.0.1"
    log = (Path(home.config_path).parent / "gunicorn.log").read_text()
    assert "planted-id-0001" not in log and "203.0.113.9" not in log


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (request("GET", "/nowhere", f"X-Request-Id: {HOSTILE_ID}"), 404, "not-found"),
        (request("GET", "/metrics", f"X-Request-Id: {HOSTILE_ID}"), 404, "not-found"),
        (
            request("POST", "/healthz", f"X-Request-Id: {HOSTILE_ID}", "Content-Length: 0"),
            405,
            "method-not-allowed",
        ),
        (request("DELETE", "/readyz", f"X-Request-Id: {HOSTILE_ID}"), 405, "method-not-allowed"),
        (
            request("GET", "/healthz", f"X-Request-Id: {HOSTILE_ID}", "X-Big: " + "b" * 5000),
            431,
            "headers-too-large",
        ),
        (b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "bad-request"),
    ],
    ids=["unknown-path", "metrics", "post-healthz", "delete-readyz", "big-header", "bad-line"],
)
def test_every_answer_of_a_gates_health_port_is_problem_json(home, data, status, code):
    answer = plain(home.config.gate.health_bind, data)
    answer.problem(status, code)
    if status == 405:
        assert answer.headers["Allow"] == "GET, HEAD"


@pytest.fixture
def gate_alone(tmp_path, pki):
    """Home's gate with its health port, gunicorn not running: the gate's 503."""
    cfg = home_config(tmp_path, pki, bind=f"127.0.0.1:{free_port()}")
    cfg = dataclasses.replace(cfg, gate=home_gate(tmp_path, health_bind=f"127.0.0.1:{free_port()}"))
    app = App("home", write_toml(cfg, tmp_path / "home.toml"), tmp_path)
    app.gate.start()
    try:
        app.gate.wait_ready(lambda: accepts(cfg.gate.health_bind))
        yield cfg
    finally:
        app.gate.stop()


def accepts(address: str) -> bool:
    """A listener accepts at ADDRESS. A connection to itself does not count: free_port's
    port is in the ephemeral range, so a connect in a loop before the gate listens may get
    that very port as its source and "succeed" (a test failed once so, then refused)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as sock:
            return sock.getsockname() != sock.getpeername()
    except OSError:
        return False


def test_the_gates_503_writes_no_client_header_into_its_body(gate_alone):
    answer = plain(
        gate_alone.gate.health_bind, request("GET", "/readyz", f"X-Request-Id: {HOSTILE_ID}")
    )
    answer.problem(503, "not-ready")
    assert answer.headers["Retry-After"] == "1"


# --- the router's plain ports ---------------------------------------------------------------


@pytest.fixture
def router_ports(pki, tmp_path):
    prefix = tmp_path / "router"
    prefix.mkdir()
    tls = config.RouterTls(
        ca=pki.ca, crl=pki.crl, cert=pki.cert("server", "router"), key=pki.key("server", "router")
    )
    cfg = config.RouterConfig(
        listen=free_port(),
        relays=[f"127.0.0.1:{free_port()}"],
        home=[f"127.0.0.1:{free_port()}"],
        prefix=prefix,
        pid_file=prefix / "nginx.pid",
        access_log=str(prefix / "access.log"),
        error_log=str(prefix / "error.log"),
        worker_processes="1",
        tls=tls,
        health_bind=f"127.0.0.1:{free_port()}",
        stub_status_bind=f"127.0.0.1:{free_port()}",
    )
    conf = render.write(cfg, prefix / "nginx.conf")
    with (prefix / "nginx.out").open("ab") as out:
        nginx = NginxProcess(conf, prefix=cfg.prefix, pid_file=cfg.pid_file, output=out)
        nginx.start()
        try:
            yield cfg
        finally:
            nginx.stop()


def test_every_answer_of_the_routers_plain_ports_is_problem_json(router_ports):
    for address, path in (
        (router_ports.health_bind, "/healthz"),
        (router_ports.stub_status_bind, "/stub_status"),
    ):
        hostile = f"X-Request-Id: {HOSTILE_ID}"
        assert plain(address, request("GET", path, hostile)).status == 200
        plain(address, request("GET", "/nowhere", hostile)).problem(404, "not-found")
        refused = plain(address, request("POST", path, hostile, "Content-Length: 0"))
        refused.problem(405, "method-not-allowed")
        assert refused.headers["Allow"] == "GET, HEAD"
        plain(address, request("GET", path, "X-Big: " + "b" * 5000)).problem(
            431, "headers-too-large"
        )
