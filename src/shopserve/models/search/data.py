"""The search model's view of a shop: its catalog, judgments, and the split by query."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from shopserve.errors import InputError
from shopserve.models.search.settings import SearchTrainSpec


class HasSearchData(Protocol):
    """What search training needs of a ``Shop``."""

    @property
    def catalog(self) -> pa.Table: ...

    @property
    def judgments(self) -> pa.Table: ...


@dataclass(frozen=True)
class SearchData:
    """Catalog rows (product_id, title) and judgments split into train and held-out queries."""

    catalog: pa.Table
    train: pa.Table
    held_out: pa.Table


def query_bucket(query: str) -> int:
    """0..99 from a hash of the query text: the same query always lands in the same split."""
    return int(hashlib.sha1(query.encode("utf-8")).hexdigest()[:8], 16) % 100


def split_shop(shop: HasSearchData, spec: SearchTrainSpec) -> SearchData:
    """Judgments split by query; with ``max_queries``, a sample whose products form the catalog."""
    judged = shop.judgments.select(["query", "product_id", "title", "relevance"])
    judged = judged.filter(pc.invert(pc.is_null(judged["query"])))
    queries = sorted(set(judged.column("query").to_pylist()), key=_sample_key)
    if spec.max_queries is not None:
        queries = queries[: spec.max_queries]
        judged = judged.filter(pc.is_in(judged["query"], pa.array(queries)))
    if len(queries) < 10:
        raise InputError(f"search training needs judgments for at least 10 queries, "
                         f"got {len(queries)}")
    catalog = _catalog(shop.catalog, judged, restrict=spec.max_queries is not None)
    held = pa.array([q for q in queries if query_bucket(q) < spec.eval_percent])
    if len(held) == 0 or len(held) == len(queries):
        raise InputError(f"the split by query left {len(held)} of {len(queries)} queries held "
                         f"out; give more queries or another eval_percent")
    is_held = pc.is_in(judged["query"], held)
    return SearchData(catalog, judged.filter(pc.invert(is_held)), judged.filter(is_held))


def _sample_key(query: str) -> str:
    return hashlib.sha1(b"sample:" + query.encode("utf-8")).hexdigest()


def _catalog(catalog: pa.Table, judged: pa.Table, restrict: bool) -> pa.Table:
    """Titled catalog rows (only judged ones when ``restrict``) plus judged products missing."""
    rows = catalog.select(["product_id", "title"])
    rows = rows.filter(pc.invert(pc.is_null(rows["title"])))
    judged_ids = pc.unique(judged["product_id"])
    if restrict:
        rows = rows.filter(pc.is_in(rows["product_id"], judged_ids))
    extra = judged.filter(pc.invert(pc.is_in(judged["product_id"], rows["product_id"])))
    extra = extra.group_by("product_id", use_threads=False).aggregate([("title", "first")])
    extra = extra.rename_columns(["product_id", "title"]).cast(rows.schema)
    table = pa.concat_tables([rows, extra]).combine_chunks()
    if table.num_rows == 0:
        raise InputError("the shop's catalog has no product with a title to search")
    return table
