"""argparse types that refuse out-of-range numbers at the boundary, in argparse's own one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer >= ``low`` (``--epochs 0`` or ``--jobs 0`` would otherwise be accepted and do nothing)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small: use {low} or more")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def finite_float(
    *, low: float | None = None, high: float | None = None, strict: bool = False
) -> Callable[[str], float]:
    """A finite number within [low, high] (``(low, high)`` when ``strict``): ``nan``, ``inf`` and ``1e400``
    parse as floats but are never a sensible setting."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: use a finite number")
        below = low is not None and (value <= low if strict else value < low)
        above = high is not None and (value >= high if strict else value > high)
        if below or above:
            raise argparse.ArgumentTypeError(f"{text}: use a number {_range(low, high, strict)}")
        return value

    parse.__name__ = "float"
    return parse


def _range(low: float | None, high: float | None, strict: bool) -> str:
    lo, hi = (">", "<") if strict else (">=", "<=")
    if low is not None and high is not None:
        return f"{lo} {low:g} and {hi} {high:g}"
    return f"{lo} {low:g}" if low is not None else f"{hi} {high:g}"


POSITIVE_INT = int_at_least(1)
COUNT = int_at_least(0)
POSITIVE = finite_float(low=0.0, strict=True)
NON_NEGATIVE = finite_float(low=0.0)
FRACTION = finite_float(low=0.0, high=1.0, strict=True)
