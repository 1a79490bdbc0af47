"""`shopserve models`: the registry from the command line (list, register, promote, ...).

Plain tables for people, ``--json`` for scripts; errors propagate as ``ShopserveError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from shopserve.errors import IntegrityError, UsageError
from shopserve.registry import ModelVersion, Registry, VersionDiff
from shopserve.types import ModelKind, ModelSignature

app = typer.Typer(no_args_is_help=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Registry home (default: SHOPSERVE_HOME or ~/.shopserve)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.callback()
def models_group(ctx: typer.Context, home: HomeOpt = None) -> None:
    """Registry: versions, aliases, promotion, rollback."""
    ctx.obj = home


def _registry(ctx: typer.Context) -> Registry:
    home = ctx.obj if isinstance(ctx.obj, Path) else None
    return Registry.open(home)


def _emit_json(value: BaseModel | list[Any] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        typer.echo(value.model_dump_json(indent=2))
        return
    typer.echo(json.dumps(value, indent=2, default=str))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())) or "-"


def _show_text(mv: ModelVersion) -> str:
    lines = [
        f"{mv.ref}  ({mv.kind.value}, {mv.status.value})",
        f"  aliases:      {', '.join(mv.aliases) or '-'}",
        f"  created:      {mv.created_at.isoformat(timespec='seconds')} by {mv.author}",
        f"  parent:       {mv.parent or '-'}",
        f"  optimization: {mv.optimization.recipe if mv.optimization else '-'}",
        f"  origin:       {mv.origin or '-'}",
        f"  metrics:      {_metrics_text(mv.metrics)}",
        f"  data hash:    {mv.data_hash or '-'}",
    ]
    if mv.reason:
        lines.append(f"  reason:       {mv.reason}")
    lines.append("  files:")
    for art, rec in sorted(mv.files.items()):
        lines.append(f"    {art}  {rec.size} bytes  sha256:{rec.sha256}")
    return "\n".join(lines)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this model's versions.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List models, or the versions of one model."""
    reg = _registry(ctx)
    if name is None:
        models = reg.list_models()
        if as_json:
            _emit_json([m.model_dump(mode="json") for m in models])
            return
        rows = [
            [
                m.name,
                m.kind.value,
                str(m.versions),
                str(m.latest or "-"),
                ", ".join(f"{a}={v}" for a, v in m.aliases.items()) or "-",
            ]
            for m in models
        ]
        typer.echo(_table(["NAME", "KIND", "VERSIONS", "LATEST", "ALIASES"], rows))
        return
    versions = reg.list_versions(name)
    if as_json:
        _emit_json([v.model_dump(mode="json") for v in versions])
        return
    rows = [
        [
            v.ref,
            v.status.value,
            ", ".join(v.aliases) or "-",
            v.parent or "-",
            v.created_at.isoformat(timespec="seconds"),
            _metrics_text(v.metrics),
        ]
        for v in versions
    ]
    typer.echo(_table(["REF", "STATUS", "ALIASES", "PARENT", "CREATED", "METRICS"], rows))


@app.command("show")
def show_cmd(ctx: typer.Context, ref: str, as_json: JsonOpt = False) -> None:
    """Show everything recorded about one version."""
    mv = _registry(ctx).get(ref)
    typer.echo(mv.model_dump_json(indent=2) if as_json else _show_text(mv))


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{what} {item!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"{what} {key!r} given twice")
        out[key] = value
    return out


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"--config {path}: no such file") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a JSON object")
    return data


def _graph_signature(graph: object, files: dict[str, Path]) -> ModelSignature | None:
    """The signature of the main ONNX graph, read by ONNX Runtime (``None`` without a graph)."""
    if graph is None:
        return None
    if not isinstance(graph, str) or graph not in files:
        raise UsageError(f"graph {graph!r} is not one of the --file artifacts {sorted(files)}")
    from shopserve.runtime.onnx import OnnxModel

    return OnnxModel(files[graph]).signature


