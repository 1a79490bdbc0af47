"""The larger CTR data set: customer × product rows derived from the purchase history.

Features come only from purchases before a cutoff; the label says whether the customer bought
the product in the window after it. Negatives are sampled products the customer did not buy.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from shopserve.errors import InputError

DAY_US = 86_400 * 1_000_000
NUMERIC = ("customer_product_orders", "customer_category_orders", "customer_orders",
           "customer_days_since", "product_customers", "product_days_since", "price")
CATEGORICAL = ("customer_id", "product_id", "category", "country")


class PurchaseCtrSpec(BaseModel):
    """Where the time split falls and how many negatives each positive gets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_weeks: int = Field(default=4, ge=1)  # the window after the cutoff
    cutoff: dt.datetime | None = None  # default: the last purchase minus ``label_weeks``
    negatives: int = Field(default=3, ge=1)  # per positive, drawn by popularity ** 0.75
    max_positives: int | None = Field(default=20000, ge=1)  # keeps training minutes short
    seed: int = 0


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes.astype(np.int64)


def _category_of(products: np.ndarray, catalog: pa.Table | None) -> np.ndarray:
    """The catalog's category, else the first three characters of the product id (retail
    stock codes share them within a product family)."""
    known: dict[str, str] = {}
    if catalog is not None:
        for pid, cat in zip(catalog["product_id"].to_pylist(),
                            catalog["category"].to_pylist(), strict=True):
            if cat is not None:
                known[pid] = cat
    return np.array([known.get(p, p[:3]) for p in products], dtype=object)


def _pair_counts(a: np.ndarray, b: np.ndarray, invoices: np.ndarray,
                 n_b: int) -> dict[int, int]:
    """Distinct invoices per (a, b) pair, keyed ``a * n_b + b``."""
    _, inv = np.unique(invoices, return_inverse=True)
    triples = np.unique(np.stack([a * n_b + b, inv]), axis=1)
    keys, counts = np.unique(triples[0], return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))


def _history_rows(purchases: pa.Table, spec: PurchaseCtrSpec) -> tuple[pa.Table, int]:
    required = {"invoice", "product_id", "unit_price", "timestamp", "customer_id", "country"}
    if missing := required - set(purchases.schema.names):
        raise InputError(f"purchases lack the columns {sorted(missing)}")
    rows = purchases.filter(pc.and_(pc.is_valid(purchases["customer_id"]),
                                    pc.is_valid(purchases["timestamp"])))
    if rows.num_rows == 0:
        raise InputError("purchases hold no rows with a customer id and a timestamp")
    ts = pc.cast(rows["timestamp"], pa.timestamp("us")).cast(pa.int64()).to_numpy()
    if spec.cutoff is not None:
        cutoff = int(pa.scalar(spec.cutoff, pa.timestamp("us")).cast(pa.int64()).as_py())
    else:
        cutoff = int(ts.max()) - spec.label_weeks * 7 * DAY_US
    return rows.append_column("ts", pa.array(ts)), cutoff


def build_purchase_ctr(purchases: pa.Table, spec: PurchaseCtrSpec | None = None,
                       catalog: pa.Table | None = None) -> pa.Table:
    """Rows ``label, NUMERIC..., CATEGORICAL...`` ready for ``train_ctr_table``.

    Positives: (customer, product) pairs bought in ``[cutoff, cutoff + label_weeks)`` by a
    customer with purchases before the cutoff, of a product sold before it. Negatives: products
    sold before the cutoff that the customer did not buy in the window. Every feature is
    measured on purchases before the cutoff only.
    """
    spec = spec or PurchaseCtrSpec()
    rows, cutoff = _history_rows(purchases, spec)
    ts = rows["ts"].to_numpy()
    end = cutoff + spec.label_weeks * 7 * DAY_US
    hist, window = ts < cutoff, (ts >= cutoff) & (ts < end)
    customers, cust = _codes(rows["customer_id"].to_numpy(zero_copy_only=False))
    products, prod = _codes(rows["product_id"].to_numpy(zero_copy_only=False))
    if not hist.any() or not window.any():
        raise InputError(f"no purchases on both sides of the cutoff "
                         f"{dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=cutoff)}")
    feats = _history_features(rows, hist, cust, prod, len(customers), len(products), catalog,
                              products, cutoff)
    known_c, known_p = feats["customer_orders"] > 0, feats["product_customers"] > 0
    keep = window & known_c[cust] & known_p[prod]
    n_p = len(products)
    bought = np.unique(cust[keep] * n_p + prod[keep])
    rng = np.random.default_rng(spec.seed)
    if spec.max_positives is not None and len(bought) > spec.max_positives:
        bought = np.sort(rng.choice(bought, spec.max_positives, replace=False))
    neg = _negatives(bought, set(np.unique(cust[window] * n_p + prod[window]).tolist()),
                     feats["product_customers"], n_p, spec, rng)
    keys = np.concatenate([bought, neg])
    labels = np.concatenate([np.ones(len(bought), np.int64), np.zeros(len(neg), np.int64)])
    return _table(keys, labels, feats, customers, products, n_p)


