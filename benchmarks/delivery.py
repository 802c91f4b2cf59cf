"""Delivery: the relay's per-recipient POST (http.client pool) vs urllib3 and requests.

One envelope is POSTed to a real local HTTPS recipient (``dmr recipient`` in its own
process, TLS from a deployment PKI made in a temporary directory, a relay certificate
required) over a kept-alive connection, in alternating rounds:

  http.client pool  the relay's own call (``Deliverer._post``: relay/connections.py)
  urllib3           the relay's former client: a PoolManager with the same TLS context
  requests.Session  the baseline: the same POST, body, headers and TLS settings
  Deliverer.deliver the relay's whole path for one recipient: body, log line

Each gets its median, p90 and p99 wall time and the CPU time of the calling thread per
call (what the relay worker pays; the recipient is another process).

Then fan-out: ``Deliverer.deliver`` to 1 and to 10 recipients that each take
``--delay`` seconds to answer; concurrent delivery keeps 10 close to 1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import requests
import urllib3
from _common import (
    Pki,
    Stats,
    figure,
    header,
    interleaved,
    make_pki,
    ms,
    note,
    parser,
    recipient_process,
    scratch,
    timed,
)

from dmr_appliance import config, envelope, logs, tokens
from dmr_appliance.relay import delivery_body
from dmr_appliance.relay.delivery import ANSWER_LIMIT, Deliverer, Recipient
from dmr_appliance.relay.outbound import tls_context
from dmr_appliance.wire import mtls

ISSUER = "dmr-bench"


def relay_config(p: Pki, connections: int = 8) -> config.RelayConfig:
    cert, key = p.pair("relay", "relay-1")
    return config.RelayConfig(
        tls=config.RelayTls(ca=p.ca, cert=cert, key=key, crl=p.dir / "crl.pem"),
        delivery=config.Delivery(per_host_connections=connections),
    )


def message(endpoint: str) -> envelope.Envelope:
    """A small real envelope (its card is signed, though delivery does not look at it)."""
    key = tokens.SigningKey.generate()
    card = tokens.issue_card(
        key, issuer=ISSUER, subject="bob", endpoint=endpoint, rooms=["bench"], lifetime=600
    )
    doc = envelope.build_envelope(
        room="bench", sender="alice", cards=[card], payload={"text": "hello", "n": 42}
    )
    return envelope.parse_envelope(json.dumps(doc).encode())


def requests_session(p: Pki) -> requests.Session:
    return mtls.session(p.ca, *p.pair("relay", "relay-1"))


class Cpu:
    """``call`` timed by the calling thread's CPU clock as well."""

    def __init__(self, call: Callable[[], None]) -> None:
        self.call, self.seconds, self.calls = call, 0.0, 0

    def __call__(self) -> None:
        started = time.thread_time()
        self.call()
        self.seconds += time.thread_time() - started
        self.calls += 1

    @property
    def per_call(self) -> float:
        return self.seconds / self.calls


