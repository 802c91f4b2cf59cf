"""The relay under real gunicorn (`dmr relay serve`, 2 workers, its sync agent), with
home unreachable: readiness follows the saved sync document, and a new document reaches
every worker without a restart and without failing a request."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance import config
from dmr_appliance.files import write_atomic
from dmr_appliance.relay import draining
from tests.support import relay_kit
from tests.support.apps import App
from tests.support.https import mtls_session
from tests.support.identity import forwarded
from tests.support.processes import free_port
from tests.support.recipient import received, recipient_thread

pytestmark = pytest.mark.slow


class RelayProcess:
    def __init__(self, pki, state: Path, tmp: Path) -> None:
        self.port = free_port()
        cfg = relay_kit.relay_config(
            pki,
            state,
            bind=f"127.0.0.1:{self.port}",
            workers=2,
            threads=4,
            # home is down: nothing listens there; the agent keeps trying in the background.
            home_url=f"https://127.0.0.1:{free_port()}/v1/home",
        )
        (tmp / "relay.toml").write_text(config.to_toml(cfg))
        self.socket = cfg.gate.socket
        self.process = App("relay", tmp / "relay.toml", tmp)
        self.url = f"https://127.0.0.1:{self.port}"
        # What nginx does: present the router's certificate, vouch for the participant.
        self.session = mtls_session(
            pki.ca, pki.cert("router", "router"), pki.key("router", "router")
        )

    def __enter__(self) -> RelayProcess:
        self.process.start()
        self.process.wait_ready(lambda: self.get("/healthz").ok, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def get(self, path: str) -> requests.Response:
        # A fresh connection each time, so that both workers get to answer.
        return self.session.get(self.url + path, timeout=5, headers={"Connection": "close"})

    def send(self, doc: dict, token: str, pki) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Connection": "close",
            **forwarded(pki, "participant", "alice"),
        }
        return self.session.post(self.url + "/v1/messages", json=doc, headers=headers, timeout=10)


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_readiness_saved_document_and_live_updates(pki, tmp_path):
    signer = relay_kit.HomeSigner()
    state = tmp_path / "state"
    state.mkdir()
    inbox_log = tmp_path / "inbox.jsonl"
    token = signer.token("alice", pki.cert("participant", "alice"))
    with recipient_thread(pki, inbox_log) as inbox:
        card = signer.card("bob", f"https://127.0.0.1:{inbox.port}/inbox/bob")

        # 1. No sync document, home unreachable: alive, not ready, nothing attempted.
        with RelayProcess(pki, state, tmp_path) as relay:
            assert relay.get("/readyz").status_code == 503
            resp = relay.send(relay_kit.message([card]), token, pki)
            assert resp.status_code == 503
            assert resp.json()["type"] == "urn:dmr:problem:not-ready"
            # The agent saves a document (as it would from home): ready without restart.
            write_atomic(state / "sync.json", signer.document())
            wait_until(lambda: all(relay.get("/readyz").ok for _ in range(10)))

        # 2. Restarted with home still down: the saved document is enough to deliver.
        with RelayProcess(pki, state, tmp_path) as relay:
            assert relay.get("/readyz").json() == {"status": "ready", "sync_version": 1}
            doc = relay_kit.message([card])
            assert relay.send(doc, token, pki).status_code == 200
            assert [r["id"] for r in received(inbox_log)] == [doc["id"]]

            # 3. Home revokes alice: every worker refuses her, no request fails meanwhile.
            statuses: Counter = Counter()
            stop = threading.Event()

            def keep_sending() -> None:
                while not stop.is_set():
                    statuses[relay.send(relay_kit.message([card]), token, pki).status_code] += 1

            sender = threading.Thread(target=keep_sending)
            sender.start()
            time.sleep(0.5)
            signer.version = 2
            write_atomic(state / "sync.json", signer.document(revoked=("alice",)))
            time.sleep(0.5)
            stop.set()
            sender.join()
            assert set(statuses) <= {200, 403}, statuses
            assert statuses[200] and statuses[403], statuses
            refusals = [relay.send(relay_kit.message([card]), token, pki) for _ in range(20)]
            assert {r.status_code for r in refusals} == {403}
            assert {r.json()["type"] for r in refusals} == {"urn:dmr:problem:sender-revoked"}
            assert relay.get("/readyz").json()["sync_version"] == 2

            # Counts are the instance's, whichever worker answers the scrape (they are
            # two, each with its own files in the metrics directory).
            scrapes = [refusals_by_problem(relay.get("/metrics").text) for _ in range(6)]
            assert scrapes[0]["sender-revoked"] >= 20
            assert all(s == scrapes[0] for s in scrapes), scrapes
            files = {p.name.split("_")[-1] for p in (state / "metrics").glob("counter_*.db")}
            assert len(files) == 3, files  # one per worker, one for the sync agent

            # 4. Drained (dmr relay drain, as a rolling upgrade does): every worker answers
            #    503 draining, nothing attempted; --undo takes messages again.
            drained = drain(tmp_path / "relay.toml")
            assert drained.returncode == 0, drained.stdout + drained.stderr
            assert "drained in" in drained.stdout and "503" in drained.stdout, drained.stdout
            before = len(received(inbox_log))
            answers = [relay.send(relay_kit.message([card]), token, pki) for _ in range(10)]
            assert {(a.status_code, a.json()["type"]) for a in answers} == {
                (503, "urn:dmr:problem:draining")
            }
            assert relay.get("/readyz").status_code == 503
            assert len(received(inbox_log)) == before
            signer.version = 3  # alice active again, so that a delivery shows the way back
            write_atomic(state / "sync.json", signer.document())
            assert drain(tmp_path / "relay.toml", "--undo").returncode == 0
            wait_until(lambda: all(relay.get("/readyz").ok for _ in range(10)))
            assert relay.send(relay_kit.message([card]), token, pki).status_code == 200
            drain(tmp_path / "relay.toml")
        # 5. A restart (an upgrade's) clears the flag: the new master does, as it starts.
        assert draining.flag_path(relay.socket).exists()
        with RelayProcess(pki, state, tmp_path) as relay:
            wait_until(lambda: relay.get("/readyz").ok)
            assert relay.send(relay_kit.message([card]), token, pki).status_code == 200
        log = relay.process.logs()
        assert '"event":"agent-started"' in log and '"event":"sync-failed"' in log
        assert '"msg":"drain-cleared: ' in log


def drain(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dmr_appliance",
            "relay",
            "drain",
            "--config",
            str(conf),
            "--timeout",
            "20",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refusals_by_problem(text: str) -> dict[str, float]:
    return {
        s.labels["problem"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "dmr_relay_refusals_total"
    }
