"""Job progress: a live bar with rows/s and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

LINE_EVERY_S = 2.0


class ProgressReporter:
    """Counts rows as chunks finish and shows it in a way that fits where the output goes."""

    def __init__(self, total: int | None, done: int = 0, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.done, self.bad = total, done, 0
        self.resumed = done
        self.started = time.monotonic()
        self.last_line = 0.0
        self.lock = threading.Lock()  # the reader thread counts resumed chunks

    def skip(self, rows: int) -> None:
        """Rows of a chunk finished by an earlier run of the same job."""
        with self.lock:
            self.done += rows
            self.resumed += rows

    def restart_clock(self) -> None:
        """Rates count from the first chunk, not from model load and worker start."""
        self.started = time.monotonic()

    def advance(self, rows: int, bad: int) -> None:
        with self.lock:
            self.done += rows
            self.bad += bad
        now = time.monotonic()
        if self.tty or now - self.last_line >= LINE_EVERY_S:
            self.last_line = now
            self._show(final=False)

    def finish(self) -> None:
        self._show(final=True)

    def rate(self) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (self.done - self.resumed) / elapsed

    def _show(self, final: bool) -> None:
        rate = self.rate()
        text = f"{self.done:,} rows, {rate:,.0f} rows/s, {self.bad:,} bad"
        if self.total:
            share = min(self.done / self.total, 1.0)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = f"{eta:,.0f}s" if eta != float("inf") else "?"
            if self.tty:
                bar = "#" * int(share * 30)
                text = f"[{bar:<30}] {share:6.1%} {text}, ETA {eta_text}"
            else:
                text = f"{share:.1%} {text}, ETA {eta_text}"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(("done: " if final else "progress: ") + text + "\n")
        self.stream.flush()
