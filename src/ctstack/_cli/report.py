"""The CLI's reporter for a stack's notes: tidy ``warning:`` lines on stderr, a bounded number.

``open_stack(path, report=reporter)`` hands it one summary message at open (one note per line,
at most ten) and one message per bad slice found later while reading. Messages are printed as
``warning: ...`` lines until ``limit`` lines are out; later messages are only counted, and
``close()`` prints one ``warning: ... and N more`` line.
Python warnings raised while a sub-command runs go through the same reporter (``capture``),
so no source line or file name of ctstack's own code reaches the terminal.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TextIO

LIMIT = 10  # warning lines printed per command before messages are only counted
_API_HINT = " (see stack.warnings)"


class CliReporter:
    """``reporter(message)`` prints each line of ``message`` as ``warning: line`` (thread-safe)."""

    def __init__(self, stream: TextIO | None = None, limit: int = LIMIT) -> None:
        self.stream = stream
        self.limit = limit
        self.printed = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        lines = [line.strip() for line in str(message).splitlines()]
        lines = [line.removesuffix(_API_HINT) for line in lines if line]
        with self._lock:
            if self.printed >= self.limit:
                self.dropped += 1
                return
            stream = self.stream or sys.stderr
            for line in lines:  # a summary at open is one message of a few lines
                stream.write(f"warning: {line}\n")
            self.printed += len(lines)
            stream.flush()

    def close(self) -> None:
        """Print how many warnings were left out (once): ``warning: ... and 4981 more``."""
        with self._lock:
            if self.dropped:
                stream = self.stream or sys.stderr
                stream.write(f"warning: ... and {self.dropped} more\n")
                stream.flush()
                self.dropped = 0

    @contextlib.contextmanager
    def capture(self) -> Iterator[CliReporter]:
        """Route Python warnings through this reporter while the block runs; close after."""
        previous = warnings.showwarning

        def show(message: Warning | str, *args: object, **kwargs: object) -> None:
            self(str(message))

        warnings.showwarning = show
        try:
            yield self
        finally:
            warnings.showwarning = previous
            self.close()
