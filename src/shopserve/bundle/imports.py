"""Last install step, run by the bundle's new virtual environment: models into its registry.

``python -m shopserve.bundle.imports --bundle DIR --home DIR`` prints the command that serves them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from shopserve.bundle.manifest import BundleManifest, parse_manifest
from shopserve.errors import ShopserveError
from shopserve.registry import Registry


def import_models(bundle: Path, home: Path) -> list[str]:
    """Import every bundled version into the registry at ``home`` and set its aliases again."""
    manifest = parse_manifest((bundle / "manifest.json").read_bytes(), bundle)
    reg = Registry.open(home)
    refs = []
    for model in manifest.models:
        mv = reg.import_version(bundle / model.file)
        for alias in model.aliases:
            reg.promote(mv.ref, alias)
        refs.append(mv.ref)
    return refs


def serve_command(bundle: Path, home: Path, manifest: BundleManifest) -> str:
    """The command line that serves the installed bundle."""
    shopserve = Path(sys.executable).with_name("shopserve")
    cmd = [f"SHOPSERVE_HOME={shlex.quote(str(home))}", shlex.quote(str(shopserve)), "serve"]
    if manifest.deployment is not None:
        cmd.append(shlex.quote(str(bundle / manifest.deployment)))
    else:
        for model in manifest.models:
            cmd += ["--model", shlex.quote(model.requested[0])]
    return " ".join(cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Import a bundle's models into a registry.")
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        refs = import_models(args.bundle, args.home)
        manifest = parse_manifest((args.bundle / "manifest.json").read_bytes(), args.bundle)
    except ShopserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"imported {', '.join(refs)} into {args.home}")
    print(f"serve them with:\n  {serve_command(args.bundle, args.home, manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
