"""`shopserve tune cache`: request logs in every format, the demo log, and malformed logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from shopserve.cli.main import main
from shopserve.errors import InputError
from shopserve.tune import CachePlanSpec, LruTtlSimulator, demo_log, iter_requests, simulate

KEYS = ["a", "b", "a", "c", "a", "b", "d", "a"]
SECONDS = [0.0, 1.0, 2.0, 3.0, 4.0, 70.0, 71.0, 72.0]


def write(path: Path, keys: list[object], times: list[object]) -> Path:
    table = pa.table({"query": keys, "timestamp": times})
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps({"query": k, "timestamp": t}) + "\n"
                                for k, t in zip(keys, times, strict=True)))
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_every_format_gives_the_same_plan(tmp_path: Path, suffix: str) -> None:
    iso = [f"2026-11-29T10:{int(s) // 60:02d}:{int(s) % 60:02d}" for s in SECONDS]
    path = write(tmp_path / f"log{suffix}", list(KEYS), iso)
    plan = simulate(iter_requests(path, "query", "timestamp"),
                    CachePlanSpec(sizes=(1, 2), ttls_s=(60.0,), hit_goal=0.25))
    sim = LruTtlSimulator(2, 60.0)
    sim.feed(KEYS, SECONDS)
    assert plan.cell(2, 60.0).hit_ratio == sim.hit_ratio == 2 / 8  # a@2, a@4
    assert plan.cell(1, 60.0).hit_ratio == 0.0
    assert plan.requests == 8 and plan.distinct_keys == 4 and plan.span_s == 72.0
    assert plan.top1_keys == 1 and plan.top1_share == 0.5
    assert plan.recommended == {60.0: 2}
    assert plan.cell(2, 60.0).memory_bytes == round(2 * plan.bytes_per_entry)
    assert plan.bytes_per_entry > 1000  # ten product hits per answer are not free


def test_cli_on_a_demo_log(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("shopserve")
    run = subprocess.run([str(exe), "tune", "cache", "--demo-requests", "20000", "--sizes",
                          "10,100,1k", "--ttls", "30s,10m", "--hit-goal", "0.6", "-o",
                          str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    plan = json.loads((tmp_path / "cache.json").read_text())
    assert plan["requests"] == 20000 and 0.05 < plan["top1_share"] < 0.9
    ratios = {(c["size"], c["ttl_s"]): c["hit_ratio"] for c in plan["cells"]}
    assert ratios[(10, 600.0)] <= ratios[(100, 600.0)] <= ratios[(1000, 600.0)] <= \
        ratios[(None, 600.0)]
    assert ratios[(1000, 30.0)] <= ratios[(1000, 600.0)]
    assert "top 1% of keys" in run.stdout and (tmp_path / "queries.parquet").exists()
    assert pq.read_table(tmp_path / "queries.parquet").num_rows == 20000


def test_demo_log_is_skewed_and_ordered() -> None:
    log = demo_log(5000, 100.0, seed=1)
    assert log.column_names == ["query", "timestamp"] and log.num_rows == 5000
    assert len(set(log.column("query").to_pylist())) > 500
    times = log.column("timestamp").to_pylist()
    assert times == sorted(times)


@pytest.mark.parametrize(("name", "keys", "times", "named"), [
    ("a.parquet", ["a", "b"], [2.0, 1.0], "row 2: timestamps must not go backwards"),
    ("a.csv", ["a", None], [1.0, 2.0], "row 2: 'query' is empty"),
    ("a.jsonl", ["a", "b"], ["yesterday", "today"], "'timestamp' must hold timestamps"),
    ("a.parquet", [True, False], [[1], [2]], "'timestamp' has type list"),
])
def test_malformed_logs_are_named(tmp_path: Path, name: str, keys: list[object],
                                  times: list[object], named: str) -> None:
    path = write(tmp_path / name, keys, times)
    with pytest.raises(InputError, match=named):
        list(iter_requests(path, "query", "timestamp"))


def test_cli_bad_logs_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "log.parquet", KEYS, SECONDS)
    assert main(["tune", "cache", "--log", str(log), "--key-column", "q"]) == 2
    assert "no column 'q' (choose one with --key-column)" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"query": "a", "timestamp": 1}\n{oops\n')
    assert main(["tune", "cache", "--log", str(tmp_path / "bad.jsonl")]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert main(["tune", "cache", "--log", str(tmp_path / "junk.parquet")]) == 2
    assert "not a readable parquet request log" in capsys.readouterr().err
    assert main(["tune", "cache", "--log", str(tmp_path / "missing.csv")]) == 3
    assert main(["tune", "cache", "--log", str(log), "--sizes", "10,lots"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert main(["tune", "cache", "--log", str(log), "--hit-goal", "1.5"]) == 2
    assert "hit_goal" in capsys.readouterr().err
    assert main(["tune", "cache", "--log", str(tmp_path / "log.txt")]) == 2
    assert "unknown log format" in capsys.readouterr().err
