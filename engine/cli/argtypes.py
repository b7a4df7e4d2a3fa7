"""Argument types for ``bas``: each refuses a bad value with a message argparse prefixes with the option."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

MAX_SEED = 2**63 - 1


def int_in(lo: int, hi: int, multiple: int = 1) -> Callable[[str], int]:
    """A whole number ``lo <= n <= hi`` (and a multiple of ``multiple``)."""
    def parse(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= n <= hi:
            top = "2**63-1" if hi == MAX_SEED else str(hi)
            raise argparse.ArgumentTypeError(f"{text} is out of range (from {lo} to {top})")
        if n % multiple:
            raise argparse.ArgumentTypeError(f"{text} is not a multiple of {multiple}")
        return n
    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float, open_low: bool = False) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``open_low``); NaN and infinities refused."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if x < lo or x > hi or (open_low and x == lo):
            raise argparse.ArgumentTypeError(f"{text} is out of range ({'above' if open_low else 'from'} {lo:g} "
                                             f"to {hi:g})")
        return x
    parse.__name__ = "float"
    return parse


SEED = int_in(0, MAX_SEED)
STEPS = int_in(0, 10**6)
POSITIVE = int_in(1, 10**6)
NONNEGATIVE = int_in(0, 10**6)
SIZE = int_in(8, 8192, multiple=8)
RANK = int_in(1, 1024)
VIEWS = int_in(1, 64)
PIXELS = int_in(0, 1024)
GUIDANCE = float_in(0.0, 100.0)
STRENGTH = float_in(0.0, 1.0, open_low=True)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (exit status 2), like every other failure."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
