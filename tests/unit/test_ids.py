"""The strict participant-endpoint rule: a table of good and bad URLs, and properties
proving that every accepted URL reaches the relay's HTTP client (the request target
relay/http1.py writes, as urllib3 would send it) and urllib.parse exactly as written."""

from __future__ import annotations

import string
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from dmr_appliance.ids import (
    ENDPOINT_MAX_LENGTH,
    endpoint_problem,
    is_endpoint_url,
    is_https_url,
    request_target,
)

MANY = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOOD = [
    "https://bob.example/inbox",
    "https://bob.example",
    "https://localhost:8443/inbox/bob",
    "https://127.0.0.1:1/",
    "https://[::1]:8443/in",
    "https://[2001:db8::1]/",
    "https://[::ffff:192.0.2.1]/",
    "https://xn--bcher-kva.example/",
    "https://a-b.c0.example:65535/x/y/",
    "https://bob.example/.well-known/dmr",
    "https://bob.example//double",
    "https://bob.example/in;v=1,a=b!$&'()*+:@~_-.",
    "https://bob.example/in?to=bob&room=ops/a?b:@",
    "https://bob.example?x=1",
    "https://bob.example/in?",
    "https://bob.example/%2F%20%C3%A9",
    "https://bob.example/in?q=..%2F",
    "https://bob.example/" + "a" * (ENDPOINT_MAX_LENGTH - len("https://bob.example/")),
]

BAD = [
    (None, "must be a string"),
    (42, "must be a string"),
    ("https://bob.example/" + "a" * ENDPOINT_MAX_LENGTH, "longer than 2048"),
    ("http://bob.example/", "must start with https://"),
    ("HTTPS://bob.example/", "must start with https://"),
    ("https:/bob.example/", "must start with https://"),
    ("//bob.example/", "must start with https://"),
    ("bob.example", "must start with https://"),
    ("https://bob.example/in#top", "fragment"),
    ("https://bob.example/#", "fragment"),
    ("https://user:pass@bob.example/", "userinfo"),
    ("https://user@bob.example/", "userinfo"),
    ("https://@bob.example/", "userinfo"),
    ("https://bob.example/in box", "whitespace (U+0020)"),
    (" https://bob.example/", "whitespace"),
    ("https://bob.example/\t", "whitespace (U+0009)"),
    ("https://bob.example/in\r\nX-Evil: 1", "whitespace (U+000D)"),
    ("https://bob.example/\x00", "control character (U+0000)"),
    ("https://bob.example/\x7f", "control character (U+007F)"),
    ("https://bob.exam\x1bple/", "control character (U+001B)"),
    ("https://bücher.example/", "non-ASCII character (U+00FC)"),
    ("https://bob.example/\u00a0", "non-ASCII"),
    ("https://bob.example/\u2028", "non-ASCII"),
    ("https://", "no host"),
    ("https:///inbox", "no host"),
    ("https://:8443/", "no host"),
    ("https://?x", "no host"),
    ("https://Bob.example/", "lowercase"),
    ("https://bob_1.example/", "host label 'bob_1'"),
    ("https://-bob.example/", "host label '-bob'"),
    ("https://bob-.example/", "host label 'bob-'"),
    ("https://bob..example/", "host label ''"),
    ("https://bob.example./", "host label ''"),
    ("https://" + "a" * 64 + ".example/", "host label"),
    ("https://" + ".".join(["a" * 60] * 5) + "/", "longer than 253"),
    ("https://bob.123/", "all-digit label"),
    ("https://bob%2Eexample/", "host label"),
    ("https://bob.example\\@evil.example/", "userinfo"),
    ("https://bob.example\\evil/", "host label"),
    ("https://256.1.1.1/", "IPv4"),
    ("https://1.2.3/", "IPv4"),
    ("https://01.2.3.4/", "IPv4"),
    ("https://1.2.3.4.5/", "IPv4"),
    ("https://2130706433/", "IPv4"),
    ("https://[::1/", "no closing ']'"),
    ("https://[::1]x/", "between its IPv6 address and its port"),
    ("https://[2001:DB8::1]/", "IPv6 address must be lowercase"),
    ("https://[fe80::1%25eth0]/", "zone id"),
    ("https://[1:2:3:4:5:6:7:8:9]/", "not a valid IPv6"),
    ("https://[]/", "not a valid IPv6"),
    ("https://[v1.x]/", "not a valid IPv6"),
    ("https://[192.0.2.1]/", "not a valid IPv6"),
    ("https://::1/", "no host"),
    ("https://bob.example:/", "port"),
    ("https://bob.example:0/", "port"),
    ("https://bob.example:08443/", "port"),
    ("https://bob.example:65536/", "port"),
    ("https://bob.example:443:1/", "port"),
    ("https://bob.example:+443/", "port"),
    ("https://bob.example:https/", "port"),
    ("https://bob.example/a/../b", "'..' segment"),
    ("https://bob.example/./b", "'.' or '..' segment"),
    ("https://bob.example/a/..", "'..' segment"),
    ("https://bob.example/a/.?x", "segment"),
    ("https://bob.example/<script>", "path contains '<'"),
    ("https://bob.example/a\\b", "path contains '\\\\'"),
    ('https://bob.example/a"b', "path contains '\"'"),
    ("https://bob.example/a[0]", "path contains '['"),
    ("https://bob.example/{a}|^`", "path contains '{'"),
    ("https://bob.example/in?q=<", "query contains '<'"),
    ("https://bob.example/%", "'%' not followed by two hex digits"),
    ("https://bob.example/%2", "'%' not followed by two hex digits"),
    ("https://bob.example/%zz", "'%' not followed by two hex digits"),
    ("https://bob.example/in?q=%G0", "query has a '%' not followed"),
    ("https://bob.example/%2f", "uppercase hex (%2F, not %2f)"),
    ("https://bob.example/in?q=%c3%a9", "uppercase hex"),
    ("https://bob.example/%41", "percent-encodes 'A'"),
    ("https://bob.example/%2E%2E/x", "percent-encodes '.'"),
]


