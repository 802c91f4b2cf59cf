"""What relay_wrk.py runs besides the stack: wrk, the nginx it drives through (the
certificate-holding adapter, B's pass-through hops, the recipient), CPU time by group.

These nginx configs belong to the benchmark, not the product (whose configs all come
from dmr_appliance/templates): they stand in for a client and a recipient.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

WRK = "/usr/bin/wrk"
TIME_WAIT_SECONDS = 60  # Linux's TCP_TIMEWAIT_LEN: a closed connection's socket lingers
_TIME_WAIT = re.compile(r"timer:\(timewait,(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)ms)?")
_RESULT = re.compile(r"^WRK (.*)$", re.MULTILINE)
_TICK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Hop:
    """One proxying server block: listen on ``port`` (TLS with client certificates
    verified, unless ``plain``) and pass to ``upstream`` over TLS presenting ``cert``."""

    port: int
    upstream: str  # host:port
    cert: tuple[Path, Path]
    plain: bool = False
    token: str | None = None  # a bearer token added to every request (the adapter)


def nginx_conf(
    prefix: Path, ca: Path, server: tuple[Path, Path], hops: list[Hop], recipient_port: int
) -> str:
    """nginx with every hop and the recipient (TLS, client certificate required, 200)."""
    tls_in = (
        f"ssl_certificate {server[0]}; ssl_certificate_key {server[1]};\n"
        f"        ssl_client_certificate {ca}; ssl_verify_client on;\n"
        "        ssl_session_cache shared:bench:10m;"
    )
    blocks = [_hop(i, hop, ca, tls_in) for i, hop in enumerate(hops)]
    return f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{"".join(blocks)}
    server {{
        listen 127.0.0.1:{recipient_port} ssl;
        {tls_in}
        location / {{ return 200 '{{}}'; }}
    }}
}}
"""


def _hop(index: int, hop: Hop, ca: Path, tls_in: str) -> str:
    auth = f'proxy_set_header Authorization "Bearer {hop.token}";' if hop.token else ""
    return f"""
    upstream hop{index} {{ server {hop.upstream}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{hop.port}{"" if hop.plain else " ssl"};
        {"" if hop.plain else tls_in}
        location / {{
            proxy_pass https://hop{index};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            {auth}
            proxy_ssl_certificate {hop.cert[0]};
            proxy_ssl_certificate_key {hop.cert[1]};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }}
    }}
"""


@dataclasses.dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    errors: int  # connect + read + write + timeout + non-2xx answers
    p50: float  # seconds
    p99: float
    p999: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_script(path: Path, body: bytes) -> Path:
    """POST ``body``; at the end print one line with the counts and percentiles."""
    path.write_text(f"""wrk.method = "POST"
wrk.body = [==[{body.decode()}]==]
wrk.headers["Content-Type"] = "application/json"
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format("WRK %d %d %d %d %d %d\\n", s.requests, s.duration,
    e.connect + e.read + e.write + e.timeout + e.status, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9)))
end
""")
    return path


def wrk(url: str, script: Path, *, seconds: float, connections: int, threads: int = 2) -> WrkRun:
    done = subprocess.run(
        [
            WRK,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    found = _RESULT.search(done.stdout)
    if not found:
        raise RuntimeError(f"wrk printed no result line:\n{done.stdout}{done.stderr}")
    n, us, errors, p50, p99, p999 = (int(x) for x in found.group(1).split())
    return WrkRun(n, us / 1e6, errors, p50 / 1e6, p99 / 1e6, p999 / 1e6)


def group_cpu(pgids: list[int]) -> float:
    """CPU seconds (user + system) used so far by every live process in these groups."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def closed_within(ports: list[int], seconds: float) -> int:
    """TCP connections to or from ``ports`` closed in the last ``seconds``: loopback keeps
    both ends here, and the end that closed first lingers in TIME-WAIT for 60 s, its
    timer counting down (``ss -o``)."""
    match = " or ".join(f"dport = :{p} or sport = :{p}" for p in ports)
    listed = subprocess.run(
        ["ss", "-tanHo", "state", "time-wait", f"( {match} )"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    recent = 0
    for found in _TIME_WAIT.finditer(listed):
        minutes, secs, ms = (int(x or 0) for x in found.groups())
        if minutes * 60 + secs + ms / 1000 >= TIME_WAIT_SECONDS - seconds:
            recent += 1
    return recent
