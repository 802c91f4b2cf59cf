"""The router template: its structure, and `nginx -t` on every rendering made here."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jinja2
import pytest

from dmr_appliance import config, render, serving
from dmr_appliance.cli import main
from dmr_appliance.errors import ConfigError
from tests.support.nginx_conf import Block, parse

STATUS_PAGE = ("/home/", "/home/metrics", "/home/openapi.json", "/home/v1/failures/")
PROXIED = ("/v1/messages", "/v1/home/", "/v1/home/sync", *STATUS_PAGE, "/.well-known/jwks.json")


# --- configs ---------------------------------------------------------------------------------


def router_config(pki, tmp_path: Path, **changes) -> config.RouterConfig:
    tls = config.RouterTls(
        ca=pki.ca, crl=pki.crl, cert=pki.cert("router", "router"), key=pki.key("router", "router")
    )
    base = config.RouterConfig(
        listen=18443,
        prefix=tmp_path / "prefix",
        pid_file=tmp_path / "prefix" / "nginx.pid",
        access_log=str(tmp_path / "prefix" / "access.log"),
        error_log=str(tmp_path / "prefix" / "error.log"),
        tls=tls,
    )
    return dataclasses.replace(base, **changes)


VARIANTS = {
    "defaults": {},
    "five-relays": {"relays": [f"127.0.0.1:{8801 + i}" for i in range(5)]},
    "one-relay": {"relays": ["127.0.0.1:8801"]},
    "three-homes": {"home": ["127.0.0.1:8700", "127.0.0.1:8702", "[::1]:8704"]},
    "ipv6": {
        "listen_address": "::1",
        "relays": ["[::1]:8801", "127.0.0.1:8802"],
        "home": ["[::1]:8700"],
        "allow": ["::1/128", "2001:db8::/32", "10.0.0.0/8"],
        "home_allow": ["fd00::/8"],
        "status_allow": ["192.0.2.7"],
    },
    "custom-limits": {
        "limits": config.BodyLimits(max_message_bytes=4096, max_request_bytes=1000),
        "rate_limit": config.RateLimit(rate="600r/m", burst=3, home_rate="1r/s", home_burst=1),
        "upstream": config.Upstreams(
            relay_tls_name="relays.dmr.internal",
            home_tls_name="home",
            connect_timeout=1,
            message_timeout=20,
            sync_timeout=90,
            keepalive=4,
            max_fails=1,
            fail_timeout=30,
        ),
        "worker_processes": "2",
        "listen_address": "*",
        "access_log": "stdout",
        "error_log": "stderr",
        "log_level": "warning",
    },
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request, pki, tmp_path) -> tuple[config.RouterConfig, str, Block]:
    cfg = router_config(pki, tmp_path, **VARIANTS[request.param])
    text = render.render(cfg)
    return cfg, text, parse(text)


# --- nginx -t ---------------------------------------------------------------------------------


@pytest.mark.needs_nginx
def test_nginx_accepts_every_rendering(variant, tmp_path):
    cfg, text, _ = variant
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    serving.test_config(conf, cfg.prefix)


@pytest.mark.needs_nginx
def test_nginx_t_failure_is_reported(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp { server { listen 1 ssl; no_such_directive on; } }\n")
    with pytest.raises(serving.NginxError, match="no_such_directive"):
        serving.test_config(conf, tmp_path)


# --- structure --------------------------------------------------------------------------------


def test_complete_config_for_an_unprivileged_nginx(variant):
    cfg, _, root = variant
    assert root.values("pid") == [[str(cfg.pid_file)]]
    assert len(root.all("error_log")) == 1 and len(root.all("events")) == 1
    assert not root.all("user"), "no user directive: nginx runs as whoever starts it"
    http = root.one("http")
    for name in (
        "client_body_temp_path",
        "proxy_temp_path",
        "fastcgi_temp_path",
        "uwsgi_temp_path",
        "scgi_temp_path",
    ):
        (path,) = http.one(name).args
        assert Path(path).parent == cfg.prefix


def test_body_limit_is_the_configured_message_limit(variant):
    cfg, _, root = variant
    assert root.one("http").values("client_max_body_size") == [[str(cfg.limits.max_message_bytes)]]


def test_tls_and_client_certificates(variant):
    cfg, _, root = variant
    server = root.one("http").one("server")
    (listen,) = server.values("listen")
    assert listen[-1] == "ssl" and listen[0].endswith(f":{cfg.listen}")
    if ":" in cfg.listen_address:
        assert listen[0] == f"[{cfg.listen_address}]:{cfg.listen}"
    assert server.values("ssl_protocols") == [["TLSv1.2", "TLSv1.3"]]
    ciphers = server.one("ssl_ciphers").args[0].split(":")
    assert ciphers and all(
        c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers
    )
    assert server.values("ssl_verify_client") == [["on"]]
    assert server.values("ssl_client_certificate") == [[str(cfg.tls.ca)]]
    assert server.values("ssl_crl") == [[str(cfg.tls.crl)]]
    # Upstream TLS: the router's certificate as client certificate, theirs verified.
    assert server.values("proxy_ssl_certificate") == [[str(cfg.tls.cert)]]
    assert server.values("proxy_ssl_certificate_key") == [[str(cfg.tls.key)]]
    assert server.values("proxy_ssl_trusted_certificate") == [[str(cfg.tls.ca)]]
    assert server.values("proxy_ssl_verify") == [["on"]]
    assert server.values("proxy_http_version") == [["1.1"]]


def test_every_proxied_location_overwrites_the_client_cert_header(variant):
    cfg, _, root = variant
    server = root.one("http").one("server")
    proxied = [loc for loc in server.all("location") if loc.all("proxy_pass")]
    assert sorted(loc.args[-1] for loc in proxied) == sorted(PROXIED)
    for loc in proxied:
        headers = {args[0].lower(): args[1] for args in loc.values("proxy_set_header")}
        assert headers["x-dmr-client-cert"] == "$ssl_client_escaped_cert", loc.args
        assert headers["x-request-id"] == "$request_id"
        assert headers["connection"] == ""
        assert ["X-Request-Id", "$request_id", "always"] in loc.values("add_header")
        assert loc.values("proxy_hide_header") == [["X-Request-Id"]]
        name = loc.one("proxy_ssl_name").args[0]
        expected = (
            cfg.upstream.relay_tls_name
            if loc.args[-1] == "/v1/messages"
            else cfg.upstream.home_tls_name
        )
        assert name == expected


def test_routes_and_upstreams(variant):
    cfg, _, root = variant
    http = root.one("http")
    upstreams = {u.args[0]: u for u in http.all("upstream")}
    relays = upstreams["dmr_relays"]
    assert [s.args[0] for s in relays.all("server")] == cfg.relays
    for server in relays.all("server"):
        assert f"max_fails={cfg.upstream.max_fails}" in server.args
        assert f"fail_timeout={cfg.upstream.fail_timeout}s" in server.args
    # One idle cache per worker for the whole pool: room for every relay's share, else
    # the connections above one relay's share are closed after each answer (issue 28).
    assert relays.values("keepalive") == [[str(cfg.upstream.keepalive * len(set(cfg.relays)))]]
    assert relays.values("keepalive_requests") == [["10000"]]
    assert http.values("keepalive_requests") == [["10000"]]  # the participants' side
    homes = upstreams["dmr_home"].all("server")
    assert [s.args[0] for s in homes] == cfg.home
    for server in homes:
        assert f"max_fails={cfg.upstream.max_fails}" in server.args
    # No idle connections to home: a reloading gate closes them under a request (502).
    assert upstreams["dmr_home"].values("keepalive") == []
    server = http.one("server")
    passes = {
        loc.args[-1]: loc.one("proxy_pass").args[0]
        for loc in server.all("location")
        if loc.all("proxy_pass")
    }
    assert passes == {
        "/v1/messages": "https://dmr_relays",
        "/v1/home/": "https://dmr_home/v1/",
        "/v1/home/sync": "https://dmr_home/v1/sync",
        "/home/": "https://dmr_home/",
        "/home/metrics": "https://dmr_home/metrics",
        "/home/openapi.json": "https://dmr_home/openapi.json",
        "/home/v1/failures/": "https://dmr_home/v1/failures/",
        "/.well-known/jwks.json": "https://dmr_home",
    }
    assert server.location("/").values("return") == [["404"]]
    # Below /home/v1/failures/ only one id: nothing under it, not the list.
    (only_one,) = [
        c for c in server.location("/home/v1/failures/").all("if") if c.args[0] == "($uri"
    ]
    assert only_one.args[1:] == ["!~", "^/home/v1/failures/[^/]+$", ")"]
    assert only_one.values("return") == [["404"]]
    assert server.location("/home").values("return") == [["301", "/home/"]]


def test_failover_only_where_nothing_can_have_been_delivered(variant):
    cfg, _, root = variant
    server = root.one("http").one("server")
    assert server.values("proxy_next_upstream") == [["off"]]
    messages = server.location("/v1/messages")
    (rule,) = messages.values("proxy_next_upstream")
    assert sorted(rule) == ["error", "http_503", "non_idempotent"]
    assert "timeout" not in rule
    assert messages.values("proxy_next_upstream_tries") == [["3"]]
    for loc in server.all("location"):
        if loc.args[-1] == "/v1/messages" or not loc.all("proxy_pass"):
            continue
        # Home: the next instance on a connection error or a 503 (its gate's with home's
        # process down, home's with its store unreachable), POSTs too. Never a timeout.
        (rule,) = loc.values("proxy_next_upstream")
        assert sorted(rule) == ["error", "http_503", "non_idempotent"], loc.args
        tries = loc.values("proxy_next_upstream_tries")
        assert tries == [[str(len(cfg.home))]], loc.args
        timeout = loc.one("proxy_next_upstream_timeout").args
        assert timeout == loc.one("proxy_read_timeout").args, loc.args


def test_timeouts(variant):
    cfg, _, root = variant
    server = root.one("http").one("server")
    timeout = {
        loc.args[-1]: int(loc.one("proxy_read_timeout").args[0].rstrip("s"))
        for loc in server.all("location")
        if loc.all("proxy_pass")
    }
    # Longer than the longest long poll home allows, and than a relay's delivery timeouts.
    longest_poll = max(60, config.HomeSync().max_wait)
    assert timeout["/v1/home/sync"] > longest_poll
    relay = config.Delivery()
    assert timeout["/v1/messages"] == cfg.upstream.message_timeout
    if cfg.upstream.message_timeout == 60:
        assert timeout["/v1/messages"] > relay.connect_timeout + relay.read_timeout


def test_methods_per_route(variant):
    _, _, root = variant
    server = root.one("http").one("server")
    expected = {
        "/v1/messages": {"POST"},
        "/v1/home/": {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"},
        "/v1/home/sync": {"GET", "HEAD"},
        **{path: {"GET", "HEAD"} for path in STATUS_PAGE},
        "/.well-known/jwks.json": {"GET", "HEAD"},
    }
    for path, methods in expected.items():
        loc = server.location(path)
        (check,) = [c for c in loc.all("if") if c.args[0] == "($request_method"]
        match = re.fullmatch(r"\^\((.*)\)\$\)", check.args[2])
        assert match and set(match.group(1).split("|")) == methods, path
        assert check.values("return") == [["405"]]
        (allow,) = [args for args in loc.values("set") if args[0] == "$dmr_allow"]
        assert set(allow[1].split(", ")) == methods


def test_allow_lists_per_location_family(variant):
    cfg, _, root = variant
    server = root.one("http").one("server")
    families = {
        "/v1/messages": cfg.allow,
        "/v1/home/": cfg.home_allow,
        "/v1/home/sync": cfg.home_allow,
        **{path: cfg.status_allow for path in STATUS_PAGE},
    }
    for path, networks in families.items():
        loc = server.location(path)
        assert [args[0] for args in loc.values("allow")] == networks, path
        assert loc.values("deny") == [["all"]], path
        # deny comes after every allow (nginx checks them in order).
        names = [c.name for c in loc.children if c.name in ("allow", "deny")]
        assert names[-1] == "deny" and names.count("deny") == 1


def test_rate_limits_keyed_per_client_certificate(variant):
    cfg, _, root = variant
    http = root.one("http")
    zones = {args[1].split("=")[1].split(":")[0]: args for args in http.values("limit_req_zone")}
    assert zones["dmr_messages"][0] == "$ssl_client_fingerprint"
    assert f"rate={cfg.rate_limit.rate}" in zones["dmr_messages"]
    assert f"rate={cfg.rate_limit.home_rate}" in zones["dmr_home"]
    assert http.values("limit_req_status") == [["429"]]
    messages = http.one("server").location("/v1/messages")
    assert messages.values("limit_req") == [
        ["zone=dmr_messages", f"burst={cfg.rate_limit.burst}", "nodelay"]
    ]


def test_nginx_errors_are_problem_json_with_stable_types(variant):
    _, _, root = variant
    server = root.one("http").one("server")
    pages = {int(args[0]): args for args in server.values("error_page")}
    assert {403, 404, 405, 413, 429, 495, 496, 502, 503, 504} <= set(pages)
    for args in pages.values():
        sent, target = int(args[1].lstrip("=")), args[2]
        loc = server.location(target)
        assert loc.values("internal") == [[]]
        assert loc.values("default_type") == [["application/problem+json"]]
        ((code, body),) = loc.values("return")
        assert int(code) == sent
        doc = json.loads(body.replace("$request_id", "0" * 32).replace("\\n", ""))
        assert doc["status"] == sent
        assert re.fullmatch(r"urn:dmr:problem:[a-z0-9-]+", doc["type"])
        assert doc["title"] and doc["detail"]
    types = {
        status: json.loads(server.location(args[2]).values("return")[0][1].replace("\\n", ""))[
            "type"
        ]
        for status, args in pages.items()
    }
    assert types[429] == "urn:dmr:problem:too-many-requests"
    assert types[413] == "urn:dmr:problem:too-large"
    assert types[405] == "urn:dmr:problem:method-not-allowed"
    assert types[403] == "urn:dmr:problem:forbidden"
    assert len(set(types.values())) == len(types), "one type per cause"


def test_json_access_log(variant):
    cfg, _, root = variant
    http = root.one("http")
    (fmt,) = http.values("log_format")
    assert fmt[:2] == ["dmr_json", "escape=json"]
    line = "".join(fmt[2:])
    sample = {
        "$time_iso8601": "2026-01-01T00:00:00+00:00",
        "$status": "200",
        "$body_bytes_sent": "12",
        "$request_length": "100",
        "$request_time": "0.004",
    }
    filled = re.sub(r"\$[a-z_0-9]+", lambda m: sample.get(m.group(0), "x"), line)
    doc = json.loads(filled)
    for key in (
        "ts",
        "request_id",
        "remote_addr",
        "client",
        "method",
        "uri",
        "status",
        "bytes",
        "request_time",
        "upstream_addr",
        "upstream_status",
        "upstream_response_time",
    ):
        assert key in doc
    assert "$dmr_request_id" in line and "$ssl_client_s_dn" in line
    (target,) = http.values("access_log")
    if cfg.access_log == "stdout":
        assert target == ["/dev/stdout", "dmr_json"]
    else:
        assert target == [cfg.access_log, "dmr_json"]


# --- the renderer's own checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"server_name": "evil; include /etc/passwd"}, "server_name"),
        ({"access_log": "/tmp/$host.log"}, "access_log"),
        ({"prefix": Path('/tmp/a"b')}, "prefix"),
        ({"worker_processes": "auto; user root"}, "worker_processes"),
        ({"relays": ["127.0.0.1:1 backup{"]}, "relays"),
    ],
)
def test_values_that_would_bend_the_config_are_refused(pki, tmp_path, changes, key):
    cfg = router_config(pki, tmp_path, **changes)
    with pytest.raises(ConfigError, match=key):
        render.render(cfg)


def test_template_uses_nothing_but_config():
    env = render.environment()
    template = env.get_template(render.TEMPLATE)
    with pytest.raises(jinja2.UndefinedError):
        template.render()
    with pytest.raises(jinja2.UndefinedError):
        template.render(config={"listen": 1})


@pytest.mark.needs_nginx
def test_cli_render_writes_and_checks(pki, tmp_path, capsys):
    prefix = tmp_path / "prefix"
    toml = tmp_path / "router.toml"
    toml.write_text(
        f'listen = 18443\nprefix = "{prefix}"\npid_file = "{prefix}/nginx.pid"\n'
        f'error_log = "stderr"\naccess_log = "stdout"\n'
        f"[limits]\nmax_message_bytes = 5000\n"
        f'[tls]\nca = "{pki.ca}"\ncrl = "{pki.crl}"\n'
        f'cert = "{pki.cert("server", "router")}"\nkey = "{pki.key("server", "router")}"\n'
    )
    out = tmp_path / "out" / "nginx.conf"
    assert main(["render", "nginx", "--config", str(toml), "--output", str(out), "--test"]) == 0
    assert "nginx -t passed" in capsys.readouterr().out
    assert parse(out.read_text()).one("http").values("client_max_body_size") == [["5000"]]
    assert main(["render", "nginx", "--config", str(toml)]) == 0
    assert capsys.readouterr().out == out.read_text()


# --- one error contract at the door ------------------------------------------------------------

# Every status nginx can answer by itself here, and the status the client sees.
NGINX_OWN = {
    400: 400,
    403: 403,
    404: 404,
    405: 405,
    408: 408,
    413: 413,
    414: 414,
    429: 429,
    494: 431,
    495: 400,
    496: 400,
    497: 400,
    500: 500,
    501: 501,
    502: 502,
    503: 503,
    504: 504,
    505: 505,
}


def problem_doc(location: Block) -> tuple[int, dict]:
    ((code, body),) = location.values("return")
    return int(code), json.loads(body.replace("\\n", ""))


def test_every_problem_has_an_error_page_and_a_location(variant):
    _, _, root = variant
    server = root.one("http").one("server")
    pages = {int(args[0]): args for args in server.values("error_page")}
    assert {status: int(args[1].lstrip("=")) for status, args in pages.items()} == NGINX_OWN
    problem_locations = {
        loc.args[-1] for loc in server.all("location") if loc.args[-1].startswith("/_dmr/problem/")
    }
    assert problem_locations == {f"/_dmr/problem/{status}" for status in NGINX_OWN}
    for status, args in pages.items():
        assert args[2] == f"/_dmr/problem/{status}"
        loc = server.location(args[2])
        code, doc = problem_doc(loc)
        assert code == doc["status"] == NGINX_OWN[status]
        headers = {a[0]: a[1:] for a in loc.values("add_header")}
        assert headers["X-Request-Id"] == ["$dmr_request_id", "always"]
        assert headers["Cache-Control"] == ["no-store", "always"]
        assert ("Allow" in headers) == (status == 405)
        assert ("Retry-After" in headers) == (status == 429)
    assert headers_of(server, 405)["Allow"] == ["$dmr_allow", "always"]
    types = {
        status: problem_doc(server.location(f"/_dmr/problem/{status}"))[1]["type"]
        for status in NGINX_OWN
    }
    assert types[494] == "urn:dmr:problem:headers-too-large"
    assert types[414] == "urn:dmr:problem:uri-too-long"
    assert types[501] == "urn:dmr:problem:transfer-encoding-not-implemented"


def headers_of(server: Block, status: int) -> dict[str, list[str]]:
    return {a[0]: a[1:] for a in server.location(f"/_dmr/problem/{status}").values("add_header")}


def test_request_limits_are_tighter_than_gunicorns(variant):
    # nginx takes a request line, and each header line, only if it fits in one large buffer
    # (with its CRLF); gunicorn's limits exclude the CRLF. They must bite before gunicorn's
    # (whose answers are HTML pages) wherever the request goes.
    from gunicorn.config import Config

    gunicorn = Config()
    _, _, root = variant
    http = root.one("http")
    (first,) = http.values("client_header_buffer_size")
    ((number, size),) = http.values("large_client_header_buffers")

    def size_of(value: str) -> int:
        return int(value[:-1]) * 1024 if value.endswith("k") else int(value)

    assert size_of(first[0]) <= size_of(size)
    assert size_of(size) - 2 <= gunicorn.limit_request_line  # 4094
    assert size_of(size) - 2 <= gunicorn.limit_request_field_size  # 8190
    assert int(number) * size_of(size) <= 64 * 1024


def test_only_listed_client_headers_are_passed_on(variant):
    # nginx counts no header fields; gunicorn refuses more than 100 (limit_request_fields).
    # Every proxied location passes a fixed set: the template's, never the client's.
    from gunicorn.config import Config

    _, _, root = variant
    server = root.one("http").one("server")
    for loc in server.all("location"):
        if not loc.all("proxy_pass"):
            continue
        assert loc.values("proxy_pass_request_headers") == [["off"]], loc.args
        names = [args[0].lower() for args in loc.values("proxy_set_header")]
        assert len(names) == len(set(names))
        for wanted in ("authorization", "content-type", "accept", "if-none-match"):
            assert wanted in names, (loc.args, wanted)
        for args in loc.values("proxy_set_header"):
            if args[1].startswith("$http_"):
                assert args[1] == "$http_" + args[0].lower().replace("-", "_")
        # nginx adds at most Host, Connection, Content-Length / Transfer-Encoding itself.
        assert len(names) + 4 < Config().limit_request_fields // 2


def allow_map(root: Block) -> Block:
    (found,) = [m for m in root.one("http").all("map") if m.args[1] == "$dmr_allow"]
    return found


def allow_for(mapping: Block, request_uri: str) -> str:
    """What nginx's map gives: an exact key first, else the first regex that matches."""
    exact = {
        c.name: c.args[0]
        for c in mapping.children
        if c.name != "default" and not c.name.startswith("~")
    }
    if request_uri in exact:
        return exact[request_uri]
    for c in mapping.children:
        if c.name.startswith("~") and re.search(c.name[1:], request_uri):
            return c.args[0]
    return mapping.one("default").args[0]


