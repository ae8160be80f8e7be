"""A terminal progress bar with throughput and ETA, shared by the long-running sub-commands."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar(done, total)`` redraws at most ten times a second and ends the line when done.

    On a terminal it redraws in place; otherwise (logs, CI) it prints a line every 10 %.
    """

    def __init__(self, label: str, unit: str = "slices", stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_decile = -1
        self.tty = self.stream.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.tty:
            if done < total and now - self.last_draw < 0.1:
                return
            self.last_draw = now
            self.stream.write("\r" + self.line(done, total, now))
            self.drawn = done < total
            if done >= total:
                self.stream.write("\n")
        else:
            decile = 10 * done // max(total, 1)
            if decile == self.last_decile:
                return
            self.last_decile = decile
            self.stream.write(self.line(done, total, now) + "\n")
        self.stream.flush()

    def line(self, done: int, total: int, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        frac = done / total if total else 1.0
        width = 30
        filled = int(width * frac)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:5.1f} s" if eta != float("inf") else "  ?  "
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit} "
            f"{rate:7.1f}/s  ETA {eta_text}"
        )

    def close(self) -> None:
        """Ends a half-drawn line (after an error or Ctrl-C)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
