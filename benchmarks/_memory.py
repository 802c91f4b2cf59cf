"""Relay RSS as messages go through: the largest process of each relay's gunicorn group
(its worker; the master and the sync agent are smaller), at start and after N messages."""

from __future__ import annotations

from collections.abc import Callable

from _common import group_rss, note
from _wrk import WrkRun


class RssWatch:
    def __init__(self, groups: list[int]) -> None:
        self.groups = groups
        self.messages = 0
        self.start = self.worker_rss()

    def worker_rss(self) -> float:
        """MiB: the mean over relays of each group's largest process."""
        sizes = [max(group_rss(g).values(), default=0) for g in self.groups]
        return sum(sizes) / len(sizes) / 1024

    def count(self, run: WrkRun, path: str) -> None:
        if path == "relay":
            self.messages += run.requests

    def add(self, messages: int) -> None:
        self.messages += messages

    def until(self, targets: tuple[int, int], more: Callable[[], WrkRun]) -> dict[str, float]:
        found = {"rss_start_mib": round(self.start, 1)}
        for target in targets:
            while self.messages < target:
                self.messages += more().requests
            found[f"rss_{target}_mib"] = round(self.worker_rss(), 1)
            note(
                f"relay worker RSS after {target} messages",
                f"{found[f'rss_{target}_mib']} MiB (start {found['rss_start_mib']} MiB, "
                f"{self.messages} sent)",
            )
        first, second = (found[f"rss_{t}_mib"] for t in targets)
        found["rss_growth_pct"] = round((second - first) / first * 100, 1)
        note(
            "relay RSS growth",
            f"{found['rss_growth_pct']:+.1f} % from {targets[0]} to {targets[1]} messages",
        )
        return found
