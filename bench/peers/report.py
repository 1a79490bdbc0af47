"""The results table (Markdown and JSON), every figure also as a ratio to shopserve's.

Ratios compare with shopserve measured in the same run, on the same workload and concurrency.
Below the tables, the issue's goals are checked against this run's numbers, and every row where
shopserve loses is listed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from peers.catalog import SHOPSERVE, PeerSpec
from peers.runner import PeerResult
from peers.wrk import Cell


def _fmt(value: float | None, ref: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{value:,.{digits}f}".replace(",", " ")
    if ref is None or not ref or math.isnan(ref):
        return text
    return f"{text} ({value / ref:.2f}×)"


def _cell(result: PeerResult | None, conc: int) -> Cell | None:
    if result is None:
        return None
    return next((c for c in result.cells if c.concurrency == conc), None)


def markdown(run: dict[str, Any], peers: list[PeerSpec], results: list[PeerResult]) -> str:
    lines = ["# shopserve against other serving systems", "",
             f"Run {run['started']} on {run['machine']}; {run['conditions']}.",
             f"Load: {run['load']}. Pinning: {run['pinning']}.",
             "Every figure is followed by its ratio to shopserve's in this run (× shopserve).",
             ""]
    by = {(r.peer, r.workload): r for r in results}
    for wl in run["workloads"]:
        lines += [f"## {wl['title']}", ""]
        if wl.get("skipped"):
            lines += [f"Skipped: {wl['skipped']}", ""]
            continue
        ref = by.get((SHOPSERVE, wl["name"]))
        for conc in run["concurrency"]:
            lines += _load_table(wl["name"], conc, peers, by, _cell(ref, conc))
        lines += _start_table(wl["name"], peers, by, ref)
    lines += ["## Goals and losses", "", *[f"- {x}" for x in verdicts(run, peers, results)], ""]
    return "\n".join(lines)


def _load_table(workload: str, conc: int, peers: list[PeerSpec],
                by: dict[tuple[str, str], PeerResult], ref: Cell | None) -> list[str]:
    lines = [f"### concurrency {conc}", "",
             "| system | settings | req/s | p50 ms | p99 ms | p99.9 ms | errors |",
             "|---|---|---|---|---|---|---|"]
    for p in peers:
        r = by.get((p.name, workload))
        c = _cell(r, conc)
        if r is None or c is None:
            why = r.status if r is not None else "not run"
            lines.append(f"| {p.label} | {p.settings} | {why} | | | | |")
            continue
        lines.append(
            f"| {p.label} | {p.settings} | {_fmt(c.rps, ref and ref.rps, 0)} | "
            f"{_fmt(c.p50_ms, ref and ref.p50_ms, 2)} | {_fmt(c.p99_ms, ref and ref.p99_ms, 2)} | "
            f"{_fmt(c.p999_ms, ref and ref.p999_ms, 2)} | "
            f"{c.errors}{' ' + str(c.error_kinds) if c.errors else ''} |")
    return [*lines, ""]


def _start_table(workload: str, peers: list[PeerSpec], by: dict[tuple[str, str], PeerResult],
                 ref: PeerResult | None) -> list[str]:
    lines = ["### cold start and memory", "",
             "| system | batches | cold start s | RSS MiB (all processes, peak under load) |",
             "|---|---|---|---|"]
    for p in peers:
        r = by.get((p.name, workload))
        if r is None or r.cold_start_s is None:
            lines.append(f"| {p.label} ({p.settings}) | {_yes(p.batches)} | "
                         f"{r.status if r else 'not run'} | |")
            continue
        lines.append(f"| {p.label} ({p.settings}) | {_yes(p.batches)} | "
                     f"{_fmt(r.cold_start_s, ref and ref.cold_start_s, 2)} | "
                     f"{_fmt(r.rss_mib, ref and ref.rss_mib, 0)} |")
    return [*lines, ""]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def verdicts(run: dict[str, Any], peers: list[PeerSpec], results: list[PeerResult]) \
        -> list[str]:
    """The goals of the comparison, checked on this run, and each row shopserve loses."""
    by = {(r.peer, r.workload): r for r in results}
    spec = {p.name: p for p in peers}
    out: list[str] = []
    top = max(run["concurrency"])
    for wl in (w["name"] for w in run["workloads"] if not w.get("skipped")):
        ours = by.get((SHOPSERVE, wl))
        if ours is None or ours.status != "ok":
            out.append(f"{wl}: shopserve has no numbers ({ours.status if ours else 'not run'})")
            continue
        out += _goals(wl, top, ours, by, spec)
        out += list(_losses(wl, run["concurrency"], ours, by, spec))
    return out or ["nothing to compare"]


def _goals(wl: str, top: int, ours: PeerResult, by: dict[tuple[str, str], PeerResult],
           spec: dict[str, PeerSpec]) -> list[str]:
    out: list[str] = []
    mine = _cell(ours, top)
    models = [r for (name, w), r in by.items() if w == wl and name != SHOPSERVE
              and r.status == "ok" and not spec[name].ceiling]
    if mine is not None:
        faster = [r.peer for r in models if (c := _cell(r, top)) and c.rps > mine.rps]
        tighter = [r.peer for r in models if (c := _cell(r, top)) and _p99_beats(c, mine)]
        out.append(f"{wl} @ {top}: shopserve req/s ≥ every model-serving peer's: "
                   f"{_met(faster)}")
        out.append(f"{wl} @ {top}: shopserve p99 ≤ every model-serving peer's (peers that "
                   f"answered without errors): {_met(tighter)}")
        ceilings = [c.rps for (name, w), r in by.items() if w == wl and spec[name].ceiling
                    and (c := _cell(r, top)) is not None]
        if ceilings and wl == "ctr":  # the search model, not HTTP, bounds the search workload
            share = mine.rps / max(ceilings)
            out.append(f"{wl} @ {top}: shopserve at {share:.0%} of the best HTTP ceiling "
                       f"(goal ≥ 80%): {'met' if share >= 0.8 else 'NOT met'}")
    batching = [r for r in models if spec[r.peer].batches]
    for what, attr in (("cold start", "cold_start_s"), ("memory", "rss_mib")):
        lower = [r.peer for r in batching if getattr(r, attr) is not None
                 and getattr(r, attr) < getattr(ours, attr)]
        out.append(f"{wl}: lowest {what} of the systems that batch: {_met(lower)}")
    return out


def _met(beaten_by: list[str]) -> str:
    return "met" if not beaten_by else "NOT met (" + ", ".join(beaten_by) + ")"


def _p99_beats(theirs: Cell, mine: Cell) -> bool:
    """A lower p99 counts only from a peer that answered, and answered without errors."""
    return (theirs.errors == 0 and theirs.p99_ms is not None and mine.p99_ms is not None
            and theirs.p99_ms < mine.p99_ms)


def _losses(wl: str, concs: Iterable[int], ours: PeerResult,
            by: dict[tuple[str, str], PeerResult], spec: dict[str, PeerSpec]) -> Iterable[str]:
    for conc in concs:
        mine = _cell(ours, conc)
        if mine is None:
            continue
        for (name, w), r in by.items():
            c = _cell(r, conc)
            if w != wl or name == SHOPSERVE or spec[name].ceiling or c is None:
                continue
            if c.rps > mine.rps:
                yield (f"shopserve loses on {wl} @ {conc} to {spec[name].label} "
                       f"({spec[name].settings}) in req/s: {c.rps:.0f} vs {mine.rps:.0f}")
            if _p99_beats(c, mine):
                yield (f"shopserve loses on {wl} @ {conc} to {spec[name].label} "
                       f"({spec[name].settings}) in p99: {c.p99_ms} vs {mine.p99_ms} ms")
