"""The feedback and impression logs on disk: appended as JSON lines, rotated by size into
numbered segments, old segments deleted past a limit, and read back with every line once.

The feedback log is shared by every replica: ``feedback.jsonl`` is the open segment, and a
full one is renamed to ``feedback-NNNNNN.jsonl`` under a lock file, so a rename never races an
append. Impressions are per replica: each writes its own segments and starts a new file when
one is full (one writer, nothing to rename). docs/monitoring.md says why no event is lost or
read twice, a replica killed mid-rotation included.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path

import orjson

from shopserve.registry.store import fsync_dir

ACTIVE = "feedback.jsonl"
CLOSED = re.compile(r"^feedback-(\d{6,})\.jsonl$")


def closed_segments(directory: Path) -> list[Path]:
    """The closed feedback segments in the order they were written."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := CLOSED.match(n))]
    return [directory / n for _, n in sorted(found)]


def _number(segment: Path) -> int:
    match = CLOSED.match(segment.name)
    return int(match.group(1)) if match else 0


def _write_all(fd: int, data: bytes) -> None:
    while data:  # a short write (disk full) raises on the next call
        data = data[os.write(fd, data):]


class FeedbackLog:
    """Appends to ``feedback.jsonl``; each append is written and fsync'd before it returns.

    Every replica has its own descriptor. The check that it still names ``feedback.jsonl``,
    the rotation and the write happen under an ``flock`` on ``feedback.lock``: no line is
    written to a segment after it was renamed, so closed segments never change.
    """

    def __init__(self, directory: Path, segment_bytes: int, keep_segments: int = 0) -> None:
        self.directory = directory
        self.path = directory / ACTIVE
        self.segment_bytes = segment_bytes
        self.keep_segments = keep_segments  # 0: every closed segment is kept
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "feedback.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = -1
        self._ino = (-1, -1)
        self.rotations = 0

    def append(self, line: bytes) -> None:
        """Write one JSON line (ending in a newline) durably; the caller serializes calls."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._ensure_open()
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                # a line cut short (a crash or a full disk; never acknowledged): end it, so
                # that this event is not joined to it into one unreadable line
                _write_all(self._fd, b"\n")
                size += 1
            if size and size + len(line) > self.segment_bytes:
                self._rotate()
            _write_all(self._fd, line)  # O_APPEND, under the lock: lines never interleave
            fd = self._fd
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        # fsync outside the lock: replicas' fsyncs overlap; a rename meanwhile moves the
        # inode, and this flushes the inode wherever it is now named
        os.fsync(fd)

    def _ensure_open(self) -> None:
        """Open ``feedback.jsonl`` unless this descriptor still is it (another replica may
        have rotated it, or this one was never opened)."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:
                return
        except FileNotFoundError:
            pass
        self._open()

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self._fd)
        self._ino = (st.st_dev, st.st_ino)
        if created:
            fsync_dir(self.directory)  # the new name survives a machine crash too

    def _rotate(self) -> None:
        """Rename the full segment to the next number and open a new ``feedback.jsonl``.

        A crash before the rename changes nothing; after it, the next append creates the new
        file. Each line is under exactly one name at every moment.
        """
        segments = closed_segments(self.directory)
        last = _number(segments[-1]) if segments else 0
        os.rename(self.path, self.directory / f"feedback-{last + 1:06d}.jsonl")
        self.rotations += 1
        self._open()  # creates it, and fsyncs the directory: rename and creation are durable
        if self.keep_segments:
            for old in closed_segments(self.directory)[:-self.keep_segments]:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)


class FeedbackReader:
    """Every complete line of the feedback log once, oldest first, across rotations.

    A closed segment is read once to its end and never opened again. The open segment is
    followed by its inode: when it is renamed, the segment that turns up with that inode is
    read on from where the open file was left, not from its start.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.finished: set[str] = set()
        self.offsets: dict[tuple[int, int], int] = {}  # inode -> bytes read

    def lines(self) -> list[bytes]:
        out: list[bytes] = []
        for path in closed_segments(self.directory):
            if path.name in self.finished:
                continue
            read = self._read(path)
            if read is not None:
                out.extend(read[0])
                self.offsets.pop(read[1], None)
                self.finished.add(path.name)
        read = self._read(self.directory / ACTIVE)
        if read is not None:
            out.extend(read[0])
        return out

    def _read(self, path: Path) -> tuple[list[bytes], tuple[int, int]] | None:
        try:
            fh = path.open("rb")
        except FileNotFoundError:  # renamed or deleted meanwhile: the next round sees it
            return None
        with fh:
            st = os.fstat(fh.fileno())
            key = (st.st_dev, st.st_ino)
            start = self.offsets.get(key, 0)
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # complete lines only; a partial one is read next time
        self.offsets[key] = start + end
        return data[:end].splitlines(), key


class ImpressionLog:
    """What this replica returned, by request id: buffered, and appended once a second.

    Segments are ``<start>-<pid>-<seq>.jsonl``, each name used once. A segment deleted by
    retention while this replica still writes it is not recreated: the next one is started.
    """

    def __init__(self, directory: Path, segment_bytes: int, keep_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.keep_bytes = keep_bytes
        self.prefix = f"{int(time.time()):010d}-{os.getpid()}"
        self.seq = 0
        self.size = 0
        self.path = self._segment()
        self.buffer: list[bytes] = []
        self.prune()  # what replicas before this one left

    def _segment(self) -> Path:
        self.seq += 1
        self.size = 0
        return self.directory / f"{self.prefix}-{self.seq:06d}.jsonl"

    def record(self, request_id: str, model: str, version: int, products: list[str]) -> None:
        self.buffer.append(orjson.dumps([request_id, model, version, products]) + b"\n")

    def flush(self) -> None:
        if not self.buffer:
            return
        data, self.buffer = b"".join(self.buffer), []
        if self.size and self.size + len(data) > self.segment_bytes:
            self.path = self._segment()
            self.prune()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if not self.size
                                                                 else 0), 0o644)
        except FileNotFoundError:  # deleted by retention: a new name, never the old one
            self.path = self._segment()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self.size += len(data)

    def prune(self) -> None:
        """Delete the oldest segments (any replica's) while all of them pass ``keep_bytes``."""
        files = []
        for path in self.directory.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                files.append((st.st_mtime, path.name, st.st_size, path))
        total = sum(f[2] for f in files)
        for _, _, size, path in sorted(files):
            if total <= self.keep_bytes:
                break
            if path == self.path:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size


class ImpressionReader:
    """New complete lines of every impression segment (names are never reused)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[str, int] = {}

    def lines(self) -> list[bytes]:
        out: list[bytes] = []
        seen: dict[str, int] = {}
        for path in sorted(self.directory.glob("*.jsonl")):
            start = self.offsets.get(path.name, 0)
            try:
                with path.open("rb") as fh:
                    fh.seek(start)
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            seen[path.name] = start + end
            out.extend(data[:end].splitlines())
        self.offsets = seen  # deleted segments are forgotten
        return out
