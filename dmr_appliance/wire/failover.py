"""Several base URLs of one service (home's API through each router): a call starts at the
URL that answered last and, when it fails in a way another URL may not, goes on to the
next at once. Used by the sender's HomeClient and the relay's sync agent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class Failover:
    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one base URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.index = 0  # of the URL that answered last

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def call(self, fn: Callable[[str], T], passes_on: Callable[[str, Exception], bool]) -> T:
        """``fn(url)`` from the current URL on. When it raises, ``passes_on(url, error)``
        (called for every failure) says whether another URL may do better: then the next
        is tried. The last error, or one not passed on, is raised. The URL that answered
        becomes the current one."""
        for step in range(len(self.urls)):
            index = (self.index + step) % len(self.urls)
            try:
                result = fn(self.urls[index])
            except Exception as exc:
                if not passes_on(self.urls[index], exc) or step == len(self.urls) - 1:
                    raise
                continue
            self.index = index
            return result
        raise AssertionError("not reached: the loop returns or raises")
