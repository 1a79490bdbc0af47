"""Shop data: a deterministic demo shop and loaders for real files, as normalized Arrow tables.

See ``docs/contracts.md`` for the four tables every source produces.
"""

from shopserve.data.demo import DemoShopSpec, generate_demo_shop
from shopserve.data.loaders import (
    build_catalog,
    iter_clicks,
    iter_judgments,
    iter_purchases,
    load_clicks,
    load_judgments,
    load_purchases,
    load_shop,
)
from shopserve.data.tables import (
    CATALOG_SCHEMA,
    CLICKS_SCHEMA,
    JUDGMENTS_SCHEMA,
    PURCHASES_SCHEMA,
    Shop,
    data_hash,
)

__all__ = [
    "CATALOG_SCHEMA",
    "CLICKS_SCHEMA",
    "JUDGMENTS_SCHEMA",
    "PURCHASES_SCHEMA",
    "DemoShopSpec",
    "Shop",
    "build_catalog",
    "data_hash",
    "generate_demo_shop",
    "iter_clicks",
    "iter_judgments",
    "iter_purchases",
    "load_clicks",
    "load_judgments",
    "load_purchases",
    "load_shop",
]
