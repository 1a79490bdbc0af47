"""`shopserve tune cache`: hit ratio per cache size and TTL from one pass over a request log,
the memory each size costs, and the smallest size that reaches a hit-ratio goal.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shopserve.tune.cachesim import KeyCounts, LruTtlSimulator
from shopserve.tune.requestlog import Batch

Echo = Callable[[str], None]


class CachePlanSpec(BaseModel):
    """Which cache sizes (entries per replica) and TTLs to simulate, and the hit-ratio goal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000)
    ttls_s: tuple[float, ...] = (60.0,)
    hit_goal: float = Field(default=0.8, gt=0, le=1)
    answer_items: int = Field(default=10, ge=1, le=1000)  # hits per cached answer (memory)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(s < 1 for s in value):
            raise ValueError("give at least one size, each 1 or more entries")
        return tuple(sorted(set(value)))

    @field_validator("ttls_s")
    @classmethod
    def _ttls(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not t > 0 for t in value):
            raise ValueError("give at least one TTL, each a positive number of seconds")
        return tuple(sorted(set(value)))


@dataclass(frozen=True)
class CacheCell:
    size: int | None  # None: unbounded (the ceiling for that TTL)
    ttl_s: float
    hit_ratio: float
    memory_bytes: int | None


@dataclass(frozen=True)
class CachePlan:
    requests: int
    distinct_keys: int
    span_s: float
    top1_keys: int
    top1_share: float
    bytes_per_entry: float
    hit_goal: float
    cells: list[CacheCell]
    recommended: dict[float, int | None]  # per TTL: smallest tried size meeting the goal

    def cell(self, size: int | None, ttl_s: float) -> CacheCell:
        return next(c for c in self.cells if c.size == size and c.ttl_s == ttl_s)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recommended"] = [{"ttl_s": t, "size": s} for t, s in self.recommended.items()]
        return data

    def to_markdown(self) -> str:
        ttls = sorted(self.recommended)
        sizes = sorted({c.size for c in self.cells if c.size is not None})
        head = "| entries | memory | " + " | ".join(f"hit ratio, TTL {t:g} s" for t in ttls)
        lines = [head + " |", "|---:|---:|" + "---:|" * len(ttls)]
        for size in [*sizes, None]:
            mem = "—" if size is None else _mib(size * self.bytes_per_entry)
            ratios = " | ".join(f"{self.cell(size, t).hit_ratio:.1%}" for t in ttls)
            lines.append(f"| {'unbounded' if size is None else f'{size:,}'} | {mem} | {ratios} |")
        lines += ["", f"{self.requests:,} requests over {self.span_s:,.0f} s, "
                  f"{self.distinct_keys:,} distinct keys; the top 1% of keys ({self.top1_keys:,}) "
                  f"carry {self.top1_share:.1%} of the traffic.",
                  f"Memory measured at {self.bytes_per_entry:,.0f} bytes per cached answer; "
                  "each replica holds its own cache."]
        for ttl in ttls:
            lines.append(self.advice(ttl))
        return "\n".join(lines)

    def advice(self, ttl: float) -> str:
        size = self.recommended[ttl]
        if size is not None:
            cell = self.cell(size, ttl)
            return (f"TTL {ttl:g} s: {size:,} entries reach {cell.hit_ratio:.1%} ≥ goal "
                    f"{self.hit_goal:.0%} ({_mib(size * self.bytes_per_entry)} per replica).")
        ceiling = self.cell(None, ttl).hit_ratio
        if ceiling < self.hit_goal:
            return (f"TTL {ttl:g} s: no size reaches {self.hit_goal:.0%}; even an unbounded "
                    f"cache reaches only {ceiling:.1%} (first asks and expired answers miss).")
        return (f"TTL {ttl:g} s: no tried size reaches {self.hit_goal:.0%}, an unbounded cache "
                f"does ({ceiling:.1%}); try sizes above {max(c.size or 0 for c in self.cells):,}.")


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def simulate(batches: Iterable[Batch], spec: CachePlanSpec, echo: Echo | None = None) -> CachePlan:
    """One streaming pass: every (size, TTL) cache and the key counts fed batch by batch."""
    sims = {(size, ttl): LruTtlSimulator(size, ttl)
            for ttl in spec.ttls_s for size in (*spec.sizes, None)}
    counts = KeyCounts()
    first = last = None
    seen = 0
    started = time.monotonic()
    for keys, times in batches:
        for sim in sims.values():
            sim.feed(keys, times)
        counts.feed(keys)
        first = times[0] if first is None else first
        last = times[-1]
        seen += len(keys)
        if echo is not None and time.monotonic() - started > 2:
            echo(f"  {seen:,} requests simulated")
            started = time.monotonic()
    per_entry = bytes_per_entry(spec.answer_items)
    cells = [CacheCell(size, ttl, sim.hit_ratio,
                       None if size is None else round(size * per_entry))
             for (size, ttl), sim in sims.items()]
    recommended = {ttl: next((s for s in spec.sizes
                              if sims[(s, ttl)].hit_ratio >= spec.hit_goal), None)
                   for ttl in spec.ttls_s}
    top, share = counts.top_share(0.01)
    return CachePlan(requests=seen, distinct_keys=counts.distinct,
                     span_s=(last or 0.0) - (first or 0.0), top1_keys=top, top1_share=share,
                     bytes_per_entry=per_entry, hit_goal=spec.hit_goal, cells=cells,
                     recommended=recommended)


def bytes_per_entry(items: int, entries: int = 2000) -> float:
    """Measured: Python heap per entry of a filled cache laid out like the serving cache
    (a 32-hex-digit key, an expiry and an answer of ``items`` product hits)."""
    titles = ["Acme waterproof hiking jacket", "Nordic oak dining table 180 cm",
              "Bright LED desk lamp with USB charging"]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        for n in range(entries):
            key = hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest()
            answer = [{"product_id": f"P{(n * 31 + i) % 999_999:06d}",
                       "score": float(1.0 / (i + 1 + n % 7)), "title": f"{titles[(n + i) % 3]} "
                       f"{n % 97}"} for i in range(items)]
            cache[key] = (time.monotonic() + 60.0, answer)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del cache
    return used / entries


def write_plan(plan: CachePlan, out_dir: Path) -> list[Path]:
    import orjson

    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "cache.md", out_dir / "cache.json"
    md.write_text("# Cache plan\n\n" + plan.to_markdown() + "\n", encoding="utf-8")
    js.write_bytes(orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2 |
                                orjson.OPT_NON_STR_KEYS))
    return [md, js]
