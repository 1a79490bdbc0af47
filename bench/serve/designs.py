"""Measure the process designs considered for shopserve serving, with wrk on loopback.

Each design runs two worker processes answering a one-row CTR-shaped request; the load
generator shares this 2-core machine with the servers. Run: ``python bench/serve/designs.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = '{"customer":"c1","rows":[{"I1":1.0,"I2":2.0,"I3":0.5,"C1":"a"}]}'
HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def const_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    payload = b'{"scores":[0.5],"model":"ctr@1","fallback":false}'

    async def rank(request: Request) -> Response:
        await request.body()
        return Response(payload, media_type="application/json")

    return Starlette(routes=[Route("/v1/rank", rank, methods=["POST"])])


def naive_app(home: str):  # type: ignore[no-untyped-def]
    """The naive model server: the CTR pipeline called inline, once per request, no batching."""
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from shopserve.models import load_pipeline
    from shopserve.registry import Registry

    loaded = Registry.open(Path(home)).load("ctr@production")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)

    async def rank(request: Request) -> Response:
        data = orjson.loads(await request.body())
        scores = pipe.rank(data["candidates"]).tolist()  # type: ignore[attr-defined]
        return Response(orjson.dumps({"scores": scores}), media_type="application/json")

    return Starlette(routes=[Route("/v1/rank", rank, methods=["POST"])])


def gateway_app(upstreams: list[str]):  # type: ignore[no-untyped-def]
    import itertools

    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    clients = [httpx.AsyncClient(base_url=u, limits=httpx.Limits(max_connections=64),
                                 transport=httpx.AsyncHTTPTransport(socket_options=nodelay))
               for u in upstreams]
    turn = itertools.cycle(clients)

    async def rank(request: Request) -> Response:
        r = await next(turn).post("/v1/rank", content=await request.body(),
                                  headers={"content-type": "application/json"})
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    return Starlette(routes=[Route("/v1/rank", rank, methods=["POST"])])


def serve(app: object, port: int | None = None, fd: int | None = None) -> None:
    import uvicorn

    # socket(fileno=) keeps the TCP family (uvicorn's own fd= path assumes a Unix socket and
    # so loses TCP_NODELAY, which costs a 40 ms delayed-ACK stall per response).
    sock = socket.socket(fileno=fd) if fd is not None else None
    config = uvicorn.Config(app, host="127.0.0.1", port=port or 0, loop="uvloop",  # type: ignore[arg-type]
                            http="httptools", access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock] if sock else None)  # run() installs uvloop


def spawn(*args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE), *args], pass_fds=pass_fds,
                            start_new_session=True)


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(0.3)
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(port: int, seconds: int = 4, conns: int = 64) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f"wrk.method='POST'\nwrk.body='{BODY}'\n"
                "wrk.headers['Content-Type']='application/json'\n")
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", f.name,
                          f"http://127.0.0.1:{port}/v1/rank"], capture_output=True, text=True,
                         timeout=seconds + 20).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    return rps, p99


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def design_shared_socket() -> tuple[float, str]:
    port = free_port()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    fd = sock.fileno()
    procs = [spawn("worker-fd", str(fd), pass_fds=(fd,)) for _ in range(2)]
    try:
        wait_port(port)
        return wrk(port)
    finally:
        stop(procs)
        sock.close()


def design_reuseport() -> tuple[float, str]:
    port = free_port()
    procs = [spawn("worker-reuseport", str(port)) for _ in range(2)]
    try:
        wait_port(port)
        time.sleep(0.5)
        return wrk(port)
    finally:
        stop(procs)


def reuseport_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def design_gateway() -> tuple[float, str]:
    ports = [free_port() for _ in range(3)]
    procs = [spawn("worker-port", str(p)) for p in ports[1:]]
    procs.append(spawn("gateway", str(ports[0]), *[str(p) for p in ports[1:]]))
    try:
        for p in ports:
            wait_port(p)
        return wrk(ports[0])
    finally:
        stop(procs)


def design_nginx() -> tuple[float, str]:
    ports = [free_port() for _ in range(3)]
    procs = [spawn("worker-port", str(p)) for p in ports[1:]]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "nginx.conf").write_text(
        f"worker_processes 1; pid {tmp}/pid; error_log {tmp}/err;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; upstream r {{ least_conn; server 127.0.0.1:{ports[1]}; "
        f"server 127.0.0.1:{ports[2]}; keepalive 64; }}\n"
        f"server {{ listen 127.0.0.1:{ports[0]}; location / {{ proxy_pass http://r; "
        "proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }\n")
    procs.append(subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                   "-g", "daemon off;"], start_new_session=True))
    try:
        for p in ports:
            wait_port(p)
        return wrk(ports[0])
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (apt-get install -y wrk)")
    print("load generator (wrk, 1 thread, 64 connections) shares this machine with the servers")
    for name, run in [("bare: 2 processes on one inherited socket", design_shared_socket),
                      ("(b) 2 processes, SO_REUSEPORT sockets", design_reuseport),
                      ("(a) Python gateway -> 2 replicas", design_gateway),
                      ("(c) nginx (1 worker, least_conn) -> 2 replicas", design_nginx)]:
        if name.startswith("(c)") and shutil.which("nginx") is None:
            continue
        rps, p99 = run()
        print(f"{name:50s} {rps:9.0f} req/s  p99 {p99}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker-fd":
        serve(const_app(), fd=int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-reuseport":
        serve(const_app(), fd=reuseport_socket(int(sys.argv[2])).detach())
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-naive":
        serve(naive_app(sys.argv[3]), fd=reuseport_socket(int(sys.argv[2])).detach())
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-port":
        serve(const_app(), port=int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "gateway":
        serve(gateway_app([f"http://127.0.0.1:{p}" for p in sys.argv[3:]]), port=int(sys.argv[2]))
    else:
        main()
