"""A synthetic but realistic shop, deterministic by seed and sized by a ``DemoShopSpec``.

Catalog titles and queries share category vocabularies, customers prefer a few categories,
purchases follow a Zipf popularity skew with repeat buying, and click labels depend on features.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shopserve.data.demo_clicks import generate_clicks
from shopserve.data.tables import CATALOG_SCHEMA, JUDGMENTS_SCHEMA, PURCHASES_SCHEMA, Shop
from shopserve.data.vocab import CATEGORIES, COUNTRIES, SIZES, CategoryVocab

_START = dt.datetime(2026, 1, 5, 8, 0, 0)


class DemoShopSpec(BaseModel):
    """How big the demo shop is and which seed makes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    products: int = Field(default=2000, ge=10)
    customers: int = Field(default=500, ge=1)
    queries: int = Field(default=400, ge=1)
    weeks: int = Field(default=12, ge=1)
    ctr_rows: int = Field(default=20000, ge=10)
    judgments_per_query: int = Field(default=12, ge=2)
    guest_share: float = Field(default=0.1, ge=0.0, le=1.0)
    repeat_share: float = Field(default=0.3, ge=0.0, le=1.0)
    zipf_exponent: float = Field(default=1.1, gt=0.0)

    @model_validator(mode="after")
    def _enough_products(self) -> DemoShopSpec:
        if self.judgments_per_query > self.products:
            raise ValueError(
                f"judgments_per_query ({self.judgments_per_query}) cannot exceed products "
                f"({self.products})"
            )
        return self

    @classmethod
    def small(cls, seed: int = 0) -> DemoShopSpec:
        """A shop that generates in well under a second, for tests."""
        return cls(seed=seed, products=300, customers=80, queries=60, weeks=4, ctr_rows=2000)

    @classmethod
    def medium(cls, seed: int = 0) -> DemoShopSpec:
        """The quickstart default."""
        return cls(seed=seed)

    @classmethod
    def large(cls, seed: int = 0) -> DemoShopSpec:
        """Enough rows for benchmarks."""
        return cls(seed=seed, products=20000, customers=5000, queries=2000, weeks=26,
                   ctr_rows=500000)


def generate_demo_shop(spec: DemoShopSpec | None = None) -> Shop:
    """Build the four normalized tables of a demo shop; the same spec gives the same bytes."""
    spec = spec or DemoShopSpec()
    seeds = np.random.SeedSequence(spec.seed).spawn(4)
    rngs = [np.random.default_rng(s) for s in seeds]
    catalog, words = _catalog(spec, rngs[0])
    judgments = _judgments(spec, rngs[1], catalog, words)
    purchases = _purchases(spec, rngs[2], catalog)
    clicks = generate_clicks(spec.ctr_rows, rngs[3])
    return Shop(catalog=catalog, judgments=judgments, purchases=purchases, clicks=clicks)


def _title(rng: np.random.Generator, vocab: CategoryVocab, brand: str) -> str:
    parts = [brand]
    if rng.random() < 0.8:
        parts.append(str(rng.choice(vocab.adjectives)))
    if rng.random() < 0.7:
        parts.append(str(rng.choice(vocab.materials)))
    parts.append(str(rng.choice(vocab.nouns)))
    size = str(rng.choice(SIZES))
    if size:
        parts.append(size)
    return " ".join(parts)


def _catalog(spec: DemoShopSpec, rng: np.random.Generator) -> tuple[pa.Table, list[set[str]]]:
    cat_index = rng.integers(0, len(CATEGORIES), size=spec.products)
    rows: dict[str, list[Any]] = {name: [] for name in CATALOG_SCHEMA.names}
    words: list[set[str]] = []
    for i, c in enumerate(cat_index):
        vocab = CATEGORIES[int(c)]
        brand = str(rng.choice(vocab.brands))
        title = _title(rng, vocab, brand)
        low, high = vocab.price_range
        price = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        rows["product_id"].append(f"P{i + 1:06d}")
        rows["title"].append(title)
        rows["category"].append(vocab.name)
        rows["brand"].append(brand)
        rows["price"].append(round(float(np.floor(price)) + 0.99, 2))
        words.append(set(title.lower().split()))
    return pa.table(rows, schema=CATALOG_SCHEMA), words


def _query(rng: np.random.Generator, vocab: CategoryVocab) -> str:
    noun = str(rng.choice(vocab.nouns))
    draw = rng.random()
    if draw < 0.35:
        return f"{rng.choice(vocab.adjectives)} {noun}"
    if draw < 0.65:
        return f"{rng.choice(vocab.materials)} {noun}"
    if draw < 0.8:
        return f"{rng.choice(vocab.brands).lower()} {noun}"
    return noun


