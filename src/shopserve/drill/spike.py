"""The overload drill's spike, offered by h2load (nghttp2's load generator, written in C): the
drill's own Python client cannot offer several times a deployment's capacity on a small machine.

h2load 1.52 as used here: ``--h1`` (HTTP/1.1), ``-d FILE`` (POST that body; with HTTP/1.1 one
request in flight per connection), ``--rps R`` (each connection sends at most R requests/s; a
send that falls due while its request is still in flight waits for the answer, so the rate that
was really offered is taken from the log, not from the flags), ``-D`` (for that long), and
``--log-file`` (one line per request: start time in µs since the epoch, status, µs until the end
of the response; status -1 for a failed stream). The log file is **appended to**, so each run
gets a fresh path.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shopserve.drill.load import Outcome, Sample
from shopserve.errors import UnavailableError, UsageError

INSTALL_HINT = ("h2load is not installed: the overload drill offers its spike with it "
                "(Debian/Ubuntu: apt-get install nghttp2-client)")


def find_h2load() -> str | None:
    return shutil.which("h2load")


def require_h2load() -> str:
    exe = find_h2load()
    if exe is None:
        raise UsageError(INSTALL_HINT)
    return exe


@dataclass(frozen=True)
class SpikeRequest:
    """The one request h2load sends over and over (it posts a single body)."""

    url: str  # the service's base URL
    path: str
    body: Path

    @property
    def target(self) -> str:
        return self.url.rstrip("/") + self.path


@dataclass(frozen=True)
class H2Record:
    start_s: float  # wall clock (seconds since the epoch) when the request was sent
    status: int  # -1: the stream failed (no answer)
    latency_s: float


def _command(request: SpikeRequest, connections: int, seconds: float, log: Path,
             rps: float | None = None) -> list[str]:
    cmd = [require_h2load(), "--h1", "-t", "1", "-c", str(connections),
           "-D", f"{max(round(seconds * 1000), 1)}ms", "-d", str(request.body),
           "-H", "content-type: application/json", "--log-file", str(log)]
    if rps is not None:
        cmd += ["--rps", f"{rps:.3f}"]
    return [*cmd, request.target]


def read_log(path: Path) -> list[H2Record]:
    records = []
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3:
            continue  # a line cut short when h2load was killed
        try:
            records.append(H2Record(int(parts[0]) / 1e6, int(parts[1]), int(parts[2]) / 1e6))
        except ValueError:
            continue
    return records


def closed_loop(request: SpikeRequest, connections: int, seconds: float) -> list[H2Record]:
    """Each connection sends its next request as soon as the last is answered: how many
    requests/s the deployment answers (2xx) when it is kept busy."""
    with tempfile.TemporaryDirectory(prefix="shopserve-h2load-") as tmp:
        log = Path(tmp) / "calibration.tsv"
        done = subprocess.run(_command(request, connections, seconds, log),
                              capture_output=True, text=True, timeout=seconds + 30, check=False)
        if done.returncode != 0:
            raise UnavailableError(f"h2load calibration failed (exit {done.returncode}): "
                                   f"{(done.stderr or done.stdout).strip()[-300:]}")
        return read_log(log)


@dataclass(frozen=True)
class SpikePlan:
    rate: float  # requests/s h2load is asked to offer
    connections: int
    rps_per_connection: float


def plan_spike(rate: float, per_connection: float, max_connections: int) -> SpikePlan:
    """Spread ``rate`` over connections that each send ``per_connection`` requests/s or less, so
    that one slow answer delays only its own connection's next send."""
    connections = min(max(math.ceil(rate / per_connection), 1), max_connections)
    return SpikePlan(rate, connections, rate / connections)


class SpikeProcess:
    """h2load running in the background for one spike; ``finish`` waits for it and reads its log."""

    def __init__(self, request: SpikeRequest, plan: SpikePlan, seconds: float) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="shopserve-h2load-"))
        self.log = self.tmp / "spike.tsv"
        self.seconds = seconds
        self.proc = subprocess.Popen(
            _command(request, plan.connections, seconds, self.log, plan.rps_per_connection),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(self, grace_s: float = 10.0) -> tuple[list[H2Record], str | None]:
        """The spike's records, and an error when h2load did not end by itself in time."""
        error = None
        try:
            _, stderr = self.proc.communicate(timeout=grace_s)
            if self.proc.returncode != 0:
                error = f"h2load exited {self.proc.returncode}: {stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            error = f"h2load did not end within {grace_s:g} s of its duration; killed"
        records = read_log(self.log)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return records, error

    def stop(self) -> tuple[list[H2Record], str | None]:
        """Cut the spike short (abort, Ctrl-C)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.finish(grace_s=5.0)


def as_samples(records: list[H2Record], t0_wall: float) -> list[Sample]:
    """h2load's requests as drill samples (t: seconds since the load started). h2load does not
    read answers, so a 2xx counts as fresh (a fallback answer cannot be told apart) and it never
    retries: any status but 2xx and 429 is a lost request."""
    out = []
    for r in records:
        if 200 <= r.status < 300:
            outcome = Outcome.FRESH
        elif r.status == 429:
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.LOST
        failed = outcome is Outcome.LOST
        t = r.start_s - t0_wall
        out.append(Sample(t, r.latency_s, outcome, 1, int(failed),
                          t + r.latency_s if failed else None,
                          status=None if r.status < 0 else r.status, spike=True))
    return out