@pytest.mark.parametrize("url", GOOD)
def test_good_endpoints(url):
    assert endpoint_problem(url) is None
    assert is_endpoint_url(url) and is_https_url(url)
    assert parse_url(url).url == url


@pytest.mark.parametrize(("url", "reason"), BAD)
def test_bad_endpoints_say_why(url, reason):
    problem = endpoint_problem(url)
    assert problem is not None and reason in problem, problem
    assert not is_endpoint_url(url)


def test_is_https_url_stays_lenient():
    # Home's URL in configs keeps the old rule; only endpoints are strict.
    assert is_https_url("https://Home.example:8443/")
    assert not is_https_url("http://home.example/") and not is_https_url("https:///x")


# --- properties --------------------------------------------------------------------------

labels = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")
dns_names = (
    st.lists(labels, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda name: not name.rsplit(".", 1)[-1].isdigit())
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).flatmap(lambda ip: st.sampled_from([str(ip), ip.exploded]))
hosts = st.one_of(dns_names, ipv4, ipv6.map(lambda text: f"[{text}]"))
ports = st.none() | st.integers(1, 65535)
# Percent-encodings of bytes that need them (anything but an unreserved character).
UNRESERVED = string.ascii_letters + string.digits + "-._~"
encoded = st.integers(0, 255).filter(lambda b: chr(b) not in UNRESERVED).map(lambda b: f"%{b:02X}")
PCHARS = UNRESERVED + "!$&'()*+,;=:@"
segments = (
    st.lists(st.sampled_from(PCHARS) | encoded, max_size=8)
    .map("".join)
    .filter(lambda s: s not in (".", ".."))
)
paths = st.lists(segments, max_size=4).map(lambda parts: "".join("/" + p for p in parts))
queries = st.none() | st.lists(st.sampled_from(PCHARS + "/?") | encoded, max_size=12).map("".join)


def assemble(host: str, port: int | None, path: str, query: str | None) -> str:
    return (
        f"https://{host}"
        + (f":{port}" if port else "")
        + path
        + (f"?{query}" if query is not None else "")
    )


