"""Batch jobs on reference models from a real registry, run as a user runs them.

CTR and recommend models are trained on the small demo shop; the search model is a tiny one made
in ``registry_helpers``. Every command runs the real ``shopserve`` executable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from batch_helpers import SHOPSERVE
from registry_helpers import cli_env, register_search

from shopserve.data import DemoShopSpec, Shop, generate_demo_shop
from shopserve.models import RankPipeline, RecommendPipeline, load_pipeline, train_and_register
from shopserve.models.metrics import log_loss, roc_auc
from shopserve.models.search.encoder import TextEncoder
from shopserve.models.search.tokenizer import QueryTokenizer
from shopserve.registry import Registry
from shopserve.types import ModelKind

SEARCH_PRODUCTS = 200


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_demo_shop(DemoShopSpec.small())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> Path:
    root = tmp_path_factory.mktemp("registry")
    registry = Registry.open(root / "home")
    for kind, name in ((ModelKind.RANK, "ctr"), (ModelKind.RECOMMEND, "recommend")):
        mv = train_and_register(kind, shop, registry, name)
        registry.promote(mv.ref, "production")
    registry.promote(register_search(shop, registry, root / "search", SEARCH_PRODUCTS).ref,
                     "production")
    return root / "home"


def shopserve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOPSERVE, *args], capture_output=True, text=True, timeout=180,
                          env=cli_env(home))


def test_ctr_predict_metrics_match_the_pipeline_and_are_registered(
        tmp_path: Path, home: Path, shop: Shop) -> None:
    rows = shop.clicks.append_column("click_id", pa.array([f"c{i}" for i in
                                                          range(shop.clicks.num_rows)]))
    pq.write_table(rows, tmp_path / "clicks.parquet")
    out = tmp_path / "scores.parquet"
    result = shopserve(home, "batch", "predict", "--model", "ctr@production", "--input",
                       str(tmp_path / "clicks.parquet"), "--output", str(out),
                       "--id-column", "click_id", "--label-column", "label",
                       "--batch-size", "300", "--register-metrics")
    assert result.returncode == 0, result.stderr
    loaded = Registry.open(home).load("ctr@production")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    assert isinstance(pipe, RankPipeline)
    want = pipe.rank(shop.clicks)
    y = np.asarray(shop.clicks["label"].to_numpy(), dtype=np.float64)

    scored = pq.read_table(out)
    assert scored["click_id"].to_pylist() == rows["click_id"].to_pylist()
    np.testing.assert_allclose(scored["score"].to_numpy(), want, rtol=1e-6)
    saved = json.loads((tmp_path / "scores.metrics.json").read_text())
    assert saved["model"] == "ctr@1"
    assert saved["metrics"]["auc"] == pytest.approx(roc_auc(y, want), abs=1e-9)
    assert saved["metrics"]["logloss"] == pytest.approx(log_loss(y, want), rel=1e-6)
    assert saved["metrics"]["rows"] == shop.clicks.num_rows

    shown = shopserve(home, "models", "show", "ctr@production")
    assert shown.returncode == 0, shown.stderr
    assert f"batch_auc={saved['metrics']['auc']:.4g}" in shown.stdout
    assert "auc=" in shown.stdout.replace("batch_auc=", "")  # the version's own AUC is kept


def test_ctr_bad_rows_and_missing_feature_column(tmp_path: Path, home: Path, shop: Shop) -> None:
    rows = shop.clicks.slice(0, 50)
    i1 = rows["I1"].to_pylist()
    i1[3] = float("inf")
    rows = rows.set_column(rows.schema.get_field_index("I1"), "I1", pa.array(i1, pa.float64()))
    pq.write_table(rows, tmp_path / "in.parquet")
    result = shopserve(home, "batch", "predict", "--model", "ctr@production", "--input",
                       str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    errors = [orjson.loads(line) for line in (tmp_path / "out.errors.jsonl").read_bytes()
              .splitlines()]
    assert [e["row"] for e in errors] == [3] and "infinity" in errors[0]["reason"]
    assert "wrote 49 rows" in result.stdout

    pq.write_table(rows.drop_columns(["C26"]), tmp_path / "short.parquet")
    refused = shopserve(home, "batch", "predict", "--model", "ctr@production", "--input",
                        str(tmp_path / "short.parquet"), "--output", str(tmp_path / "x.parquet"))
    assert refused.returncode == 2 and "missing column(s) ['C26']" in refused.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_recommend_every_known_customer(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "recs.parquet"
    result = shopserve(home, "batch", "recommend", "--model", "recommend@production",
                       "--top-k", "50", "--output", str(out), "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    loaded = Registry.open(home).load("recommend@production")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    assert isinstance(pipe, RecommendPipeline)
    customers = list(pipe.customer_pos)
    table = pq.read_table(out)
    assert table.schema.names == ["customer_id", "rank", "item_id", "score"]
    assert table.num_rows == 50 * len(customers)
    assert table["customer_id"].to_pylist() == [c for c in customers for _ in range(50)]
    assert table["rank"].to_pylist() == list(range(1, 51)) * len(customers)
    want = pipe.recommend(customers, 50)
    assert table["item_id"].to_pylist() == [h.product_id for hits in want for h in hits]
    np.testing.assert_allclose(table["score"].to_numpy(),
                               [h.score for hits in want for h in hits], rtol=1e-6)


def test_recommend_customers_from_a_file(tmp_path: Path, home: Path) -> None:
    loaded = Registry.open(home).load("recommend@production")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    assert isinstance(pipe, RecommendPipeline)
    known = list(pipe.customer_pos)[:3]
    (tmp_path / "who.csv").write_text("customer_id\n" + "\n".join(
        [known[0], "never-seen", '""', known[2]]) + "\n")
    out = tmp_path / "recs.jsonl"
    result = shopserve(home, "batch", "recommend", "--model", "recommend@production",
                       "--top-k", "3", "--customers", str(tmp_path / "who.csv"),
                       "--output", str(out), "--workers", "2", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["customer_id"] for r in got] == [c for c in (known[0], "never-seen", known[2])
                                               for _ in range(3)]
    popular = [h.product_id for h in pipe.recommend([None], 3)[0]]
    assert [r["item_id"] for r in got[3:6]] == popular
    errors = [orjson.loads(line) for line in (tmp_path / "recs.errors.jsonl").read_bytes()
              .splitlines()]
    assert [e["row"] for e in errors] == [2] and "missing customer id" in errors[0]["reason"]

    too_many = shopserve(home, "batch", "recommend", "--model", "recommend@production",
                         "--top-k", "100000", "--output", str(tmp_path / "x.parquet"))
    assert too_many.returncode == 2 and "--top-k 100000" in too_many.stderr


def test_embed_registers_a_child_version_with_a_fresh_index(
        tmp_path: Path, home: Path, shop: Shop) -> None:
    catalog = shop.catalog  # more products than the parent's index holds
    titles = catalog["title"].to_pylist()
    titles[5] = "  "
    catalog = catalog.set_column(catalog.schema.get_field_index("title"), "title",
                                 pa.array(titles, pa.string()))
    pq.write_table(catalog, tmp_path / "catalog.parquet")
    out = tmp_path / "vectors.parquet"
    result = shopserve(home, "batch", "embed", "--model", "search@production", "--catalog",
                       str(tmp_path / "catalog.parquet"), "--output", str(out),
                       "--batch-size", "64", "--workers", "2")
    assert result.returncode == 0, result.stderr
    registry = Registry.open(home)
    child = registry.get("search@latest")
    assert child.ref in result.stdout and child.parent == "search@1"
    assert child.version == 2 and "production" not in child.aliases

    vectors = pq.read_table(out)
    good = catalog.filter(pc.invert(pc.equal(pc.utf8_trim_whitespace(catalog["title"]), "")))
    assert vectors["product_id"].to_pylist() == good["product_id"].to_pylist()
    parent = registry.load("search@1")
    encoder = TextEncoder(parent.files["encoder.onnx"],
                          QueryTokenizer(parent.files["tokenizer.json"], 48))
    want = encoder.encode([str(t) for t in good["title"].to_pylist()])
    got = np.stack(vectors["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, want, atol=1e-6)
    errors = (tmp_path / "vectors.errors.jsonl").read_text()
    assert '"row":5' in errors and "'title': missing or empty" in errors

    loaded = registry.load(child.ref)
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    newest = good["title"][-1].as_py()  # a product the parent's index never held
    hits = pipe.search([newest], 3)[0]  # type: ignore[attr-defined]
    assert good["product_id"][-1].as_py() in [h.product_id for h in hits]
    assert "ndcg_at_10" in child.metrics
    shown = shopserve(home, "models", "show", child.ref)
    assert "parent:       search@1" in shown.stdout


def test_embed_refuses_a_model_of_another_kind(tmp_path: Path, home: Path, shop: Shop) -> None:
    pq.write_table(shop.catalog.slice(0, 5), tmp_path / "catalog.parquet")
    result = shopserve(home, "batch", "embed", "--model", "ctr@production", "--catalog",
                       str(tmp_path / "catalog.parquet"), "--output", str(tmp_path / "v.parquet"))
    assert result.returncode == 2 and "needs a search model" in result.stderr


@pytest.mark.slow  # three real jobs, one with two workers: about 20 s on a busy machine
def test_recommend_killed_mid_job_resumes_to_identical_bytes(tmp_path: Path, home: Path) -> None:
    who = tmp_path / "who.parquet"
    pq.write_table(pa.table({"customer_id": [f"C{i % 97:05d}" for i in range(60_000)]}), who)
    args = ["batch", "recommend", "--model", "recommend@production", "--top-k", "5",
            "--customers", str(who), "--batch-size", "100"]
    reference = shopserve(home, *args, "--output", str(tmp_path / "reference.parquet"))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "recs.parquet"
    work = tmp_path / ".recs.parquet.batch-work"
    job = subprocess.Popen([SHOPSERVE, *args, "--output", str(out), "--workers", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=cli_env(home), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(work.glob("part-*.parquet"))) < 5:
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job wrote no parts in time"
            time.sleep(0.01)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    assert not out.exists()
    again = shopserve(home, *args, "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert " 0 resumed" not in again.stdout
    assert out.read_bytes() == (tmp_path / "reference.parquet").read_bytes()
