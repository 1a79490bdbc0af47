"""A deployment started by a tool (a test, a drill) stops when that tool dies, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil

STARTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from shopserve.testing import ShopserveProcess
    spec = {"home": sys.argv[1], "replicas": 1, "models": [{"ref": "ctr@production"}]}
    proc = ShopserveProcess.from_spec(spec, Path(sys.argv[2])).start()
    print(proc.process.pid, proc.url, flush=True)
    time.sleep(600)
""")


def test_a_deployment_stops_when_the_process_that_started_it_is_killed(
        serve_home: Path, tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(serve_home), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        pid_text, url = starter.stdout.readline().split()
        supervisor = psutil.Process(int(pid_text))
        family = [supervisor, *supervisor.children(recursive=True)]
        assert httpx.get(url + "/v2/health/ready").status_code == 200
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"still running after their starter died: {alive}"
    finally:
        starter.kill()
        starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
        for p in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(p.info["cmdline"] or []):
                p.kill()
