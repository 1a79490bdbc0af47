"""Cost of the per-request monitoring hooks with tracing off and on (docs/monitoring.md).

    .venv/bin/python tests/monitor/bench_tracing.py [requests]

Each case runs in a fresh process: ``requests.begin`` + the batcher's ``tracing.context`` +
``requests.finish`` for a one-row rank answer, in a loop. Spans go over OTLP/HTTP to a receiver
in another process that reads and drops them. Reported: wall time per request on the request
path, the CPU time of the thread answering (the request path) and of the whole process, which
includes the span processor's export thread.
Not a test (the name does not start with ``test_``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

RECEIVER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

CASE = """
import sys, time
from shopserve.monitor import requests, tracing
from shopserve.monitor.live import ReplicaMonitor  # noqa: F401 (what a replica imports)
tracing.start(sys.argv[2] == "1")
n, caller = int(sys.argv[1]), sys.argv[3] == "1"
headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
           (b"content-length", b"120"), (b"user-agent", b"bench")]
if caller:
    headers.append((b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
class Answer:
    model, version, fallback, cached = "ctr", 1, None, False
class Response:
    status_code = 200
    def __init__(self): self.raw_headers = [(b"content-type", b"application/json")]
answer = Answer()
def one():
    record = requests.begin(headers)
    tracing.context()
    record.model, record.version, record.answer = "ctr", "1", answer
    requests.finish(record, "rank", "", Response(), 0.001)
for _ in range(2000):
    one()
cpu, wall, mine = time.process_time(), time.perf_counter(), time.thread_time()
for _ in range(n):
    one()
wall, mine = time.perf_counter() - wall, time.thread_time() - mine
if tracing.ACTIVE is not None:
    tracing.ACTIVE.provider.force_flush()  # the export of this run's spans is counted too
cpu = time.process_time() - cpu
print(f"{wall / n * 1e6:.2f} {mine / n * 1e6:.2f} {cpu / n * 1e6:.2f}")
"""

CASES = [("off", "0", {}, "0"),
         ("on, sampled 1% (parentbased_traceidratio 0.01)", "1",
          {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
          "0"),
         ("on, sampled 100% (parentbased_traceidratio 1)", "1",
          {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"},
          "0"),
         ("on, 1%, caller sends a sampled traceparent", "1",
          {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
          "1")]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert receiver.stdout is not None
        port = receiver.stdout.readline().strip()
        print(f"{n} requests per case, load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':50} {'wall':>7} {'request-path CPU':>17} {'process CPU':>12}  µs/req")
        for name, on, env, caller in CASES:
            full = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                    # a queue that holds every span: all are exported, none dropped
                    "OTEL_BSP_MAX_QUEUE_SIZE": str(n + 10_000),
                    "SHOPSERVE_REQUEST_LOG": "off", **env}
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-c", CASE, str(n), on, caller], env=full,
                                 capture_output=True, text=True, check=True, timeout=600)
            wall, mine, cpu = out.stdout.split()
            print(f"{name:50} {wall:>7} {mine:>17} {cpu:>12}  ({time.monotonic() - started:.1f} s)")
    finally:
        receiver.kill()
        receiver.wait()


if __name__ == "__main__":
    main()
