"""Batch scoring: streaming, parallel, resumable predict jobs over Parquet, CSV and JSON Lines.

``run_predict(PredictJobSpec(...))`` is what ``shopserve batch predict`` runs.
"""

from shopserve.batch.job import BatchSummary, EngineKind, PredictJobSpec, run_predict
from shopserve.batch.metrics import batch_metrics
from shopserve.batch.predictors import PredictorSource

__all__ = [
    "BatchSummary",
    "EngineKind",
    "PredictJobSpec",
    "PredictorSource",
    "batch_metrics",
    "run_predict",
]