def test_allow_of_a_trace_is_the_allow_of_its_route(variant):
    # TRACE is refused by nginx before any location runs: $dmr_allow then comes from a map on
    # $request_uri, which must say what the location says (set $dmr_allow) for its paths.
    _, _, root = variant
    server = root.one("http").one("server")
    mapping = allow_map(root)
    every = set()
    for loc in server.all("location"):
        sets = [args[1] for args in loc.values("set") if args[0] == "$dmr_allow"]
        if not sets:
            continue
        (allow,) = sets
        every |= set(allow.split(", "))
        exact = loc.args[0] == "="
        path = loc.args[-1]
        samples = (
            [path, path + "?a=1"] if exact else [path, path + "x/y", path + "x?q=/v1/messages"]
        )
        for uri in samples:
            assert allow_for(mapping, uri) == allow, uri
        if exact:  # /v1/messagesx is not /v1/messages
            assert allow_for(mapping, path + "x") != allow
    assert set(allow_for(mapping, "/elsewhere").split(", ")) == every
    assert allow_for(mapping, "") == allow_for(mapping, "/elsewhere")


def render_with_common(source: str, **context) -> str:
    env = render.environment()
    return env.from_string('{%- import "nginx/common.j2" as common -%}' + source).render(**context)


def test_common_problems_are_the_base_a_template_extends():
    # gate.conf.j2 takes the same list: one error contract for every nginx of the project.
    source = (
        "{%- set found = namespace() -%}"
        "{{- common.problems(1234, found, extra) -}}"
        "{{ found.problems | tojson }}"
    )
    base = json.loads(render_with_common(source, extra=[]))
    by_status = {p[0]: p for p in base}
    assert set(by_status) == set(NGINX_OWN) - {403, 404, 429}
    assert all(by_status[s][1] == NGINX_OWN[s] for s in by_status)
    assert "1234 bytes" in by_status[413][4]
    assert [p[0] for p in base] == sorted(by_status)
    own = [(400, 400, "bad-request", "Bad request", "Mine."), (404, 404, "not-found", "N", "N.")]
    mixed = json.loads(render_with_common(source, extra=own))
    assert [p for p in mixed if p[0] == 400] == [list(own[0])]
    assert [p[0] for p in mixed] == sorted({*by_status, 404})


