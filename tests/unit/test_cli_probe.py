"""`dmr home|relay probe`: the app's own health over its unix socket (Kubernetes exec
probes), and `dmr render nginx` with layered settings files."""

from __future__ import annotations

import http.server
import socketserver
import threading
from pathlib import Path

import pytest

from dmr_appliance import config
from dmr_appliance.cli import main


class _Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


_STATUS = {"/healthz": 200, "/readyz": 503}


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = _STATUS[self.path]
        body = b'{"status":"ok"}' if code == 200 else b'{"type":"urn:dmr:problem:not-ready"}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass

    def address_string(self) -> str:  # a unix peer has no (host, port)
        return "unix"


@pytest.fixture
def app_socket(tmp_path):
    path = tmp_path / "gunicorn.sock"
    server = _Unix(str(path), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = tmp_path / "relay.toml"
    settings.write_text(f'[gate]\nsocket = "{path}"\n')
    yield settings
    server.shutdown()
    server.server_close()


def test_probe_answers_by_status(app_socket, capsys):
    assert main(["relay", "probe", "--config", str(app_socket), "/healthz"]) == 0
    assert main(["relay", "probe", "--config", str(app_socket), "/readyz"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("relay /healthz: 200") and out[1].startswith("relay /readyz: 503")


def test_probe_without_a_listener_says_so(tmp_path, capsys):
    settings = tmp_path / "home.toml"
    settings.write_text(f'[gate]\nsocket = "{tmp_path / "none.sock"}"\n')
    assert main(["home", "probe", "--config", str(settings)]) == 1
    assert "cannot reach" in capsys.readouterr().out


def test_render_nginx_layers_files(tmp_path, capsys):
    base, site = tmp_path / "base.toml", tmp_path / "site.toml"
    base.write_text('server_name = "base.example"\nrelays = ["r:1", "r:1"]\n')
    site.write_text('server_name = "site.example"\n')
    assert main(["render", "nginx", "--config", str(base), "--config", str(site)]) == 0
    text = capsys.readouterr().out
    assert "server_name site.example;" in text and text.count("server r:1 ") == 2
    layered = config.load_layers(config.RouterConfig, [Path(base), Path(site)], environ={})
    assert layered.relays == ["r:1", "r:1"]
