"""Delivery: the relay's per-recipient POST over its urllib3 pool vs requests.Session.

One envelope is POSTed to a real local HTTPS recipient (``dmr recipient`` in its own
process, TLS from a deployment PKI made in a temporary directory, a relay certificate
required) over a kept-alive connection, in alternating rounds:

  urllib3 pool      the relay's own call (``Deliverer._post``: its PoolManager and TLS context)
  requests.Session  the baseline: the same POST, body, headers and TLS settings
  Deliverer.deliver the relay's whole path for one recipient: body, thread pool, log line

Then fan-out: ``Deliverer.deliver`` to 1 and to 10 recipients that each take
``--delay`` seconds to answer; concurrent delivery keeps 10 close to 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import requests
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
from dmr_appliance.client import mtls
from dmr_appliance.relay.delivery import Deliverer, Recipient

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
    card = tokens.issue_card(key, issuer=ISSUER, subject="bob", endpoint=endpoint,
                             rooms=["bench"], lifetime=600)
    doc = envelope.build_envelope(room="bench", sender="alice", cards=[card],
                                  payload={"text": "hello", "n": 42})
    return envelope.parse_envelope(json.dumps(doc).encode())


def requests_session(p: Pki) -> requests.Session:
    return mtls.session(p.ca, *p.pair("relay", "relay-1"))


def per_call(p: Pki, count: int, rounds: int) -> None:
    with recipient_process(p) as port:
        url = f"https://localhost:{port}/inbox/bob"
        msg = message(url)
        deliverer = Deliverer.from_config(relay_config(p))
        session = requests_session(p)
        body = envelope.delivery_body(msg, ["bob"])
        headers = Deliverer._headers(msg, "bench")  # the relay's own delivery headers

        def via_requests() -> None:
            response = session.post(url, data=body, headers=headers, timeout=10,
                                    allow_redirects=False)
            assert response.status_code == 200, response.status_code

        def via_urllib3() -> None:
            assert deliverer._post(url, body, headers) == 200  # the relay's own POST

        def via_deliverer() -> None:
            (outcome,) = deliverer.deliver(msg, [Recipient("bob", url)], "bench")
            assert outcome.outcome == "delivered", outcome

        variants: dict[str, Callable[[], None]] = {
            "urllib3 pool (Deliverer._post)": via_urllib3,
            "requests.Session.post (baseline)": via_requests,
            "Deliverer.deliver, 1 recipient": via_deliverer,
        }
        samples = interleaved(variants, count, rounds)
        deliverer.close()
        session.close()
    print("per call, one envelope, kept-alive HTTPS to a local recipient:")
    stats = {name: Stats.of(s) for name, s in samples.items()}
    for name, s in stats.items():
        figure(name, s, extra=f"{s.count / sum(samples[name]):7.0f} calls/s")
    fast, slow = stats["urllib3 pool (Deliverer._post)"], stats["requests.Session.post (baseline)"]
    saved = slow.median - fast.median
    note("requests - urllib3", f"median {saved * 1e6:+8.1f} µs per call "
                               f"({saved / slow.median:.0%} of the baseline)")


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
    print(f"fan-out, each recipient answers after {delay * 1000:.0f} ms "
          f"(one Deliverer, {cfg.delivery.pool_size} delivery threads):")
    for n, s in results.items():
        figure(f"Deliverer.deliver, {n} recipient{'s' if n > 1 else ''}", s, unit=ms)
    one, many = results[1].median, results[width].median
    note("10 recipients / 1 recipient", f"{many / one:.2f}x the time (one at a time "
                                        f"would take >= {width * delay * 1000:.0f} ms)")


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--calls", type=int, help="calls per variant (default 3000, quick 300)")
    cli.add_argument("--delay", type=float, default=0.05, help="recipient delay for fan-out, s")
    args = cli.parse_args()
    calls = args.calls or (300 if args.quick else 3000)
    rounds = 3 if args.quick else 10
    fan_calls = 5 if args.quick else 30
    header("delivery: the relay's urllib3 pool vs requests.Session", calls=calls,
           rounds=rounds, fan_out_calls=fan_calls)
    # The relay writes a JSON log line per delivery; here they go nowhere, but are made.
    with open(os.devnull, "w") as sink, scratch("delivery") as tmp:
        logs.configure("info", instance="bench", stream=sink)
        deployment = make_pki(tmp / "pki")
        per_call(deployment, calls, rounds)
        fan_out(deployment, fan_calls, args.delay)


if __name__ == "__main__":
    main()
