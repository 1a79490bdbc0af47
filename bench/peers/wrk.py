"""The load generator: wrk (C, one thread, keep-alive) driving a closed loop of N connections.

The same binary and the same request body go to every peer; a Lua ``done`` hook reports the
p99.9 that wrk's own summary leaves out. Each call is bounded by ``-d`` and a hard timeout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(s, lat, req)
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d}}\\n',
    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write,
    s.errors.status, s.errors.timeout, lat:percentile(50), lat:percentile(99),
    lat:percentile(99.9)))
end
"""


@dataclass(frozen=True)
class Cell:
    """One measured load level: answered requests/s, latency in ms, errors."""

    concurrency: int
    rps: float
    p50_ms: float | None  # None when nothing was answered within the window
    p99_ms: float | None
    p999_ms: float | None
    requests: int
    errors: int
    error_kinds: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: bytes, concurrency: int, seconds: int,
            cpus: str | None) -> Cell:
    """A closed loop of ``concurrency`` keep-alive connections for ``seconds`` against ``url``."""
    with tempfile.TemporaryDirectory(prefix="shopserve-wrk-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "report.lua"
        script.write_text(SCRIPT.format(body=body_path))
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s",
                "-s", str(script), url]
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no report: {out.stderr.strip() or out.stdout.strip()}")
    r = json.loads(line.removeprefix("WRKJSON "))
    kinds = {k: int(r[k]) for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    errors = sum(kinds.values())
    ok = max(int(r["requests"]) - int(r["status"]), 0)
    pct = [r[k] / 1000 if r["requests"] else None for k in ("p50", "p99", "p999")]
    return Cell(concurrency=concurrency, rps=ok / max(r["duration_us"] / 1e6, 1e-9),
                p50_ms=pct[0], p99_ms=pct[1], p999_ms=pct[2],
                requests=int(r["requests"]), errors=errors, error_kinds=kinds)
