"""`shopserve serve`: the command-line face of shopserve.serve.

``shopserve serve deploy.yaml`` or, for one model, ``shopserve serve --model ctr@production``.
Values come from the file, then ``SHOPSERVE_*`` variables, then flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shopserve.errors import UsageError


def serve(
    deployment: Annotated[Path | None, typer.Argument(help="Deployment YAML file.")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Registry ref to serve (repeatable), instead of a file.")] = None,
    replicas: Annotated[int | None, typer.Option(envvar="SHOPSERVE_REPLICAS")] = None,
    host: Annotated[str | None, typer.Option(envvar="SHOPSERVE_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="SHOPSERVE_PORT",
                                             help="0 picks a free port.")] = None,
    admin_token: Annotated[str | None, typer.Option(envvar="SHOPSERVE_ADMIN_TOKEN")] = None,
    admin_port: Annotated[int | None, typer.Option(
        envvar="SHOPSERVE_ADMIN_PORT", help="Serve the admin API on this port only.")] = None,
    data_token: Annotated[str | None, typer.Option(
        envvar="SHOPSERVE_DATA_TOKEN", help="Bearer token the data plane requires.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (with --tls-key).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="With --model.")] = None,
    home: Annotated[Path | None, typer.Option(envvar="SHOPSERVE_HOME",
                                              help="Registry home.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto")] = None,
    backend: Annotated[str, typer.Option(
        envvar="SHOPSERVE_BACKEND", help="embedded (replica processes) or ray (Ray Serve)")]
    = "embedded",
    address: Annotated[str | None, typer.Option(
        envvar="SHOPSERVE_RAY_ADDRESS",
        help="With --backend ray: auto, ray://HOST:PORT or HOST:PORT; none starts Ray here")]
    = None,
) -> None:
    """Serve models online: start every replica, print when ready, drain on Ctrl-C/SIGTERM."""
    from shopserve.serve.launch import serve_deployment
    from shopserve.serve.spec import parse_deployment
    from shopserve.tune import load_tuned_deployment

    if deployment is None and not model:
        raise UsageError("give a deployment file or at least one --model ref")
    if deployment is not None and model:
        raise UsageError("give either a deployment file or --model, not both")
    data: dict[str, Any]
    if deployment is not None:
        data = load_tuned_deployment(deployment, home).model_dump(exclude_unset=True)
    else:
        batching = {"max_batch_size": max_batch_size} if max_batch_size else {}
        data = {"models": [{"ref": ref, "batching": batching} for ref in model or []]}
    server = {k: v for k, v in {"host": host, "port": port, "admin_token": admin_token,
                                "admin_port": admin_port, "data_token": data_token,
                                "tls_cert": tls_cert, "tls_key": tls_key,
                                "device": device}.items() if v is not None}
    data["server"] = {**data.get("server", {}), **server}
    if replicas is not None:
        data["replicas"] = replicas
    if home is not None:
        data["home"] = home
    spec = parse_deployment(data, source=str(deployment or "flags"))

    def ready(url: str) -> None:
        names = ", ".join(m.endpoint for m in spec.models)
        typer.echo(f"shopserve ready at {url} ({spec.replicas} replicas; models: {names})")

    if backend == "ray":
        from shopserve.serve.ray_backend import RaySettings, serve_on_ray

        serve_on_ray(spec, RaySettings(address=address), ready)
    elif backend == "embedded":
        if address is not None:
            raise UsageError("--address is for --backend ray")
        serve_deployment(spec, ready)
    else:
        raise UsageError(f"--backend must be embedded or ray, got {backend!r}")
    typer.echo("shopserve stopped")
