"""Property-based fuzzing of registry imports: any archive is imported or refused cleanly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopserve.errors import IntegrityError, NotFoundError, UsageError
from shopserve.registry import ImportLimits, Registry

REFUSALS = (UsageError, IntegrityError, NotFoundError)
LIMITS = ImportLimits(max_members=20, max_member_bytes=4096, max_total_bytes=8192)
NAMES = st.sampled_from(
    ["manifest.json", "files/m", "files/v.json", "../x", "/abs", "files/../m", "files/a/b", "m"]
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.DIRTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
    ]
)


def _manifest(files: dict[str, bytes]) -> bytes:
    version = {
        "name": "ctr",
        "version": 1,
        "kind": "rank",
        "created_at": "2026-11-29T00:00:00Z",
        "author": "fuzz",
        "files": {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()
        },
    }
    return json.dumps({"format": "shopserve-model-version/1", "version": version}).encode()


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    """Mostly well-formed exports with a few things wrong, sometimes raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    files = draw(
        st.dictionaries(
            st.sampled_from(["m", "v.json", "a/b"]), st.binary(max_size=300), min_size=1, max_size=3
        )
    )
    members: list[tuple[str, int, bytes]] = [("manifest.json", tarfile.REGTYPE, _manifest(files))]
    members += [(f"files/{n}", tarfile.REGTYPE, d) for n, d in files.items()]
    for _ in range(draw(st.integers(0, 3))):  # mutations
        what = draw(st.integers(0, 3))
        i = draw(st.integers(0, len(members) - 1))
        name, kind, data = members[i]
        if what == 0:
            members[i] = (draw(NAMES), kind, data)
        elif what == 1:
            members[i] = (name, draw(TYPES), data)
        elif what == 2:
            members[i] = (name, kind, draw(st.binary(max_size=300)))
        else:
            members.insert(draw(st.integers(0, len(members))), members[i])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.linkname = "manifest.json" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    raw = buf.getvalue()
    if draw(st.booleans()) and len(raw) > 10:  # truncate the stream sometimes
        raw = raw[: draw(st.integers(1, len(raw) - 1))]
    return gzip.compress(raw)


def _state(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "registry.db" not in p.name)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=archives())
def test_any_archive_is_imported_whole_or_refused_with_nothing_written(data: bytes) -> None:
    root = Path(tempfile.mkdtemp(prefix="shopserve-fuzz-"))
    try:
        reg = Registry.open(root / "home")
        before = _state(reg.home)
        (root / "in.tar.gz").write_bytes(data)
        try:
            mv = reg.import_version(root / "in.tar.gz", limits=LIMITS)
        except REFUSALS:
            assert _state(reg.home) == before
            assert reg.list_models() == []
        else:
            loaded = reg.load(mv.ref)
            assert set(loaded.files) == set(mv.files)
        assert not (root / "x").exists() and not Path("/abs").exists()
    finally:
        shutil.rmtree(root)
