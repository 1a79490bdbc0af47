"""How optimize measures a graph: a ``QualityProbe`` gives real inputs of the main graph and
scores a candidate graph on the version's held-out rows (``eval.parquet``) through its pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shopserve.errors import NotFoundError, UsageError
from shopserve.optimize.calibration import Batch, split_batches
from shopserve.optimize.gate import Quality
from shopserve.runtime.onnx import SessionSettings
from shopserve.types import ModelKind

EVAL_FILE = "eval.parquet"
TOPK = 10
RANK_GROUP = 100  # CTR rows are ranked in slates of this size for top-k agreement
MAX_LISTS = 200  # queries or customers compared for top-k agreement


class QualityProbe(Protocol):
    """Real inputs and held-out quality of a model whose main graph can be swapped."""

    def inputs(self) -> Sequence[Batch]: ...

    def measure(self, graph: Path) -> Quality: ...


class PipelineProbe:
    """A registered reference model measured through ``shopserve.models`` pipelines."""

    def __init__(self, kind: ModelKind, config: Mapping[str, Any], files: Mapping[str, Path],
                 settings: SessionSettings, input_rows: int = 512) -> None:
        graph = config.get("graph")
        if not isinstance(graph, str) or graph not in files:
            raise UsageError(f"config['graph'] must name the main ONNX artifact, got {graph!r} "
                             f"(artifacts: {sorted(files)})")
        if EVAL_FILE not in files:
            raise NotFoundError(f"artifact {EVAL_FILE!r} is missing: optimize needs the "
                                f"held-out rows the parent was measured on ({sorted(files)})")
        self.kind, self.config, self.files = kind, dict(config), dict(files)
        self.graph_name, self.eval_path = graph, Path(files[EVAL_FILE])
        self.settings, self.input_rows = settings, input_rows

    @property
    def graph(self) -> Path:
        return Path(self.files[self.graph_name])

    def pipeline(self, graph: Path | None = None) -> Any:
        from shopserve.models import load_pipeline

        files = {**self.files, self.graph_name: graph or self.graph}
        return load_pipeline(self.kind, self.config, files, self.settings)

    def eval_rows(self, limit: int) -> pa.Table:
        parquet = pq.ParquetFile(self.eval_path)
        batches = []
        taken = 0
        for batch in parquet.iter_batches(batch_size=min(limit, 4096)):
            batches.append(batch.slice(0, limit - taken))
            taken += batches[-1].num_rows
            if taken >= limit:
                break
        return pa.Table.from_batches(batches, schema=parquet.schema_arrow)

    def inputs(self) -> Sequence[Batch]:
        pipe = self.pipeline()
        rows = self.eval_rows(self.input_rows)
        featurize = getattr(pipe, "featurize", None)
        if self.kind is ModelKind.RECOMMEND and "customer_id" in rows.column_names:
            # The graph's input is the customer's row in its table (unknown ones: the last).
            ids = [None if c is None else str(c) for c in rows.column("customer_id").to_pylist()]
            return split_batches({"customer": pipe.positions(ids)}, 64)
        if featurize is None and hasattr(pipe, "features"):
            from shopserve.models.features import featurize as featurize_rows

            return split_batches(featurize_rows(pipe.features, rows), 64)
        if featurize is None:
            raise UsageError(f"the {self.kind.value} pipeline cannot turn {EVAL_FILE} into graph "
                             "inputs; give real inputs with --calibration FILE.npz")
        return split_batches(featurize(rows), 64)

    def measure(self, graph: Path) -> Quality:
        from shopserve.models import evaluate

        pipe = self.pipeline(graph)
        metrics = {k: float(v) for k, v in evaluate(pipe, self.eval_path).items()}
        return Quality(metrics=metrics, topk=self._topk(pipe))

    def _topk(self, pipe: Any) -> list[list[str]] | None:
        if self.kind is ModelKind.RANK:
            scores = np.asarray(pipe.rank(self.eval_rows(RANK_GROUP * MAX_LISTS)))
            return [[str(i) for i in np.argsort(-scores[s:s + RANK_GROUP], kind="stable")[:TOPK]]
                    for s in range(0, len(scores), RANK_GROUP)]
        column = {ModelKind.SEARCH: "query", ModelKind.RECOMMEND: "customer_id"}.get(self.kind)
        if column is None:
            return None
        if column not in pq.read_schema(self.eval_path).names:
            return None
        table = pq.read_table(self.eval_path, columns=[column])
        keys = list(dict.fromkeys(table.column(column).to_pylist()))[:MAX_LISTS]
        if self.kind is ModelKind.SEARCH:
            hits = pipe.search([str(k) for k in keys], TOPK)
        else:
            hits = pipe.recommend([None if k is None else str(k) for k in keys], TOPK)
        return [[h.product_id for h in row] for row in hits]
