"""`shopserve tune MODEL` end to end: a tiny search against real servers, the files it writes,
``replicas: auto`` resolution, and bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from shopserve.cli.main import main
from shopserve.errors import NotFoundError, SpecError
from shopserve.testing import ShopserveProcess, free_port
from shopserve.tune import MachineType, load_tuned_deployment, resolve_replicas, this_machine


def shopserve(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("shopserve")
    return subprocess.run([str(exe), *args, "--home", str(home)], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def tuned(tune_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuned")
    run = shopserve("tune", "ctr@production", "--target-rps", "20", "--p99-ms", "500",
                    "--budget", "30s", "--max-configs", "2", "--step-seconds", "0.5",
                    "-o", str(out), home=tune_home)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sweep #1" in run.stdout and "sweep #2" in run.stdout and "chosen:" in run.stdout
    return out


def test_writes_a_deployment_that_shopserve_serves(tuned: Path, tune_home: Path) -> None:
    deployment = yaml.safe_load((tuned / "deployment.yaml").read_text())
    result = json.loads((tuned / "tune.json").read_text())
    chosen = result["plan"]["trial"]["candidate"]
    assert deployment["replicas"] == chosen["replicas"] == result["plan"]["replicas_per_machine"]
    assert deployment["models"][0]["ref"] == "ctr@production"
    assert deployment["models"][0]["batching"]["max_batch_size"] == chosen["max_batch_size"]
    args = ["serve", "--port", str(free_port()), str(tuned / "deployment.yaml")]
    with ShopserveProcess(args, log_dir=tuned) as server:
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    assert f"({chosen['replicas']} replicas" in server.output()


def test_the_table_and_the_choice_agree(tuned: Path) -> None:
    result = json.loads((tuned / "tune.json").read_text())
    trials = result["trials"]
    assert len(trials) == 2 and result["model"] == "ctr" and result["version"] == 1
    meeting = [t for t in trials if t["capacity_rps"] > 0]
    assert result["plan"]["trial"] in meeting
    assert all(t["capacity_rps"] <= t["saturation_rps"] * 1.05 or t["capacity_rps"] == 0
               for t in trials)
    # nothing tried needs fewer machines, or as many machines with fewer replicas
    plan = result["plan"]
    for t in meeting:
        machines = math.ceil(20 / (t["capacity_rps"] * 0.75) - 1e-9)
        assert (machines, t["candidate"]["replicas"]) >= \
            (plan["machines"], plan["replicas_per_machine"])
    table = (tuned / "tune.md").read_text()
    assert "**chosen**" in table and table.count("\n| ") == 3  # header + 2 trials


def test_replicas_auto_resolves_from_the_stored_result(tuned: Path, tune_home: Path) -> None:
    result = json.loads((tuned / "tune.json").read_text())
    want = result["plan"]["replicas_per_machine"]
    assert resolve_replicas("ctr@production", home=tune_home) == want
    assert resolve_replicas("ctr@1", this_machine(), home=tune_home) == want
    other = MachineType(cpu="Other CPU", cores=96)
    assert resolve_replicas("ctr@1", other, home=tune_home, missing_ok=True) is None
    with pytest.raises(NotFoundError, match=r"no tune result for ctr@1 .*Other CPU, 96 cores"):
        resolve_replicas("ctr@production", other, home=tune_home)
    with pytest.raises(NotFoundError, match="nope"):
        resolve_replicas("nope@production", home=tune_home)


def test_an_impossible_target_is_refused_with_what_was_measured(tune_home: Path,
                                                                 tmp_path: Path) -> None:
    run = shopserve("tune", "ctr@production", "--target-rps", "50", "--p99-ms", "0.001",
                    "--budget", "20s", "--max-configs", "1", "--step-seconds", "0.4",
                    "-o", str(tmp_path / "out"), home=tune_home)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no configuration met p99 ≤ 0.001 ms" in run.stderr
    assert "lowest p99 measured was" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "code", "named"), [
    (["nope@production", "--target-rps", "10", "--p99-ms", "20"], 3, "nope"),
    (["ctr@production", "--target-rps", "0", "--p99-ms", "20"], 2, "target_rps"),
    (["ctr@production", "--target-rps", "10", "--p99-ms", "20", "--budget", "soon"], 2,
     "--budget"),
    (["ctr@production", "--target-rps", "10", "--p99-ms", "20", "--device", "tpu"], 2,
     "--device"),
    (["ctr@production", "--target-rps", "10", "--p99-ms", "20", "--headroom", "1"], 2,
     "headroom"),
])
def test_bad_input_is_named(tune_home: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                            code: int, named: str) -> None:
    assert main(["tune", *args, "--home", str(tune_home)]) == code
    assert named in capsys.readouterr().err


def test_a_deployment_file_with_replicas_auto(tuned: Path, tune_home: Path,
                                              tmp_path: Path) -> None:
    want = json.loads((tuned / "tune.json").read_text())["plan"]["replicas_per_machine"]
    path = tmp_path / "auto.yaml"
    path.write_text(f"home: {tune_home}\nreplicas: auto\nmodels:\n  - ref: ctr@production\n")
    assert load_tuned_deployment(path).replicas == want
    other = tmp_path / "other.yaml"
    other.write_text("replicas: auto\nmodels:\n  - ref: ctr@production\n    timeout_ms: -1\n")
    with pytest.raises(SpecError, match=r"timeout_ms \(line 4\)"):
        load_tuned_deployment(other, home=tune_home)
    empty = tmp_path / "empty.yaml"
    empty.write_text("replicas: auto\nmodels: []\n")
    with pytest.raises(SpecError, match="replicas: auto needs models"):
        load_tuned_deployment(empty, home=tune_home)
