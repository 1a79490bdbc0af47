"""`shopserve doctor` as a user runs it: the real executable against this machine."""

import json
import socket
import subprocess
import sys
from pathlib import Path

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


def doctor(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSERVE, "doctor", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthy_machine_reports_every_check(tmp_path: Path) -> None:
    result = doctor(tmp_path / "home", "--port", str(free_port()), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    for name in ("cpu", "onnxruntime", "gpu", "memory", "disk", "redis", "registry"):
        assert name in checks
    assert "CPUExecutionProvider" in checks["onnxruntime"]["detail"]
    assert checks["registry"]["status"] == "ok"


def test_busy_port_and_unreachable_redis_fail_by_name(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        dead = free_port()
        result = doctor(tmp_path / "home", "--port", str(port),
                        "--redis-url", f"redis://127.0.0.1:{dead}")
    assert result.returncode == 1
    assert f"FAIL  port {port}" in result.stdout
    assert "redis" in result.stdout and "unreachable" in result.stdout
    assert "2 check(s) failed" in result.stderr