@app.command("register")
def register_cmd(
    ctx: typer.Context,
    name: str,
    kind: Annotated[ModelKind, typer.Option("--kind", help="What the model does.")],
    file: Annotated[list[str], typer.Option("--file", help="ARTIFACT=PATH, repeatable.")],
    metric: Annotated[list[str] | None, typer.Option("--metric", help="NAME=NUMBER.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON settings file.")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Parent ref.")] = None,
    data_hash: Annotated[str | None, typer.Option("--data-hash")] = None,
    graph: Annotated[
        str | None, typer.Option("--graph", help="Main ONNX artifact; its signature is recorded.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a new version from files on disk."""
    files = {art: Path(p) for art, p in _pairs(file, "--file").items()}
    settings = _read_config(config)
    if graph is not None:
        settings["graph"] = graph
    metrics: dict[str, float] = {}
    for key, value in _pairs(metric or [], "--metric").items():
        try:
            metrics[key] = float(value)
        except ValueError as exc:
            raise UsageError(f"--metric {key}: expected a number, got {value!r}") from exc
    mv = _registry(ctx).register(
        name,
        files,
        kind,
        signature=_graph_signature(settings.get("graph"), files),
        config=settings,
        metrics=metrics,
        data_hash=data_hash,
        parent=parent,
    )
    typer.echo(mv.model_dump_json(indent=2) if as_json else f"registered {mv.ref}")


@app.command("promote")
def promote_cmd(ctx: typer.Context, ref: str, alias: str, as_json: JsonOpt = False) -> None:
    """Point ALIAS at the version REF resolves to."""
    mv = _registry(ctx).promote(ref, alias)
    typer.echo(mv.model_dump_json(indent=2) if as_json else f"{mv.name}@{alias} -> {mv.ref}")


@app.command("rollback")
def rollback_cmd(ctx: typer.Context, name: str, alias: str, as_json: JsonOpt = False) -> None:
    """Move NAME@ALIAS back to the version that held it before."""
    mv = _registry(ctx).rollback(name, alias)
    typer.echo(mv.model_dump_json(indent=2) if as_json else f"{mv.name}@{alias} -> {mv.ref}")


def _diff_text(diff: VersionDiff) -> str:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.6g}"

    rows = [[m.name, fmt(m.a), fmt(m.b), fmt(m.delta)] for m in diff.metrics]
    out = [_table(["METRIC", diff.a, diff.b, "DELTA"], rows)]
    for label, items in (
        ("files added", diff.files_added),
        ("files removed", diff.files_removed),
        ("files changed", diff.files_changed),
        ("config changed", diff.config_changed),
    ):
        if items:
            out.append(f"{label}: {', '.join(items)}")
    if not diff.same_data:
        out.append("note: metrics were measured on different data")
    if not diff.same_signature:
        out.append("signature changed")
    return "\n".join(out)


@app.command("diff")
def diff_cmd(ctx: typer.Context, a: str, b: str, as_json: JsonOpt = False) -> None:
    """Two versions' metrics side by side, and what else changed."""
    diff = _registry(ctx).diff(a, b)
    typer.echo(diff.model_dump_json(indent=2) if as_json else _diff_text(diff))


@app.command("delete")
def delete_cmd(ctx: typer.Context, ref: str) -> None:
    """Delete a version (refused while an alias points at it); `gc` frees its files."""
    typer.echo(f"deleted {_registry(ctx).delete(ref).ref}")


@app.command("gc")
def gc_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Remove stored files no version uses and temp files left by crashed writers."""
    report = _registry(ctx).gc()
    if as_json:
        _emit_json(report)
        return
    typer.echo(
        f"removed {report.objects_removed} object(s) and {report.temp_files_removed} temp "
        f"file(s), freed {report.bytes_freed} bytes"
    )


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    ref: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="The .tar.gz file to write.")],
) -> None:
    """Write one version to a single file that `import` reads on another machine."""
    mv = _registry(ctx).get(ref)
    _registry(ctx).export_version(mv.ref, output)
    typer.echo(f"exported {mv.ref} to {output}")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    archive: Path,
    name: Annotated[str | None, typer.Option("--name", help="Import under this name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add the version in an exported file (every checksum verified first)."""
    mv = _registry(ctx).import_version(archive, name=name)
    typer.echo(mv.model_dump_json(indent=2) if as_json else f"imported {mv.origin} as {mv.ref}")


@app.command("check")
def check_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Verify the database and every stored file; exit 5 when something is wrong."""
    problems = _registry(ctx).check()
    if as_json:
        _emit_json({"ok": not problems, "problems": problems})
    elif not problems:
        typer.echo("registry ok")
    if problems:
        raise IntegrityError("registry check failed:\n  " + "\n  ".join(problems))