def _judgments(
    spec: DemoShopSpec, rng: np.random.Generator, catalog: pa.Table, words: list[set[str]]
) -> pa.Table:
    """Graded relevance from real word overlap plus rater noise, on homedepot's 1-3 scale."""
    ids = catalog.column("product_id").to_pylist()
    titles = catalog.column("title").to_pylist()
    rows: dict[str, list[Any]] = {name: [] for name in JUDGMENTS_SCHEMA.names}
    for _ in range(spec.queries):
        query = _query(rng, CATEGORIES[int(rng.integers(0, len(CATEGORIES)))])
        qwords = set(query.split())
        overlap = np.array([len(qwords & w) / len(qwords) for w in words])
        ranked = np.argsort(-overlap + rng.random(len(words)) * 1e-3, kind="stable")
        n_top = spec.judgments_per_query * 2 // 3
        top = ranked[:n_top]
        rest = rng.choice(ranked[n_top:], size=spec.judgments_per_query - n_top, replace=False)
        for idx in np.concatenate([top, rest]):
            grade = 1.0 + 2.0 * overlap[idx] + rng.normal(0.0, 0.35)
            relevance = float(np.clip(np.round(grade * 3) / 3, 1.0, 3.0))
            rows["query"].append(query)
            rows["product_id"].append(ids[idx])
            rows["title"].append(titles[idx])
            rows["relevance"].append(round(relevance, 2))
    return pa.table(rows, schema=JUDGMENTS_SCHEMA)


def _popularity(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights: np.ndarray = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(weights)
    weights /= weights.sum()
    return weights


def _purchases(spec: DemoShopSpec, rng: np.random.Generator, catalog: pa.Table) -> pa.Table:
    """Weekly sessions per customer: preferred categories, Zipf popularity, repeat buys."""
    ids = catalog.column("product_id").to_pylist()
    titles = catalog.column("title").to_pylist()
    prices = catalog.column("price").to_pylist()
    cats = np.array([CATEGORIES.index(_vocab(c)) for c in catalog.column("category").to_pylist()])
    by_cat = [np.flatnonzero(cats == c) for c in range(len(CATEGORIES))]
    pops = [_popularity(rng, len(m), spec.zipf_exponent) if len(m) else m for m in by_cat]
    prefs = rng.dirichlet(np.full(len(CATEGORIES), 0.3), size=spec.customers)
    activity = rng.gamma(1.5, 0.5, size=spec.customers)
    countries = rng.choice(len(COUNTRIES), size=spec.customers, p=_country_weights())
    rows: dict[str, list[Any]] = {name: [] for name in PURCHASES_SCHEMA.names}
    history: list[list[int]] = [[] for _ in range(spec.customers)]
    invoice = 500000
    for week in range(spec.weeks):
        sessions = rng.poisson(activity)
        guests = rng.binomial(spec.customers, spec.guest_share / (1 - spec.guest_share + 1e-9))
        shoppers = [c for c in range(spec.customers) for _ in range(int(sessions[c]))]
        shoppers += [-1] * int(guests)
        for cust in rng.permutation(np.array(shoppers, dtype=np.int64)):
            invoice += 1
            when = _START + dt.timedelta(weeks=week, seconds=int(rng.integers(0, 7 * 86400)))
            pref = prefs[cust] if cust >= 0 else np.full(len(CATEGORIES), 1 / len(CATEGORIES))
            for _ in range(int(rng.integers(1, 6))):
                own = history[cust] if cust >= 0 else []
                if own and rng.random() < spec.repeat_share:
                    item = own[int(rng.integers(0, len(own)))]
                else:
                    c = _pick_category(rng, pref, by_cat)
                    item = int(by_cat[c][rng.choice(len(by_cat[c]), p=pops[c])])
                if cust >= 0:
                    history[cust].append(item)
                rows["invoice"].append(str(invoice))
                rows["product_id"].append(ids[item])
                rows["description"].append(titles[item].upper())
                rows["quantity"].append(int(rng.geometric(0.5)))
                rows["unit_price"].append(prices[item])
                rows["timestamp"].append(when)
                rows["customer_id"].append(f"C{cust + 1:05d}" if cust >= 0 else None)
                rows["country"].append(COUNTRIES[countries[cust] if cust >= 0 else 0])
    return pa.table(rows, schema=PURCHASES_SCHEMA)


def _pick_category(
    rng: np.random.Generator, pref: np.ndarray, by_cat: list[np.ndarray]
) -> int:
    stocked = pref * np.array([len(m) > 0 for m in by_cat])
    return int(rng.choice(len(pref), p=stocked / stocked.sum()))


def _vocab(name: str | None) -> CategoryVocab:
    return next(v for v in CATEGORIES if v.name == name)


def _country_weights() -> np.ndarray:
    weights: np.ndarray = np.array([0.7] + [0.3 / (len(COUNTRIES) - 1)] * (len(COUNTRIES) - 1))
    weights /= weights.sum()
    return weights
