"""The whole path on one machine: shop data → reference models → optimized → registered →
served → sample queries answered. Used by ``shopserve quickstart`` and its test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shopserve.config import HomeSettings
from shopserve.data import DemoShopSpec, Shop, generate_demo_shop, load_shop
from shopserve.models import train_and_register
from shopserve.optimize import OptimizeSettings, QualityBudget, optimize
from shopserve.registry import Registry
from shopserve.testing import ShopserveProcess, free_port
from shopserve.types import ModelKind

Echo = Callable[[str], None]

# Cheap recipes that are worth trying on the CTR graph; the gate keeps only what holds quality.
CTR_RECIPES = ("graph", "int8-dynamic", "int8-per-channel")


@dataclass(frozen=True)
class QuickstartSpec:
    """What the quickstart runs on and where it leaves its results."""

    settings: HomeSettings
    data: Path | None = None
    size: str = "medium"
    seed: int = 0
    port: int | None = None
    keep_serving: bool = False
    max_auc_drop: float = 0.002


@dataclass
class QuickstartResult:
    versions: dict[str, str] = field(default_factory=dict)  # alias target per model
    answers: dict[str, Any] = field(default_factory=dict)  # endpoint -> response body
    url: str = ""


@contextmanager
def _step(echo: Echo, title: str) -> Iterator[None]:
    start = time.perf_counter()
    echo(f"→ {title} ...")
    yield
    echo(f"  done in {time.perf_counter() - start:.1f} s")


def load_data(spec: QuickstartSpec, echo: Echo) -> Shop:
    if spec.data is not None:
        echo(f"  reading real data from {spec.data}")
        return load_shop(spec.data)
    sizes = {"small": DemoShopSpec.small, "medium": DemoShopSpec.medium,
             "large": DemoShopSpec.large}
    shop_spec = sizes[spec.size](seed=spec.seed)
    echo(f"  generating the demo shop ({spec.size}: {shop_spec.products} products, "
         f"{shop_spec.customers} customers, seed {spec.seed})")
    return generate_demo_shop(shop_spec)


def train_models(registry: Registry, shop: Shop, echo: Echo) -> dict[str, str]:
    refs: dict[str, str] = {}
    for name, kind in (("ctr", ModelKind.RANK), ("recommend", ModelKind.RECOMMEND)):
        version = train_and_register(kind, shop, registry, name)
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(version.metrics.items())[:6])
        echo(f"  registered {version.ref} ({kind.value}): {metrics}")
        refs[name] = version.ref
    return refs


def optimize_ctr(registry: Registry, ref: str, spec: QuickstartSpec, echo: Echo) -> str:
    """Optimize the CTR model; the fastest child within budget becomes ``production``."""
    report = optimize(
        registry, ref, CTR_RECIPES,
        budget=QualityBudget(max_auc_drop=spec.max_auc_drop),
        settings=OptimizeSettings(report_dir=spec.settings.home_dir / "reports" / "quickstart",
                                  promote="production"),
    )
    for line in report.to_markdown().splitlines():
        echo(f"  {line}")
    if report.promoted is None:
        echo("  no optimized variant passed the quality gate; serving the original")
        registry.promote(ref, "production")
        return ref
    return registry.get(f"{ref.split('@')[0]}@production").ref


def ask_samples(url: str, shop: Shop, echo: Echo) -> dict[str, Any]:
    """Send the requests a shop page would send, and print what came back."""
    clicks = shop.clicks.slice(0, 3).drop_columns(["label"]).to_pylist()
    known = next(c for c in shop.purchases.column("customer_id").to_pylist() if c)
    requests = {
        "/v1/rank": {"model": "ctr", "candidates": clicks},
        "/v1/recommend": {"model": "recommend", "customer": known, "k": 5},
        "/v1/recommend (new customer)": {"model": "recommend", "customer": "never-seen", "k": 5},
    }
    answers: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for label, body in requests.items():
            response = client.post(label.split(" ")[0], json=body)
            response.raise_for_status()
            answers[label] = response.json()
            echo(f"  POST {label}: {_summarize(answers[label])}")
    return answers


def _summarize(body: dict[str, Any]) -> str:
    who = f"answered by {body.get('model', '?')}@{body.get('version', '?')}"
    if "scores" in body:
        return f"scores {[round(s, 4) for s in body['scores']]} {who}"
    items = [hit.get("product_id", hit.get("item_id")) for hit in body.get("items", [])]
    degraded = " (fallback)" if body.get("fallback") else ""
    return f"items {items} {who}{degraded}"


def run_quickstart(spec: QuickstartSpec, echo: Echo = print) -> QuickstartResult:
    result = QuickstartResult()
    registry = Registry.open(spec.settings.home_dir)
    echo(f"shopserve quickstart — registry at {spec.settings.home_dir}")
    with _step(echo, "1/5 shop data"):
        shop = load_data(spec, echo)
    with _step(echo, "2/5 reference models (train, evaluate on held-out data, register)"):
        refs = train_models(registry, shop, echo)
    with _step(echo, "3/5 optimize the CTR model with a quality gate"):
        result.versions["ctr"] = optimize_ctr(registry, refs["ctr"], spec, echo)
        registry.promote(refs["recommend"], "production")
        result.versions["recommend"] = refs["recommend"]
    port = spec.port or free_port()
    (spec.settings.home_dir / "logs").mkdir(parents=True, exist_ok=True)
    args = ["serve", "--model", "ctr@production", "--model", "recommend@production",
            "--host", "127.0.0.1", "--port", str(port), "--home", str(spec.settings.home_dir)]
    echo(f"→ 4/5 serve on 127.0.0.1:{port} ...")
    start = time.perf_counter()
    with ShopserveProcess(args, log_dir=spec.settings.home_dir / "logs") as server:
        result.url = server.url
        echo(f"  ready at {server.url} in {time.perf_counter() - start:.1f} s")
        with _step(echo, "5/5 sample queries"):
            result.answers = ask_samples(server.url, shop, echo)
        print_next_steps(server.url, spec, echo)
        if spec.keep_serving:
            echo("serving until Ctrl-C ...")
            _wait_forever(server)
    return result


def _wait_forever(server: ShopserveProcess) -> None:
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def print_next_steps(url: str, spec: QuickstartSpec, echo: Echo) -> None:
    home = spec.settings.home_dir
    echo("")
    echo("Where to look next:")
    echo("  shopserve models list                  every registered version, with its metrics")
    echo("  shopserve models show ctr@production   lineage, checksums and the quality gate")
    echo(f"  {home / 'reports' / 'quickstart'}   the optimize report (Markdown and JSON)")
    echo("  shopserve serve --model ctr@production --port 8000   serve it yourself")
    echo(f"  {url}/metrics  {url}/openapi.json   (while serving: shopserve quickstart "
         "--keep-serving)")
    echo("  docs/architecture.md                   how the parts fit together")