def assert_round_trip(url: str, host: str, port: int | None, path: str, query: str | None) -> None:
    parsed = parse_url(url)
    assert parsed.url == url
    assert (parsed.scheme, parsed.port, parsed.path or "", parsed.query) == (
        "https",
        port,
        path,
        query,
    )
    # What the relay's client (relay/http1.py, given ids.request_target) sends as the
    # request line, and what urllib3 would send.
    assert (
        request_target(url)
        == parsed.request_uri
        == (path or "/") + (f"?{query}" if query is not None else "")
    )
    split = urlsplit(url)
    assert (
        split.scheme,
        split.hostname,
        split.port,
        split.path,
        split.query,
        split.fragment,
        split.username,
    ) == ("https", host.strip("[]"), port, path, query or "", "", None)


@MANY
@given(hosts, ports, paths, queries)
def test_every_well_formed_endpoint_is_accepted_and_round_trips(host, port, path, query):
    url = assemble(host, port, path, query)
    assert endpoint_problem(url) is None, url
    assert_round_trip(url, host, port, path, query)


# Near-URLs: each part usually well formed, sometimes drawn from a loose superset of the
# grammar (upper case, '_', leading zeros, port 0, dot segments, lowercase or needless
# percent-encodings, '#', '@'), sometimes with a few characters swapped in anywhere.
# Whatever the rule accepts must round-trip unchanged; the rest must come with a reason.
def mostly(good: st.SearchStrategy[str], loose: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(good, good, loose)


loose_hosts = st.one_of(
    st.lists(st.text("aZ09-_", min_size=1, max_size=5), min_size=1, max_size=3).map(".".join),
    st.lists(st.sampled_from(["0", "00", "1", "01", "255", "256"]), min_size=3, max_size=5).map(
        ".".join
    ),
    st.tuples(ipv6, st.booleans()).map(lambda ip: f"[{ip[0].upper() if ip[1] else ip[0]}]"),
)
loose_ports = st.text("0123456789", max_size=6)
loose_encoded = st.tuples(st.sampled_from(string.hexdigits), st.sampled_from(string.hexdigits)).map(
    lambda pair: "%" + "".join(pair)
)
loose_chars = st.sampled_from(PCHARS + '%<> "#[]\\@') | encoded | loose_encoded
loose_segments = st.sampled_from([".", ".."]) | st.lists(loose_chars, max_size=5).map("".join)
loose_paths = st.lists(mostly(segments, loose_segments), max_size=4).map(
    lambda parts: "".join("/" + p for p in parts)
)
loose_queries = st.lists(
    mostly(st.sampled_from(PCHARS + "/?") | encoded, loose_chars), max_size=8
).map("".join)
TRICKY = "aZ09-._~:/?#@[]%2fF!$&'()*+,;= \t\\<>\"^`{|}\x00\u00e9"


@st.composite
def near_endpoints(draw: st.DrawFn) -> str:
    host = draw(mostly(hosts, loose_hosts))
    port = draw(st.none() | mostly(ports.map(str), loose_ports))
    query = draw(st.none() | loose_queries)
    url = (
        f"https://{host}"
        + (f":{port}" if port is not None else "")
        + draw(loose_paths)
        + (f"?{query}" if query is not None else "")
    )
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.sampled_from(range(len("https://"), len(url) + 1)))
        cut = draw(st.integers(0, 2))
        url = url[:at] + draw(st.text(TRICKY, min_size=1, max_size=3)) + url[at + cut :]
    return url


@MANY
@given(near_endpoints())
@example("https://a.example/%2e%2E")
@example("https://[::1]:1/%20?#")
def test_whatever_the_rule_accepts_round_trips(url):
    problem = endpoint_problem(url)
    if problem is not None:
        assert isinstance(problem, str) and problem.startswith("the endpoint")
        return
    parsed = parse_url(url)
    assert parsed.url == url
    split = urlsplit(url)
    host = split.netloc.rpartition(":")[0] if split.port else split.netloc
    query = url.partition("?")[2] if "?" in url else None
    assert_round_trip(url, host, split.port, split.path, query)
