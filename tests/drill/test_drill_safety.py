"""Safety of drills against a live deployment: one drill at a time, an aborted drill and Ctrl-C
leave the service as it was, and Chaos Toolkit's own ``chaos run`` drives shopserve faults."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from drill_helpers import SHOPSERVE, assert_as_before, catalogue_data, stopped_children

from shopserve.drill import DrillLock, DrillRunner, parse_drill
from shopserve.drill.chaostoolkit import journal_verdict
from shopserve.drill.faults.base import wait_replicas
from shopserve.drill.results import Verdict
from shopserve.drill.target import DrillTarget
from shopserve.errors import ConflictError, UnavailableError


def target_args(target: DrillTarget) -> list[str]:
    return ["--target", target.url, "--admin-token", str(target.admin_token),
            "--home", str(target.home)]


def hang_drill(load_s: float, start_s: float, duration_s: float,
               extra_faults: list[dict[str, Any]] | None = None,
               stop: dict[str, Any] | None = None) -> dict[str, Any]:
    data = catalogue_data("replica-hang")
    ext = data["extensions"][0]
    ext["load"].update(duration_s=load_s)
    ext["faults"][0].update(start_s=start_s, duration_s=duration_s)
    ext["faults"] += extra_faults or []
    if stop:
        ext["stop"] = stop
    data["steady-state-hypothesis"]["probes"][1]["provider"]["arguments"]["seconds"] = 0.3
    return data


def test_a_second_drill_on_the_same_deployment_is_refused(
        owned: DrillTarget, drill_home: Path) -> None:
    pids = sorted(r.pid for r in owned.replicas())
    lock = DrillLock(owned.url).acquire()
    try:
        with pytest.raises(ConflictError, match="already running"):
            DrillRunner(parse_drill(hang_drill(3, 1, 1)), owned).run()
        done = subprocess.run([SHOPSERVE, "drill", "run", "replica-crash", *target_args(owned)],
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        lock.release()
    assert done.returncode == 2, done.stderr
    assert "a drill is already running" in done.stderr and "did not start" in done.stderr
    assert sorted(r.pid for r in owned.replicas()) == pids  # nothing was touched


def test_an_aborted_drill_undoes_every_fault(owned: DrillTarget, drill_home: Path) -> None:
    down = {"type": "proxy", "between": "service", "mode": "down", "start_s": 1.5,
            "duration_s": 20}
    drill = parse_drill(hang_drill(25, 1, 20, [down], {"max_error_rate": 0.2, "consecutive": 2}))
    started = time.monotonic()
    journal = DrillRunner(drill, owned).run()
    ext = journal["extensions"][0]
    assert journal["status"] == "aborted" and "error rate" in ext["abort_reason"]
    assert time.monotonic() - started < 20  # stopped early, not at the end of the load
    assert [f["state"] for f in ext["faults"]] == ["undone", "undone"], ext["faults"]
    assert ext["verdict"] == "deviated" and ext["exit_code"] == Verdict.DEVIATED
    assert_as_before(owned, drill_home)


def test_ctrl_c_undoes_the_fault_and_the_journal_says_so(
        owned: DrillTarget, drill_home: Path, tmp_path: Path) -> None:
    path, journal = tmp_path / "hang.yaml", tmp_path / "journal.json"
    path.write_text(yaml.safe_dump(hang_drill(40, 1, 35)), encoding="utf-8")
    pids = {r.pid for r in owned.replicas()}
    proc = subprocess.Popen([SHOPSERVE, "drill", "run", str(path), *target_args(owned),
                             "--journal", str(journal)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not hung_or_replaced(owned, pids):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    data = json.loads(journal.read_text(encoding="utf-8"))
    assert data["status"] == "interrupted"
    assert data["extensions"][0]["faults"][0]["state"] == "undone"
    assert "verdict: deviated" in out
    assert_as_before(owned, drill_home)
    html = tmp_path / "report.html"
    shown = subprocess.run([SHOPSERVE, "drill", "report", str(journal), "-o", str(html)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    page = html.read_text(encoding="utf-8")
    assert "<svg" in page and "DEVIATED" in page and "replica-hang" in page


def hung_or_replaced(target: DrillTarget, pids: set[int]) -> bool:
    """Whether the drill's SIGSTOP has landed: a frozen replica, or one replaced already."""
    try:
        return bool(stopped_children(target)) or {r.pid for r in target.replicas()} != pids
    except UnavailableError:  # the admin call reached the frozen replica
        return True


def chaos_experiment(target: DrillTarget, tolerance: Any) -> dict[str, Any]:
    module = "shopserve.drill.chaostoolkit"
    return {
        "version": "1.0.0", "title": "A replica killed by chaos run", "description": "shopserve",
        "steady-state-hypothesis": {"title": "answers", "probes": [{
            "type": "probe", "name": "p99", "tolerance": tolerance,
            "provider": {"type": "python", "module": module, "func": "probe_p99_ms",
                         "arguments": {"url": target.url, "seconds": 0.5, "rate": 20}}}]},
        "method": [{"type": "action", "name": "kill-one-replica",
                    "provider": {"type": "python", "module": module, "func": "kill_replica",
                                 "arguments": {"url": target.url,
                                               "admin_token": target.admin_token}},
                    "pauses": {"after": 1}}],
        "rollbacks": [],
    }


def run_chaos(experiment: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    chaos = shutil.which("chaos", path=str(Path(SHOPSERVE).parent))
    if chaos is None:
        pytest.skip("chaostoolkit is not installed (pip install -e '.[dev]')")
    path, journal = tmp_path / "experiment.json", tmp_path / "chaos-journal.json"
    path.write_text(json.dumps(experiment), encoding="utf-8")
    subprocess.run([chaos, "--no-log-file", "run", "--journal-path", str(journal), str(path)],
                   capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    data: dict[str, Any] = json.loads(journal.read_text(encoding="utf-8"))
    return data


def test_chaos_run_drives_shopserve_faults(
        owned: DrillTarget, drill_home: Path, tmp_path: Path) -> None:
    pids = {r.pid for r in owned.replicas()}
    ok = run_chaos(chaos_experiment(owned, {"type": "range", "range": [0, 5000]}), tmp_path)
    assert journal_verdict(ok) is Verdict.PASSED, ok["status"]
    killed = ok["run"][0]["output"]
    assert ok["run"][0]["status"] == "succeeded" and len(killed) == 1 and killed[0] in pids
    assert ok["steady_states"]["after"]["steady_state_met"]
    wait_replicas(owned, 2, timeout_s=60, gone=set(killed))

    bad = run_chaos(chaos_experiment(owned, {"type": "range", "range": [0, 0.001]}), tmp_path)
    assert journal_verdict(bad) is Verdict.DEVIATED
    assert not bad["steady_states"]["before"]["steady_state_met"]
    assert bad["run"] == []  # a failed steady state stops chaos before the method
    assert_as_before(owned, drill_home)
