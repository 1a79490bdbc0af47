"""A Ray that ``shopserve serve --backend ray`` starts on this machine listens on 127.0.0.1 only:
every listening socket of its process tree (GCS, raylet, agents, Serve proxy and replicas)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest
from serve_models import ctr_row

from shopserve.testing import ShopserveProcess, free_port

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ENV = {"RAY_AUTH_MODE": "disabled", "SHOPSERVE_RAY_REPLICA_CPUS": "0.25"}


def _listening(procs: list[psutil.Process]) -> dict[str, str]:
    """``ip:port`` of each listening socket, with the name of the process holding it."""
    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out[f"{conn.laddr.ip}:{conn.laddr.port}"] = proc.name()
    return out


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_local_ray_listens_on_loopback_only(deploy_file: Path, ray_home: Path) -> None:
    server = ShopserveProcess(["serve", str(deploy_file), "--port", str(free_port()),
                               "--backend", "ray"],
                              env={**ENV, "SHOPSERVE_HOME": str(ray_home)},
                              startup_timeout_s=240, log_dir=deploy_file.parent)
    server.log_path = deploy_file.parent / "ray-local.log"
    tree: list[psutil.Process] = []
    try:
        with server:
            answer = httpx.post(server.url + "/v1/rank", json={"candidates": [ctr_row(0)]},
                                timeout=30)
            assert answer.status_code == 200, answer.text
            assert server.process is not None
            root = psutil.Process(server.process.pid)
            tree = [root, *root.children(recursive=True)]
            names = " ".join(p.name() for p in tree)
            assert "raylet" in names and "gcs_server" in names, names
            sockets = _listening(tree)
        assert sockets, "no listening socket found in Ray's process tree"
        beyond = {addr: name for addr, name in sockets.items()
                  if not _loopback(addr.rsplit(":", 1)[0])}
        assert beyond == {}, f"listening beyond loopback: {beyond}"
        assert any(name.startswith("ray::ServeRepl") for name in sockets.values()), sockets
    finally:
        left = [p for p in tree if p.is_running()]
        for proc in left:  # what a failed stop left behind, by pid
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    assert left == [], f"Ray processes left after the server stopped: {left}"
