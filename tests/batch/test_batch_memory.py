"""Memory stays flat: a million wide rows streamed by the real ``shopserve`` process.

Each row carries a 192-character id, so the input is about 200 MB in memory: holding it (or
the output) whole would push the job past the bound; streaming chunks keeps it near the
interpreter, Arrow and ONNX Runtime baseline. (Measured: ~255 MB streamed, ~615 MB when the
whole input is one chunk; 10 million rows in bench/batch stay near 375 MB.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from batch_helpers import SHOPSERVE, peak_rss

ROWS = 1_000_000
GROUP = 1 << 16
PEAK_BOUND_MB = 400


def write_wide_rows(path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("x1", pa.float64()), ("x2", pa.float64())])
    rng = np.random.default_rng(0)
    pad = "x" * 180
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, ROWS, GROUP):
            n = min(GROUP, ROWS - start)
            ids = pa.array([f"{i:012d}{pad}" for i in range(start, start + n)], pa.string())
            writer.write_table(pa.table({"id": ids, "x1": rng.normal(size=n),
                                         "x2": rng.normal(size=n)}, schema=schema))


def test_a_million_wide_rows_stay_under_the_memory_bound(tmp_path: Path, model: Path) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_wide_rows(src)
    peak, code, stderr = peak_rss([SHOPSERVE, "batch", "predict", "--model", str(model), "--input",
                           str(src), "--output", str(out), "--id-column", "id"], limit_s=120)
    assert code == 0, stderr
    assert pq.ParquetFile(out).metadata.num_rows == ROWS
    assert peak < PEAK_BOUND_MB * 2**20, f"peak RSS {peak / 2**20:.0f} MB"
