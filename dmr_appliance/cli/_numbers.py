"""argparse types for numbers: one rule each, and one wording for every refusal."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number from ``minimum`` (to ``maximum``)."""
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {bounds} (a whole number)")
        return value

    return parse


def positive(text: str) -> float:
    """A number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 (a number)")
    return value
