"""Every log line about one message or one request, from JSON log files, as one timeline.

Pure: reads files, nothing else. A message id is named by the sender's, the relays' and
the recipient's lines; the router's and the gates' lines know only the request id that
the router gave each try. So the search runs twice: the lines naming the id asked for,
then every line naming a request id those lines named.

A line is a JSON object, alone or after a prefix (a syslog header a collector may add);
anything else is skipped. Times are RFC 3339 (the apps, nginx) or epoch seconds (the
demo recipient's deliveries).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_appliance.timefmt import parse_time

ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MESSAGE_KEYS = ("message_id", "id")
LOG_SUFFIXES = (".log", ".jsonl")
COMPRESSED = {".gz", ".xz", ".bz2", ".zst"}
DETAIL_KEYS = (
    "outcome",
    "code",
    "to",
    "target",
    "method",
    "uri",
    "upstream_addr",
    "path",
    "error",
    "detail",
    "duplicate",
)

Progress = Callable[[int], None]  # bytes read so far


@dataclass(frozen=True)
class Source:
    path: Path
    host: str
    component: str


@dataclass(frozen=True)
class Entry:
    at: float  # epoch seconds
    source: Source
    record: dict[str, Any] = field(compare=False)

    @property
    def event(self) -> str:
        return str(self.record.get("event") or ("received" if "id" in self.record else "-"))

    @property
    def status(self) -> Any:
        return self.record.get("status")

    @property
    def ms(self) -> float | None:
        if isinstance(self.record.get("ms"), int | float):
            return float(self.record["ms"])
        seconds = self.record.get("request_time")  # nginx: seconds, millisecond resolution
        return round(float(seconds) * 1000, 1) if isinstance(seconds, int | float) else None

    def detail(self) -> str:
        parts = []
        for key in DETAIL_KEYS:
            value = self.record.get(key)
            if value not in (None, "", []):
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                parts.append(f"{key}={shown}")
        deliveries = self.record.get("deliveries")
        if isinstance(deliveries, list):  # a relay's line: every recipient's delivery
            parts += [_delivery(d) for d in deliveries if isinstance(d, dict)]
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "host": self.source.host,
            "component": self.source.component,
            "event": self.event,
            "status": self.status,
            "ms": self.ms,
            "file": str(self.source.path),
            "line": self.record,
        }


def state_dir_sources(state: Path) -> list[Source]:
    """A local stack's logs (``dmr up``/``dmr demo``) and its recipient's deliveries."""
    found = [Source(p, "local", p.stem) for p in sorted((state / "logs").glob("*.log"))]
    deliveries = state / "recipient" / "deliveries.jsonl"
    if deliveries.exists():
        found.append(Source(deliveries, "local", "recipient"))
    return found


def log_dir_sources(root: Path) -> list[Source]:
    """The log host's tree: ``ROOT/<host>/<program>.log`` (rotated files too)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts
        if not any(s in path.name for s in LOG_SUFFIXES) or path.suffix in COMPRESSED:
            continue  # compressed rotations (logrotate's delaycompress keeps .1 plain)
        host = parts[0] if len(parts) > 1 else "-"
        found.append(Source(path, host, path.name.split(".")[0]))
    return found


def file_sources(paths: Iterable[Path]) -> list[Source]:
    return [Source(p, "-", p.name.split(".")[0]) for p in paths]


def trace(ident: str, sources: list[Source], progress: Progress | None = None) -> list[Entry]:
    """The timeline of ``ident`` (a message id or a request id), oldest first."""
    read = 0

    def counted(source: Source) -> Iterator[tuple[str, dict[str, Any]]]:
        nonlocal read
        for raw, record in _records(source.path):
            read += len(raw) + 1
            if progress is not None and read % 65536 < len(raw) + 1:
                progress(read)
            yield raw, record

    first = [(s, r) for s in sources for raw, r in counted(s) if ident in raw and _names(r, ident)]
    request_ids = {r["request_id"] for _, r in first if isinstance(r.get("request_id"), str)}
    request_ids.discard(ident)
    linked = [
        (s, r)
        for s in sources
        for raw, r in counted(s)
        if any(rid in raw for rid in request_ids)
        and r.get("request_id") in request_ids
        and not _names(r, ident)
    ]  # those the first pass has
    return sorted((Entry(_time(r), s, r) for s, r in first + linked), key=lambda e: e.at)


def _delivery(doc: dict[str, Any]) -> str:
    """``bob:delivered/200/3.1ms`` or ``carol:failed/-/10.0ms(TimeoutError: ...)``."""
    status = doc.get("status") if doc.get("status") is not None else "-"
    shown = f"{doc.get('to')}:{doc.get('outcome')}/{status}/{doc.get('ms')}ms"
    return shown + (f"({doc['error']})" if doc.get("error") else "")


def _names(record: dict[str, Any], ident: str) -> bool:
    return record.get("request_id") == ident or any(record.get(k) == ident for k in MESSAGE_KEYS)


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                start = line.find("{")
                if start < 0:
                    continue
                try:
                    record = json.loads(line[start:])
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield line, record
    except OSError:
        return


def _time(record: dict[str, Any]) -> float:
    value = record.get("ts")
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_time(str(value)).timestamp()
    except ValueError:
        return 0.0
