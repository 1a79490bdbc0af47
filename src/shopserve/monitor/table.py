"""Plain-text tables of the status document and of drift reports, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def grid(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in head]] + [["–" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{float(v):.{digits}f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}%"


def drift_table(reports: Sequence[dict[str, Any]]) -> str:
    rows = []
    for d in reports:
        for c in d["columns"]:
            rows.append([f"{d['model']}@{d['version']}", c["column"], c["live_n"],
                         _num(c["psi"], 4), c["test"], _num(c["statistic"], 4),
                         f"{float(c['p_value']):.3g}", "DRIFT" if c["drifted"] else "ok"])
        if not d["columns"]:
            rows.append([f"{d['model']}@{d['version']}", "–", d.get("live_rows", 0), None,
                         None, None, None, f"reference {d.get('reference', 'none')}"])
    out = grid(["version", "column", "live n", "PSI", "test", "statistic", "p", "status"], rows)
    alerts = [f"{d['model']}@{d['version']}" for d in reports if d.get("alert")]
    return out + ("\ndrift: " + ", ".join(alerts) if alerts else "\nno drift")


def status_text(s: dict[str, Any]) -> str:
    n = s["now"]
    parts = [
        f"requests/s {_num(n['rps'], 1)}  error rate {_pct(n['error_rate'])}  p50 "
        f"{_num(n['p50_ms'])} ms  p99 {_num(n['p99_ms'])} ms  cache hits "
        f"{_pct(n['cache_hit_ratio'])}  requests {int(n['requests_total'])}  up "
        f"{_num(s.get('uptime_s'), 0)} s",
        "",
        grid(["zone", "desired", "up", "ready"],
             [[z, c["desired"], c["up"], c["ready"]] for z, c in sorted(s["zones"].items())]),
        "",
        grid(["slot", "zone", "pid", "state", "health"],
             [[r["slot"], r["zone"], r["pid"], r["state"],
               "healthy" if r["healthy"] else "UNHEALTHY"] for r in s["replicas"]]),
        "",
        grid(["model", "kind", "version", "role", "weight", "requests", "errors"],
             [[m["name"], m["kind"], v["version"], v["role"], _num(v["weight"]),
               int(v["requests"]), int(v["errors"])] for m in s["models"]
              for v in m["versions"]]),
        "",
        grid(["drift", "live rows", "max PSI", "status"],
             [[f"{d['model']}@{d['version']}", d["live_rows"], _num(d.get("max_psi"), 4),
               "DRIFT" if d["alert"] else ("ok" if d["columns"] else
                                            f"reference {d.get('reference')}")]
              for d in s["drift"]]),
        "",
        grid(["feedback", "impressions", "with feedback", "CTR", "NDCG@10"],
             [[k, q["impressions"], q["requests_with_feedback"], _pct(q["ctr"]),
               _num(q["ndcg"], 3)] for k, q in s["feedback"].items()]),
        "",
        grid(["drill", "verdict", "ended"],
             [[d["title"], d["verdict"], d["end"]] for d in s["drills"]]),
    ]
    return "\n".join(parts)
