"""Target platforms and Pythons: which wheel tags a bundle for ``manylinux_2_28_x86_64`` may use.

pip takes ``--platform`` literally, so the older manylinux levels a target also runs are listed.
"""

from __future__ import annotations

import re

from shopserve.errors import UsageError

_MANYLINUX = re.compile(r"manylinux_2_(\d+)_([a-z0-9_]+)")
_MUSLLINUX = re.compile(r"musllinux_1_(\d+)_([a-z0-9_]+)")
_LEGACY = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
_PYTHON = re.compile(r"3\.(\d{1,2})")
_PLATFORM_HINT = "expected e.g. manylinux_2_28_x86_64, musllinux_1_2_aarch64 or linux_x86_64"


def compatible_platforms(platform: str, local_builds: bool = False) -> tuple[str, ...]:
    """Every platform tag a machine of ``platform`` installs, newest first.

    ``local_builds`` adds the plain ``linux_<arch>`` tag of wheels built by hand for the target
    (indexes refuse such wheels, so they only come from ``--find-links`` folders).
    """
    for legacy, minor in _LEGACY.items():
        if platform.startswith(legacy + "_"):
            platform = f"manylinux_2_{minor}_{platform.removeprefix(legacy + '_')}"
    if match := _MANYLINUX.fullmatch(platform):
        top, arch = int(match.group(1)), match.group(2)
        tags = [f"manylinux_2_{m}_{arch}" for m in range(top, 4, -1)]
        tags += [f"{legacy}_{arch}" for legacy, m in _LEGACY.items() if m <= top]
    elif match := _MUSLLINUX.fullmatch(platform):
        top, arch = int(match.group(1)), match.group(2)
        tags = [f"musllinux_1_{m}_{arch}" for m in range(top, -1, -1)]
    elif re.fullmatch(r"linux_[a-z0-9_]+", platform):
        return (platform,)
    else:
        raise UsageError(f"unknown platform {platform!r}: {_PLATFORM_HINT}")
    if local_builds:
        tags.append(f"linux_{arch}")
    return tuple(tags)


def validate_python(python: str) -> str:
    """``3.11`` style versions only: the bundle's wheels are chosen for exactly that minor."""
    if not _PYTHON.fullmatch(python) or int(python.split(".")[1]) < 11:
        raise UsageError(f"invalid --python {python!r}: expected 3.11 or newer, as MAJOR.MINOR")
    return python