def test_common_request_limits_and_allow_map_render_alone():
    text = render_with_common(
        "http {{ '{' }}{{ common.request_limits() }}{{ common.allow_map() }}"
        "server {{ '{' }} location / {{ '{' }}{{ common.forward_headers(['X-DMR-Client-Cert']) }}"
        "}}}"
    )
    http = parse(text).one("http")
    assert http.values("large_client_header_buffers") == [["4", "4k"]]
    assert http.values("client_header_buffer_size") == [["1k"]]
    assert allow_map(parse(text)).one("default").args == ["GET, HEAD, POST, PUT, PATCH, DELETE"]
    loc = http.one("server").location("/")
    assert ["X-DMR-Client-Cert", "$http_x_dmr_client_cert"] in loc.values("proxy_set_header")


def test_router_health_listener_only_when_asked():
    plain = render.render(config.RouterConfig())
    assert "/healthz" not in plain
    probed = render.render(config.RouterConfig(health_bind="0.0.0.0:8081"))
    assert "listen 0.0.0.0:8081;" in probed and "location = /healthz" in probed


@pytest.mark.parametrize("setting", ["health_bind", "stub_status_bind"])
def test_the_routers_plain_ports_answer_problem_json(setting):
    # Unknown paths, other methods, oversize headers: never nginx's HTML pages.
    cfg = config.RouterConfig(**{setting: "127.0.0.1:8081"})
    [plain] = [
        s
        for s in parse(render.render(cfg)).one("http").all("server")
        if s.values("listen") == [["127.0.0.1:8081"]]
    ]
    pages = {int(args[0]): args[2] for args in plain.values("error_page")}
    assert set(pages) == set(NGINX_OWN)
    for status, target in pages.items():
        code, doc = problem_doc(plain.location(target))
        assert code == doc["status"] == NGINX_OWN[status]
    path = "/healthz" if setting == "health_bind" else "/stub_status"
    (check,) = plain.location(path).all("if")
    assert check.args[2] == "^(GET|HEAD)$)" and check.values("return") == [["405"]]
    assert plain.location("/").values("return") == [["404"]]
