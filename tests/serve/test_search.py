"""``/v1/search`` end to end on a tiny real search model, and its BM25 fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from search_models import train_tiny_search

from shopserve import Client
from shopserve.models import load_pipeline
from shopserve.models.search import SearchPipeline
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess


@pytest.fixture(scope="module")
def search_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchPipeline]:
    home = tmp_path_factory.mktemp("search-home")
    trained = train_tiny_search(tmp_path_factory.mktemp("search-model"))
    reg = Registry.open(home)
    reg.register("search", trained.files, trained.kind, signature=trained.signature,
                 config=trained.config, metrics=trained.metrics)
    loaded = reg.load("search@1")
    pipe = load_pipeline(loaded.meta.kind, loaded.meta.config, loaded.files)
    assert isinstance(pipe, SearchPipeline)
    return home, pipe


@pytest.fixture(scope="module")
def server(search_home: tuple[Path, SearchPipeline],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # search-slow: the same version with a deadline shorter than one trip through the event
    # loop (an idle model runs a lone request at once, so a batching delay no longer makes
    # it late): its encoder never answers in time and BM25 answers instead
    spec = {"home": str(search_home[0]), "replicas": 1,
            "models": [{"ref": "search@1", "cache": False},
                       {"ref": "search@1", "name": "search-slow", "cache": False,
                        "timeout_ms": 0.001,
                        "fallback": {"bm25": True, "last_good": False}}]}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("search")) as proc:
        yield proc.url


def query(pipe: SearchPipeline) -> str:
    return " ".join(pipe.titles[0].split()[:2])


def test_search_answers_the_models_hits(server: str,
                                        search_home: tuple[Path, SearchPipeline]) -> None:
    pipe = search_home[1]
    q = query(pipe)
    want = [h.product_id for h in pipe.search([q], 5)[0]]
    with Client(server) as client:
        answer = client.search(q, k=5, model="search")
    assert answer["model"] == "search" and answer["version"] == 1
    assert answer["fallback"] is False
    assert [h["product_id"] for h in answer["hits"]] == want
    r = httpx.post(server + "/v1/search",
                   json={"query": q, "k": 5, "model": "search", "filters": {"exclude": want[:2]}})
    assert r.status_code == 200
    wider = [h.product_id for h in pipe.search([q], 7)[0]]
    assert [h["product_id"] for h in r.json()["hits"]] == [p for p in wider
                                                          if p not in want[:2]][:5]


def test_slow_encoder_falls_back_to_bm25_marked_degraded(
        server: str, search_home: tuple[Path, SearchPipeline]) -> None:
    pipe = search_home[1]
    q = query(pipe)
    want = [pipe.product_ids[d] for d in pipe.bm25_only([q], 5)[0]]
    r = httpx.post(server + "/v1/search", json={"query": q, "k": 5, "model": "search-slow"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is True and body["fallback_source"] == "bm25"
    assert [h["product_id"] for h in body["hits"]] == want and want


@pytest.mark.parametrize(("body", "named"), [
    ({"query": "", "model": "search"}, "'query'"),
    ({"query": "x" * 1001, "model": "search"}, "at most 1000"),
    ({"query": "drill", "k": 0, "model": "search"}, "'k'"),
    ({"query": "drill", "model": "nope"}, "unknown model"),
])
def test_bad_search_requests_are_4xx(server: str, body: dict[str, object], named: str) -> None:
    r = httpx.post(server + "/v1/search", json=body)
    assert 400 <= r.status_code < 500 and named in r.json()["error"], r.text
