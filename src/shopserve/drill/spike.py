"""The overload drill's spike, offered by h2load (nghttp2's load generator, written in C): the
drill's own Python client cannot offer several times a deployment's capacity on a small machine.

h2load 1.52 as used here: ``--h1`` (HTTP/1.1), ``-d FILE`` (POST that body; with HTTP/1.1 one
request in flight per connection), ``--rps R`` (each connection sends at most R requests/s; a
send that falls due while its request is still in flight waits for the answer, so the rate that
was really offered is taken from the log, not from the flags), ``-D`` (for that long), and
``--log-file`` (one line per request: start time in µs since the epoch, status, µs until the end
of the response; status -1 for a failed stream). The log file is **appended to**, so each run
gets a fresh path.

The spike's connections are opened a few at a time over one send period (``-r K
--rate-period 1ms``, h2load's rate mode, which takes ``-n`` requests in all instead of ``-D``):
each connection's ``--rps`` timer starts when it connects, so connections opened together send
together, every period, in one burst that the last of it waits for (measured: the refusal p50 of
a 5x spike, same deployment and minute, went from 10.4-12.0 ms to 5.7-9.0 ms; docs/drills.md).
A connection that falls behind its rate would run on past the spike, so h2load is stopped at the
spike's end.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
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


# h2load's --rps timer fires every max(10 ms, 1/R) and sends what fell due since the last tick
MIN_TICK_S = 0.01


def _command(request: SpikeRequest, connections: int, seconds: float, log: Path,
             plan: SpikePlan | None = None) -> list[str]:
    """Closed loop for ``seconds`` without a plan; with one, ``plan.rate`` requests/s in all on
    connections opened ``plan.opened_per_ms`` per millisecond (rate mode: ``-n`` requests)."""
    cmd = [require_h2load(), "--h1", "-t", "1", "-c", str(connections), "-d", str(request.body),
           "-H", "content-type: application/json", "--log-file", str(log)]
    if plan is None:
        cmd += ["-D", f"{max(round(seconds * 1000), 1)}ms"]
    else:
        total = max(round(plan.rate * seconds), connections)
        cmd += ["--rps", f"{plan.rps_per_connection:.3f}", "-n", str(total),
                "-r", str(plan.opened_per_ms), "--rate-period", "1ms"]
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

    @property
    def tick_s(self) -> float:
        """How often each connection's rate timer fires."""
        return max(MIN_TICK_S, 1.0 / self.rps_per_connection)

    @property
    def opened_per_ms(self) -> int:
        """Connections opened per millisecond: all of them within about one tick, so that their
        timers (and sends) are spread over it instead of firing together."""
        return max(math.ceil(self.connections / (self.tick_s * 1000)), 1)


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
        self.ends_at = time.monotonic() + seconds  # the spike's planned end
        self.proc = subprocess.Popen(
            _command(request, plan.connections, seconds, self.log, plan),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(self, grace_s: float = 0.25) -> tuple[list[H2Record], str | None]:
        """The spike's records, and an error when h2load failed. h2load is stopped ``grace_s``
        after the spike's planned end if it is still sending then (it fell behind its rate);
        what it did not send is missing from the offered rate, not an error."""
        error = None
        try:
            _, stderr = self.proc.communicate(
                timeout=max(self.ends_at - time.monotonic(), 0.0) + grace_s)
            if self.proc.returncode != 0:
                error = f"h2load exited {self.proc.returncode}: {stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
                error = "h2load did not stop within 5 s of SIGTERM; killed"
        records = read_log(self.log)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return records, error

    def stop(self) -> tuple[list[H2Record], str | None]:
        """Cut the spike short (abort, Ctrl-C)."""
        self.ends_at = time.monotonic()
        return self.finish(grace_s=0.0)


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
