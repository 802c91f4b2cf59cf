"""Progress of long-running CLI work, on stderr: a bar redrawn in place on a terminal;
elsewhere (CI, logs, pipes) a plain line at every tenth, and at least every few seconds."""

from __future__ import annotations

import time
from typing import IO


class ProgressBar:
    WIDTH = 30

    def __init__(
        self,
        total: int,
        stream: IO[str],
        *,
        prefix: str = "",
        every: float = 5.0,
        verb: str = "sent",
    ) -> None:
        self.total = max(1, total)
        self.stream = stream
        self.prefix = prefix
        self.every = every
        self.verb = verb
        self.tty = stream.isatty()
        self._tenth = 0
        self._last = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        if self.tty:
            filled = self.WIDTH * min(done, self.total) // self.total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.prefix}[{bar}] {done}/{self.total}  {note:<45}")
            self.stream.flush()
            return
        tenth = 10 * done // self.total
        if tenth > self._tenth or time.monotonic() - self._last >= self.every:
            self._tenth, self._last = tenth, time.monotonic()
            suffix = f"  ({note})" if note else ""
            self.stream.write(f"{self.prefix}{self.verb} {done}/{self.total}{suffix}\n")
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        if self.tty:
            self.update(self.total, note)
            self.stream.write("\n")
            self.stream.flush()
