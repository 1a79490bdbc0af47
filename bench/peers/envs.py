"""One virtual environment per peer under ``bench/.peers/``, created once and then reused.

A marker file records the requirements it was built from; a changed list reinstalls. torch is
pinned to the release on this machine so that no peer pulls a different one.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from peers.catalog import PeerSpec

PEERS_DIR = Path(__file__).resolve().parents[1] / ".peers"
CONSTRAINTS = "torch==2.13.0\n"
INSTALL_TIMEOUT_S = 1800


class EnvError(Exception):
    """A peer's environment could not be built; the message says why."""


def base_python() -> str:
    """The interpreter the harness's own venv was made from (same Python for every peer)."""
    return getattr(sys, "_base_executable", sys.executable)


def ensure_env(peer: PeerSpec, root: Path = PEERS_DIR) -> Path:
    """The Python of ``peer``'s environment, built now unless it already matches."""
    if peer.env is None:
        return Path(sys.executable)
    env_dir = root / peer.env
    if peer.base_python is not None and not Path(peer.base_python).exists():
        raise EnvError(f"needs {peer.base_python}")
    python = env_dir / "bin" / "python"
    wanted = hashlib.sha256("\n".join(sorted(set(peer.requirements))).encode()).hexdigest()
    marker = env_dir / f".installed-{wanted[:16]}"
    if marker.exists() and python.exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    constraints = root / "constraints.txt"
    constraints.write_text(CONSTRAINTS)
    log = root / f"{peer.env}.install.log"
    with log.open("ab") as out:
        if not python.exists():
            _run([peer.base_python or base_python(), "-m", "venv", str(env_dir)], out, log)
        _run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints),
              *peer.requirements], out, log)
    marker.write_text("\n".join(peer.requirements) + "\n")
    return python


def _run(argv: list[str], out: object, log: Path) -> None:
    try:
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,  # type: ignore[arg-type]
                       check=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise EnvError(f"install took over {INSTALL_TIMEOUT_S} s (see {log})") from exc
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise EnvError(f"install failed: {' | '.join(tail)} (see {log})") from exc
