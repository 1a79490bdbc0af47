"""``bundle diff``: what installing a new bundle over an old one changes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shopserve.bundle.checks import read_manifest
from shopserve.bundle.manifest import BundleManifest


class Change(BaseModel):
    """One model or dependency: its version before and after (``None``: absent)."""

    model_config = ConfigDict(frozen=True)

    name: str
    old: str | None
    new: str | None


class BundleDiff(BaseModel):
    """Models, dependencies and settings that differ between two bundles."""

    model_config = ConfigDict(frozen=True)

    old: Path
    new: Path
    models: tuple[Change, ...]
    dependencies: tuple[Change, ...]
    settings: tuple[Change, ...]  # platform, python, deployment file (sha256)

    @property
    def empty(self) -> bool:
        return not (self.models or self.dependencies or self.settings)

    def lines(self) -> list[str]:
        if self.empty:
            return [f"{self.old} and {self.new} install the same models and dependencies"]
        out: list[str] = []
        for title, changes in [("models", self.models), ("dependencies", self.dependencies),
                               ("settings", self.settings)]:
            if changes:
                out.append(f"{title}:")
                out += [f"  {_describe(c)}" for c in changes]
        return out


def _describe(change: Change) -> str:
    if change.old is None:
        return f"+ {change.name} {change.new}"
    if change.new is None:
        return f"- {change.name} {change.old}"
    return f"~ {change.name} {change.old} -> {change.new}"


def _changes(old: dict[str, str], new: dict[str, str]) -> tuple[Change, ...]:
    return tuple(Change(name=k, old=old.get(k), new=new.get(k))
                 for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))


def _models(manifest: BundleManifest) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for m in sorted(manifest.models, key=lambda m: (m.name, m.version)):
        digest = ",".join(f"{a}:{r.sha256[:12]}" for a, r in sorted(m.artifacts.items()))
        aliases = ",".join(m.aliases) or "-"
        out.setdefault(m.name, []).append(f"v{m.version} (aliases {aliases}; {digest})")
    return {name: "; ".join(versions) for name, versions in out.items()}


def _settings(manifest: BundleManifest) -> dict[str, str]:
    out = {"platform": manifest.platform, "python": manifest.python}
    if manifest.deployment is not None:
        out["deployment"] = manifest.files[manifest.deployment].sha256[:12]
    return out


def diff_bundles(old: Path, new: Path) -> BundleDiff:
    """Compare the manifests of two bundles (each read safely, nothing unpacked)."""
    a, b = read_manifest(old), read_manifest(new)
    return BundleDiff(
        old=old, new=new,
        models=_changes(_models(a), _models(b)),
        dependencies=_changes({w.name: w.version for w in a.wheels},
                              {w.name: w.version for w in b.wheels}),
        settings=_changes(_settings(a), _settings(b)),
    )