def _history_features(rows: pa.Table, hist: np.ndarray, cust: np.ndarray, prod: np.ndarray,
                      n_c: int, n_p: int, catalog: pa.Table | None, products: np.ndarray,
                      cutoff: int) -> dict[str, np.ndarray]:
    h_cust, h_prod = cust[hist], prod[hist]
    invoices = rows["invoice"].to_numpy(zero_copy_only=False)[hist]
    ts = rows["ts"].to_numpy()[hist]
    price = rows["unit_price"].to_numpy(zero_copy_only=False).astype(np.float64)[hist]
    categories, cat_of = _codes(_category_of(products, catalog))
    _, inv = np.unique(invoices, return_inverse=True)
    orders = np.unique(np.stack([h_cust, inv]), axis=1)[0]
    last_c = np.full(n_c, np.iinfo(np.int64).min)
    np.maximum.at(last_c, h_cust, ts)
    last_p = np.full(n_p, np.iinfo(np.int64).min)
    np.maximum.at(last_p, h_prod, ts)
    buyers = np.unique(h_cust * n_p + h_prod) % n_p
    price_sum = np.bincount(h_prod, weights=np.nan_to_num(price), minlength=n_p)
    countries = rows["country"].to_numpy(zero_copy_only=False)[hist]
    country = np.empty(n_c, dtype=object)
    country[h_cust[::-1]] = countries[::-1]  # each customer's first country in the history
    return {
        "customer_orders": np.bincount(orders, minlength=n_c).astype(np.float64),
        "customer_days_since": (cutoff - last_c) / DAY_US,
        "product_customers": np.bincount(buyers, minlength=n_p).astype(np.float64),
        "product_days_since": (cutoff - last_p) / DAY_US,
        "price": price_sum / np.maximum(np.bincount(h_prod, minlength=n_p), 1),
        "cat_of": cat_of, "categories": categories, "country": country,
        "pair": _pair_counts(h_cust, h_prod, invoices, n_p),  # type: ignore[dict-item]
        "cat_pair": _pair_counts(h_cust, cat_of[h_prod], invoices,  # type: ignore[dict-item]
                                 len(categories)),
    }


def _negatives(bought: np.ndarray, in_window: set[int], popularity: np.ndarray, n_p: int,
               spec: PurchaseCtrSpec, rng: np.random.Generator) -> np.ndarray:
    """``negatives`` products per positive's customer, never one it bought in the window."""
    weights = np.where(popularity > 0, popularity, 0.0) ** 0.75
    weights /= weights.sum()
    owners = np.repeat(bought // n_p, spec.negatives)
    picked: set[int] = set()
    for _ in range(5):  # redraw the few that hit a purchase or a duplicate
        keys = owners * n_p + rng.choice(n_p, size=len(owners), p=weights)
        fresh = np.array([k not in in_window and k not in picked for k in keys.tolist()])
        picked.update(keys[fresh].tolist())
        owners = owners[~fresh]
        if not len(owners):
            break
    return np.array(sorted(picked), dtype=np.int64)


def _table(keys: np.ndarray, labels: np.ndarray, feats: dict[str, np.ndarray],
           customers: np.ndarray, products: np.ndarray, n_p: int) -> pa.Table:
    c, p = keys // n_p, keys % n_p
    pair, cat_pair = feats["pair"], feats["cat_pair"]
    cat_of, n_cat = feats["cat_of"], len(feats["categories"])
    assert isinstance(pair, dict) and isinstance(cat_pair, dict)
    columns: dict[str, pa.Array] = {
        "label": pa.array(labels),
        "customer_product_orders": pa.array([float(pair.get(k, 0)) for k in keys.tolist()]),
        "customer_category_orders": pa.array(
            [float(cat_pair.get(k, 0)) for k in (c * n_cat + cat_of[p]).tolist()]),
        "customer_orders": pa.array(feats["customer_orders"][c]),
        "customer_days_since": pa.array(feats["customer_days_since"][c]),
        "product_customers": pa.array(feats["product_customers"][p]),
        "product_days_since": pa.array(feats["product_days_since"][p]),
        "price": pa.array(feats["price"][p]),
        "customer_id": pa.array(customers[c].tolist(), pa.string()),
        "product_id": pa.array(products[p].tolist(), pa.string()),
        "category": pa.array(feats["categories"][cat_of[p]].tolist(), pa.string()),
        "country": pa.array(feats["country"][c].tolist(), pa.string()),
    }
    return pa.table(columns)
