"""The monitoring files: alert rules pass ``promtool check rules`` and their own unit tests
(``promtool test rules``), the example scrape configuration ``promtool check config``,
and the dashboard is well formed. That every metric they name is exported is checked
against a running stack (tests/integration/test_operations.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.monitoring import DASHBOARD, METRIC, PROMETHEUS, named_metrics

PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="needs promtool (Debian's prometheus package; scripts/setup.sh --test installs it)",
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    assert PROMTOOL is not None, "promtool is missing: scripts/setup.sh --test installs it"
    proc = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@needs_promtool
def test_alert_rules_check_and_pass_their_unit_tests():
    assert "SUCCESS: 15 rules found" in promtool("check", "rules", "dmr-alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "dmr-alerts.test.yml")


@needs_promtool
def test_rule_tests_fail_when_a_rule_changes(tmp_path):
    """The rule tests can fail: a threshold moved makes them say so."""
    rules = (PROMETHEUS / "dmr-alerts.yml").read_text()
    (tmp_path / "dmr-alerts.yml").write_text(rules.replace("> 0.05", "> 0.5"))
    shutil.copy(PROMETHEUS / "dmr-alerts.test.yml", tmp_path)
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "dmr-alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "DmrDeliveryFailureRatioHigh" in proc.stdout + proc.stderr


@needs_promtool
def test_example_scrape_configuration_checks(tmp_path, pki):
    for name, source in (
        ("ca.pem", pki.ca),
        ("prometheus.pem", pki.cert("admin", "admin")),
        ("prometheus.key", pki.key("admin", "admin")),
    ):
        shutil.copy(source, tmp_path / name)
    shutil.copy(PROMETHEUS / "dmr-alerts.yml", tmp_path)
    text = (PROMETHEUS / "prometheus.example.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/dmr/", f"{tmp_path}/"))
    assert "SUCCESS: 1 rule files found" in promtool(
        "check", "config", "prometheus.yml", cwd=tmp_path
    )


def test_dashboard_is_importable_and_every_panel_queries_something():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "dmr-appliance" and doc["__inputs"][0]["name"] == "DS_PROMETHEUS"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and p["targets"], p["title"]
        for target in p["targets"]:
            assert METRIC.search(target["expr"]), (p["title"], target["expr"])
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    cells = [
        (p["gridPos"]["y"] + dy, p["gridPos"]["x"] + dx)
        for p in panels
        for dy in range(p["gridPos"]["h"])
        for dx in range(p["gridPos"]["w"])
    ]
    assert len(cells) == len(set(cells)), "two panels overlap"


def test_the_queries_name_metrics():
    names = named_metrics()
    assert {
        "dmr_relay_deliveries_total",
        "dmr_home_instances",
        "nginx_up",
        "dmr_certificate_expiry_timestamp_seconds",
    } <= names
    assert not [n for n in names if n.startswith("dmr_pki")]  # prose is not a query
