"""Word lists per product category, from which demo titles and queries are built.

Titles and queries draw on the same words, so text search over the demo shop is meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategoryVocab:
    """The words a category's titles are made of, and its price range in the shop's currency."""

    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    materials: tuple[str, ...]
    brands: tuple[str, ...]
    price_range: tuple[float, float]


CATEGORIES: tuple[CategoryVocab, ...] = (
    CategoryVocab(
        "kitchen",
        ("mug", "teapot", "skillet", "saucepan", "cutting board", "knife", "colander", "kettle"),
        ("vintage", "modern", "nonstick", "large", "small", "rustic", "classic"),
        ("ceramic", "steel", "cast iron", "bamboo", "enamel", "glass"),
        ("Hearthly", "CookCraft", "Potter & Pine", "Ladle Co"),
        (4.0, 120.0),
    ),
    CategoryVocab(
        "lighting",
        ("lamp", "lantern", "pendant light", "bulb", "string lights", "sconce", "candle holder"),
        ("dimmable", "warm white", "hanging", "outdoor", "vintage", "compact"),
        ("brass", "glass", "metal", "rattan", "paper", "copper"),
        ("Lumio", "BrightNest", "Glowhaus", "Candela"),
        (3.0, 250.0),
    ),
    CategoryVocab(
        "garden",
        ("planter", "hose", "watering can", "shovel", "pruner", "bird feeder", "trellis"),
        ("heavy duty", "expandable", "hanging", "large", "weatherproof", "small"),
        ("terracotta", "steel", "plastic", "wooden", "galvanized", "resin"),
        ("GreenThumb", "Yardly", "Fernwood", "Bloom & Root"),
        (5.0, 180.0),
    ),
    CategoryVocab(
        "tools",
        ("drill", "hammer", "screwdriver set", "wrench", "tape measure", "saw", "level"),
        ("cordless", "heavy duty", "compact", "adjustable", "magnetic", "professional"),
        ("steel", "fiberglass", "aluminum", "chrome vanadium", "titanium"),
        ("Ironclad", "Torqmaster", "BuildRight", "Keystone"),
        (6.0, 400.0),
    ),
    CategoryVocab(
        "bath",
        ("towel", "shower curtain", "bath mat", "soap dispenser", "mirror", "towel rack"),
        ("soft", "quick dry", "wall mounted", "anti slip", "oversized", "round"),
        ("cotton", "bamboo", "chrome", "linen", "ceramic", "microfiber"),
        ("Aquella", "Tidewell", "PureBath", "Linenry"),
        (4.0, 150.0),
    ),
    CategoryVocab(
        "furniture",
        ("chair", "side table", "bookshelf", "stool", "bench", "desk", "cabinet"),
        ("folding", "mid century", "stackable", "rustic", "modern", "compact"),
        ("oak", "walnut", "pine", "metal", "velvet", "rattan"),
        ("Oakhaven", "Nordwood", "Studio Loft", "Crafted Home"),
        (25.0, 900.0),
    ),
    CategoryVocab(
        "decor",
        ("vase", "picture frame", "wall clock", "cushion", "throw blanket", "rug", "ornament"),
        ("hanging", "heart", "floral", "geometric", "vintage", "handmade"),
        ("ceramic", "glass", "wool", "cotton", "wooden", "metal"),
        ("Maison Petit", "Hearthly", "Ivy & Oak", "Nestora"),
        (2.0, 200.0),
    ),
    CategoryVocab(
        "storage",
        ("storage box", "basket", "shelf", "hook", "coat hanger", "jar", "drawer organizer"),
        ("stackable", "collapsible", "wall mounted", "large", "airtight", "clear"),
        ("wicker", "plastic", "metal", "fabric", "glass", "wooden"),
        ("Stowaway", "Tidy Nest", "BoxWell", "Orderly"),
        (2.0, 120.0),
    ),
)

COUNTRIES: tuple[str, ...] = (
    "United Kingdom",
    "Germany",
    "France",
    "Netherlands",
    "Spain",
    "Ireland",
    "Belgium",
)

SIZES: tuple[str, ...] = ("", "", "", "set of 2", "set of 4", "xl", "mini", "12 inch", "24 inch")
