"""`shopserve quickstart` end to end, as the README's first command runs it."""

import json
import re
import subprocess
import sys
from pathlib import Path

SHOPSERVE = str(Path(sys.executable).with_name("shopserve"))


def test_quickstart_serves_answers_from_registered_optimized_models(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run([SHOPSERVE, "quickstart", "--size", "small", "--home", str(home)],
                            capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"ready at http://127\.0\.0\.1:\d+", out)
    scores = re.search(r"POST /v1/rank: scores \[([^\]]+)\] answered by ctr@(\d+)", out)
    assert scores, out
    assert all(0.0 <= float(s) <= 1.0 for s in scores.group(1).split(","))
    assert re.search(r"POST /v1/recommend: items \['[^']+'(, '[^']+'){4}\] answered by "
                     r"recommend@1", out)
    assert "Where to look next" in out
    # What the quickstart left behind is what a user then finds in the registry.
    listed = subprocess.run([SHOPSERVE, "models", "show", "ctr@production", "--json"],
                            capture_output=True, text=True, timeout=60,
                            env={"SHOPSERVE_HOME": str(home), "PATH": ""})
    assert listed.returncode == 0, listed.stderr
    production = json.loads(listed.stdout)
    assert production["version"] == int(scores.group(2))
    assert (home / "reports" / "quickstart").is_dir()