def urllib3_post(p: Pki) -> Callable[[str, bytes, dict[str, str]], int]:
    """The relay's POST as it was on urllib3 (PoolManager, no retries, answer bounded)."""
    pool = urllib3.PoolManager(
        maxsize=8, ssl_context=tls_context(relay_config(p).tls), cert_reqs="CERT_REQUIRED"
    )
    timeout = urllib3.Timeout(connect=3.0, read=10.0, total=13.0)

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        response = pool.urlopen(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            response.read(ANSWER_LIMIT, decode_content=False)
        finally:
            response.release_conn()
        return int(response.status)

    return post


def per_call(p: Pki, count: int, rounds: int) -> None:
    with recipient_process(p) as port:
        url = f"https://localhost:{port}/inbox/bob"
        msg = message(url)
        deliverer = Deliverer.from_config(relay_config(p))
        former = urllib3_post(p)
        session = requests_session(p)
        body = delivery_body.body(msg, "bob")
        headers = Deliverer._headers(msg, "bench")  # the relay's own delivery headers

        def via_requests() -> None:
            response = session.post(
                url, data=body, headers=headers, timeout=10, allow_redirects=False
            )
            assert response.status_code == 200, response.status_code

        def via_pool() -> None:
            assert deliverer._post(url, body, headers).status == 200  # the relay's own POST

        def via_urllib3() -> None:
            assert former(url, body, headers) == 200

        def via_deliverer() -> None:
            (outcome,) = deliverer.deliver(msg, [Recipient("bob", url)], "bench")
            assert outcome.outcome == "delivered", outcome

        variants = {
            "http.client pool (Deliverer._post)": Cpu(via_pool),
            "urllib3 PoolManager (former)": Cpu(via_urllib3),
            "requests.Session.post (baseline)": Cpu(via_requests),
            "Deliverer.deliver, 1 recipient": Cpu(via_deliverer),
        }
        for variant in variants.values():
            variant.call()  # connect outside the CPU figure (interleaved warms the rest)
        samples = interleaved(variants, count, rounds)
        deliverer.close()
        session.close()
    print("per call, one envelope, kept-alive HTTPS to a local recipient:")
    stats = {name: Stats.of(s) for name, s in samples.items()}
    cpu = {name: variant.per_call for name, variant in variants.items()}
    for name, s in stats.items():
        figure(
            name,
            s,
            extra=f"{s.count / sum(samples[name]):7.0f} calls/s, "
            f"CPU {cpu[name] * 1e6:6.1f} µs/call",
        )
    ours = cpu["http.client pool (Deliverer._post)"]
    for name, label in (
        ("urllib3 PoolManager (former)", "urllib3 - http.client"),
        ("requests.Session.post (baseline)", "requests - http.client"),
    ):
        saved = cpu[name] - ours
        note(label, f"CPU {saved * 1e6:+8.1f} µs per call ({saved / cpu[name]:.0%} of it)")


def fan_out(p: Pki, count: int, delay: float) -> None:
    width = 10
    with recipient_process(p, delay=delay) as port:
        # Ten recipients on one host: their pool holds ten connections, not the default 8.
        cfg = relay_config(p, connections=width)
        deliverer = Deliverer.from_config(cfg)
        urls = [f"https://localhost:{port}/inbox/r{i}" for i in range(width)]
        msg = message(urls[0])
        targets = {n: [Recipient(f"r{i}", urls[i]) for i in range(n)] for n in (1, width)}

        def deliver_to(n: int) -> Callable[[], None]:
            def call() -> None:
                outcomes = deliverer.deliver(msg, targets[n], "bench")
                assert all(o.outcome == "delivered" for o in outcomes), outcomes

            return call

        for n in targets:
            timed(deliver_to(n), 2)  # warm: connections made
        results = {n: Stats.of(timed(deliver_to(n), count)) for n in targets}
        deliverer.close()
    print(
        f"fan-out, each recipient answers after {delay * 1000:.0f} ms "
        f"(one Deliverer, {cfg.delivery.pool_size} delivery threads):"
    )
    for n, s in results.items():
        figure(f"Deliverer.deliver, {n} recipient{'s' if n > 1 else ''}", s, unit=ms)
    one, many = results[1].median, results[width].median
    note(
        "10 recipients / 1 recipient",
        f"{many / one:.2f}x the time (one at a time would take >= {width * delay * 1000:.0f} ms)",
    )


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--calls", type=int, help="calls per variant (default 3000, quick 300)")
    cli.add_argument("--delay", type=float, default=0.05, help="recipient delay for fan-out, s")
    args = cli.parse_args()
    calls = args.calls or (300 if args.quick else 3000)
    rounds = 3 if args.quick else 10
    fan_calls = 5 if args.quick else 30
    header(
        "delivery: the relay's http.client pool vs urllib3 and requests",
        calls=calls,
        rounds=rounds,
        fan_out_calls=fan_calls,
    )
    # The relay writes a JSON log line per delivery; here they go nowhere, but are made.
    with open(os.devnull, "w") as sink, scratch("delivery") as tmp:
        logs.configure("info", instance="bench", stream=sink)
        deployment = make_pki(tmp / "pki")
        per_call(deployment, calls, rounds)
        fan_out(deployment, fan_calls, args.delay)


if __name__ == "__main__":
    main()
