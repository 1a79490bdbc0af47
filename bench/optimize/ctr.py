"""CTR speed goal, in one run: fp32 ONNX Runtime vs the optimized CTR model at batch 256.

Goal (issue 3): throughput ratio ≥ 2× with an AUC drop ≤ 0.002 on the held-out rows. Trains the
reference CTR model on the demo shop, runs ``optimize`` with a few recipes, times the fp32 graph
and the fastest accepted child side by side (interleaved rounds), and writes JSON + Markdown to
``bench/results/``. Bounded to about a minute on 2 cores.

    python bench/optimize/ctr.py [--trainer torch|numpy] [--rows 20000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
from pathlib import Path

from shopserve.data import DemoShopSpec, generate_demo_shop
from shopserve.models import CtrTrainer, CtrTrainSpec, train_and_register
from shopserve.optimize import OptimizeSettings, QualityBudget, SpeedSettings, optimize
from shopserve.optimize.calibration import concat_batches
from shopserve.optimize.probes import PipelineProbe
from shopserve.optimize.speed import compare_throughput
from shopserve.registry import Registry
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind

RECIPES = ["int8-static+graph", "int8-dynamic", "int8-dynamic+graph",
           "prune-structured+int8-static+graph", "prune-structured+int8-dynamic+graph"]
RESULTS = Path(__file__).resolve().parents[1] / "results"


def run(trainer: CtrTrainer, rows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="shopserve-bench-") as tmp:
        reg = Registry.open(Path(tmp) / "home")
        shop = generate_demo_shop(DemoShopSpec(seed=0, ctr_rows=rows))
        parent = train_and_register(ModelKind.RANK, shop, reg, "ctr",
                                    CtrTrainSpec(trainer=trainer))
        report = optimize(reg, parent.ref, RECIPES, QualityBudget(max_auc_drop=0.002),
                          OptimizeSettings(speed=SpeedSettings(seconds_per_batch=0.2)))
        accepted = report.accepted
        result: dict[str, object] = {
            "trainer": trainer.value, "rows": rows, "machine": platform.processor() or "cpu",
            "variants": json.loads(report.model_dump_json())["variants"],
        }
        if not accepted:
            result.update(best=None, throughput_ratio=None, auc_delta=None)
            return result
        # Every accepted child against fp32 in the same interleaved rounds; the best by those.
        loaded = reg.load(parent.ref)
        probe = PipelineProbe(loaded.meta.kind, loaded.meta.config, loaded.files,
                              SessionSettings())
        graphs = [loaded.files["model.onnx"]] + [reg.load(v.ref or "").files["model.onnx"]
                                                 for v in accepted]
        speeds = compare_throughput(graphs, concat_batches(probe.inputs()), 256,
                                    SessionSettings(intra_op_threads=1), rounds=5, seconds=0.3)
        fp32, ratios = speeds[0], [s / speeds[0] for s in speeds[1:]]
        best_i = max(range(len(accepted)), key=lambda i: ratios[i])
        best = accepted[best_i]
        result.update(best=best.name, best_ref=best.ref, fp32_rows_per_s=fp32,
                      optimized_rows_per_s=speeds[1 + best_i], throughput_ratio=ratios[best_i],
                      ratios={v.ref: r for v, r in zip(accepted, ratios, strict=True)},
                      auc_parent=report.variants[0].metrics["auc"],
                      auc_delta=best.deltas["auc"])
        return result


def markdown(result: dict[str, object]) -> str:
    ratio, delta = result.get("throughput_ratio"), result.get("auc_delta")
    lines = ["# CTR: fp32 ONNX Runtime vs optimized, batch 256", "",
             f"Trainer {result['trainer']}, {result['rows']} demo-shop click rows; "
             "1 intra-op thread; fp32 and every accepted child timed in the same interleaved "
             "rounds (5 × 0.3 s each), ratios of median batch times.", ""]
    if ratio is None or delta is None:
        lines.append("No variant passed the quality gate (AUC drop ≤ 0.002).")
    else:
        assert isinstance(ratio, float) and isinstance(delta, float)
        lines += ["| best variant | throughput ratio (goal ≥ 2) | AUC delta (goal ≥ -0.002) |",
                  "|---|---|---|",
                  f"| {result['best']} | {ratio:.2f}× | {delta:+.4f} |"]
    ratios = result.get("ratios") or {}
    assert isinstance(ratios, dict)
    lines += ["", "| variant | version | status | × fp32 (paired) | rows/s@256 (report) | AUC | "
              "reason |", "|---|---|---|---|---|---|---|"]
    for v in result["variants"]:  # type: ignore[attr-defined]
        paired = f"{ratios[v['ref']]:.2f}×" if v["ref"] in ratios else ""
        lines.append(f"| {v['name']} | {v['ref']} | {v['status']} | {paired} | "
                     f"{v['throughput']['256']:.0f} | "
                     f"{v['metrics'].get('auc', float('nan')):.4f} | {v['reason'] or ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    have_torch = importlib.util.find_spec("torch") is not None
    parser.add_argument("--trainer", choices=[t.value for t in CtrTrainer],
                        default="torch" if have_torch else "numpy")
    parser.add_argument("--rows", type=int, default=8000)
    args = parser.parse_args()
    result = run(CtrTrainer(args.trainer), args.rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"optimize-ctr-{args.trainer}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
