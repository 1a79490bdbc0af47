"""A self-contained HTML report of a journal: verdict, checks, windows, and an inline SVG
timeline (traffic, lost and rejected requests, p99 latency, fault windows shaded)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

W, H, PAD = 900, 260, 40


def _scale(values: list[float], top: float) -> list[float]:
    peak = max([v for v in values if v is not None] or [1.0]) or 1.0
    return [H - PAD - (v or 0.0) / peak * (H - 2 * PAD) * top for v in values]


def timeline_svg(ext: dict[str, Any]) -> str:
    rows = ext.get("timeline") or []
    duration = float(ext.get("load", {}).get("duration_s") or 1.0)
    x = [PAD + r["t"] / duration * (W - 2 * PAD) for r in rows]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
             f'height="{H}" role="img" aria-label="drill timeline">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" '
             'fill="#fafafa" stroke="#ccc"/>']
    for fault in ext.get("faults", []):
        start = fault.get("injected_at")
        if start is None:
            continue
        end = fault.get("undone_at") or duration
        x0, x1 = (PAD + t / duration * (W - 2 * PAD) for t in (start, end))
        parts.append(f'<rect x="{x0:.1f}" y="{PAD}" width="{max(x1 - x0, 1):.1f}" '
                     f'height="{H - 2 * PAD}" fill="#f4b400" opacity="0.25"><title>'
                     f'{html.escape(fault["type"])}</title></rect>')
        parts.append(f'<text x="{x0 + 3:.1f}" y="{PAD + 12}" font-size="11">'
                     f'{html.escape(fault["type"])}</text>')
    series = (("rps", "#1a73e8", 0.95, "requests/s"), ("p99_ms", "#9334e6", 0.9, "p99 ms"),
              ("lost", "#d93025", 0.9, "lost"), ("rejected", "#e37400", 0.9, "rejected"))
    for key, colour, top, label in series:
        ys = _scale([r.get(key) for r in rows], top)
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, ys, strict=True))
        if points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                         f'points="{points}"><title>{label}</title></polyline>')
    for i, (_, colour, _, label) in enumerate(series):
        parts.append(f'<text x="{PAD + i * 130}" y="{H - 12}" font-size="12" fill="{colour}">'
                     f'■ {label}</text>')
    parts.append(f'<text x="{W - PAD}" y="{H - 12}" font-size="12" text-anchor="end">'
                 f'{duration:g} s</text></svg>')
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _spike(fault: dict[str, Any]) -> str:
    """The overload spike: capacity measured, rate offered, what was admitted and refused."""
    d = fault["detail"]
    admitted, refusals = d.get("spike_admitted") or {}, d.get("spike_refusals") or {}
    rows: list[list[Any]] = [
            ["capacity (measured, closed loop)", f"{d['capacity_rps']} requests/s"],
            ["offered during the spike", f"{d.get('offered_rps')} requests/s = "
             f"{d.get('offered_x_capacity')}× capacity (h2load {d.get('h2load_connections')} "
             f"connections + the drill's load)"],
            ["h2load requests: answered / refused (429) / lost",
             f"{d.get('spike_answered')} / {d.get('spike_refused')} / {d.get('spike_lost')}"],
            ["admitted: p50 / p99 ms", f"{admitted.get('p50_ms')} / {admitted.get('p99_ms')}"],
            ["refused: p50 / p95 / p99 ms", f"{refusals.get('p50_ms')} / "
             f"{refusals.get('p95_ms')} / {refusals.get('p99_ms')}"],
            ["refusals within the limit", refusals.get("within_limit_share")],
            ["spike request", d.get("spike_request")], ["h2load error", d.get("h2load_error")]]
    return "<h2>Overload spike</h2>" + _table(["", ""], rows)


def render_report(journal: dict[str, Any]) -> str:
    ext: dict[str, Any] = next(
        (e for e in journal.get("extensions", []) if e.get("name") == "shopserve"), {})
    verdict = str(ext.get("verdict", journal.get("status", "unknown")))
    colour = {"passed": "#188038", "deviated": "#d93025"}.get(verdict, "#b06000")
    title = html.escape(str(journal.get("experiment", {}).get("title", "drill")))
    checks = _table(["", "check", "observed", "expected"],
                    [["✔" if c["ok"] else "✘", c["name"], c["observed"], c["expected"]]
                     for c in ext.get("checks", [])])
    keys = ["requests_per_s", "error_rate", "p50_ms", "p95_ms", "p99_ms", "fallback_ratio",
            "cache_hit_ratio", "lost", "degraded", "rejected", "versions"]
    wins = ext.get("windows", {})
    windows = _table(["", *wins], [[k, *(w.get(k) for w in wins.values())] for k in keys])
    faults = _table(["fault", "what", "injected at s", "undone at s", "detect s", "fail over s",
                     "RTO s", "state"],
                    [[f["type"], f["what"], f.get("injected_at"), f.get("undone_at"),
                      f.get("time_to_detect_s"), f.get("time_to_failover_s"), f.get("rto_s"),
                      f["state"]] for f in ext.get("faults", [])])
    spikes = "".join(_spike(f) for f in ext.get("faults", [])
                     if "capacity_rps" in f.get("detail", {}))
    summary = (f"lost {ext.get('requests_lost')}, degraded {ext.get('requests_degraded')}, "
               f"fresh {ext.get('requests_fresh')}, rejected {ext.get('requests_rejected')}; "
               f"error budget burned {ext.get('error_budget_burned')}; recovery after the "
               f"faults {ext.get('recovery_s')} s")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:960px}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;"
             "padding:3px 8px;font-size:13px;text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body><h1>{title}</h1>"
            f"<p style='font-size:20px;color:{colour}'><b>{html.escape(verdict.upper())}</b> "
            f"— status {html.escape(str(journal.get('status')))}, target "
            f"{html.escape(str(ext.get('target')))}, {journal.get('duration')} s</p>"
            f"<p>{html.escape(summary)}</p>{timeline_svg(ext)}<h2>Checks</h2>{checks}"
            f"<h2>Faults</h2>{faults}{spikes}<h2>Baseline, fault window, recovery</h2>{windows}"
            "</body></html>")


def write_report(journal: dict[str, Any], path: Path) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_report(journal), encoding="utf-8")
    tmp.replace(path)
    return path
