"""Air-gapped deployment bundles: build, verify, diff and install with no network at all.

See ``docs/bundles.md``; ``install_script`` is the stdlib-only installer shipped as ``install.py``.
"""

from shopserve.bundle.builder import BuildReport, BuildSpec, build_bundle
from shopserve.bundle.checks import (
    VerifyReport,
    install_bundle,
    read_manifest,
    verify_bundle,
)
from shopserve.bundle.diff import BundleDiff, Change, diff_bundles
from shopserve.bundle.install_script import Limits
from shopserve.bundle.manifest import BundledModel, BundledWheel, BundleManifest
from shopserve.bundle.platforms import compatible_platforms
from shopserve.bundle.signing import keygen

__all__ = [
    "BuildReport",
    "BuildSpec",
    "BundleDiff",
    "BundleManifest",
    "BundledModel",
    "BundledWheel",
    "Change",
    "Limits",
    "VerifyReport",
    "build_bundle",
    "compatible_platforms",
    "diff_bundles",
    "install_bundle",
    "keygen",
    "read_manifest",
    "verify_bundle",
]
