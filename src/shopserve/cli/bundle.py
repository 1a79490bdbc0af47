"""`shopserve bundle`: the command-line face of shopserve.bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopserve.bundle import (
    BuildSpec,
    build_bundle,
    diff_bundles,
    install_bundle,
    keygen,
    verify_bundle,
)

app = typer.Typer(no_args_is_help=True)

TrustedKey = Annotated[
    Path | None,
    typer.Option("--trusted-key", help="Public key file (.pub) the bundle must be signed with."),
]


@app.command("build")
def build(
    model: Annotated[list[str], typer.Option("--model", help="Model ref, e.g. search@production.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle file (.tar.gz).")],
    deployment: Annotated[Path | None, typer.Option(help="Deployment file to ship.")] = None,
    platform: Annotated[str, typer.Option(help="Target wheel platform.")] = "manylinux_2_28_x86_64",
    python: Annotated[str, typer.Option(help="Target Python, MAJOR.MINOR.")] = "3.11",
    sign: Annotated[Path | None, typer.Option("--sign", help="ed25519 private key file.")] = None,
    home: Annotated[Path | None, typer.Option(help="Registry home (SHOPSERVE_HOME).")] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="Wheel cache; rebuilds resolve from it offline first.")
    ] = Path("~/.cache/shopserve/wheels"),
    find_links: Annotated[
        list[Path] | None, typer.Option("--find-links", help="Extra folder of wheels.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Ask the index even if the cache has all.")] = False,
    no_index: Annotated[
        bool, typer.Option(help="Take wheels only from the cache and --find-links folders.")
    ] = False,
    shopserve_wheel: Annotated[
        Path | None, typer.Option(help="A built shopserve wheel (default: build one).")
    ] = None,
) -> None:
    """Pack model versions, deployment, wheels and install script into one file."""
    report = build_bundle(
        BuildSpec(models=tuple(model), output=output, platform=platform, python=python,
                  deployment=deployment, sign_key=sign, home=home, cache_dir=cache_dir,
                  find_links=tuple(find_links or ()), refresh=refresh, no_index=no_index,
                  shopserve_wheel=shopserve_wheel)
    )
    typer.echo(f"built {report.output}: {report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s"
               f"{' (signed)' if report.signed else ''}")
    typer.echo(f"  models: {', '.join(report.models)}")
    typer.echo(f"  wheels: {report.wheels} ({report.wheel_bytes / 1e6:.1f} MB, each stored once)")
    for step, seconds in report.steps.items():
        typer.echo(f"  {step}: {seconds:.1f} s")


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="Bundle file.")], trusted_key: TrustedKey = None
) -> None:
    """Check every checksum, the manifest and the signature; name anything changed."""
    report = verify_bundle(file, trusted_key)
    signed = f"signed by ed25519 key {report.signed_by}" if report.signed_by else "not signed"
    typer.echo(f"ok {file}: {len(report.manifest.files)} files match the manifest; {signed}")


@app.command("install")
def install(
    file: Annotated[Path, typer.Argument(help="Bundle file.")],
    prefix: Annotated[Path, typer.Option(help="New folder to install into.")],
    trusted_key: TrustedKey = None,
) -> None:
    """Verify, unpack, create a venv from the bundled wheels offline, import the models."""
    typer.echo(install_bundle(file, prefix, trusted_key))


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="Bundle installed now.")],
    new: Annotated[Path, typer.Argument(help="Bundle to install next.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Models, versions and dependencies that change from OLD to NEW."""
    result = diff_bundles(old, new)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo("\n".join(result.lines()))


@app.command("keygen")
def keygen_command(
    key: Annotated[Path, typer.Argument(help="Private key file to create (and KEY.pub).")],
) -> None:
    """Create an ed25519 key pair for signing bundles."""
    private, public = keygen(key)
    typer.echo(f"private key: {private} (keep it secret)\npublic key:  {public}")
