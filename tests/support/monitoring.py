"""The repository's monitoring files, and the metric names their queries use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
DASHBOARD = ROOT / "monitoring" / "grafana" / "dmr-dashboard.json"
METRIC = re.compile(r"\b(?:dmr|nginx)_[a-z0-9_]+\b")


def named_metrics() -> set[str]:
    """Every metric name the rules' and the dashboard's queries use."""
    exprs = [
        t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])
    ]
    rules = yaml.safe_load((PROMETHEUS / "dmr-alerts.yml").read_text())
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    return {m for text in exprs for m in METRIC.findall(text)}
