"""Batch jobs: streaming, parallel, resumable predict, recommend and embed over Parquet, CSV
and JSON Lines. ``run_predict``/``run_recommend``/``run_embed`` are what ``shopserve batch`` runs.
"""

from shopserve.batch.embed import EmbedJobSpec, run_embed
from shopserve.batch.job import BatchSummary, EngineKind, PredictJobSpec, run_predict
from shopserve.batch.metrics import batch_metrics
from shopserve.batch.predictors import PredictorSource
from shopserve.batch.recommend import RecommendJobSpec, run_recommend

__all__ = [
    "BatchSummary",
    "EmbedJobSpec",
    "EngineKind",
    "PredictJobSpec",
    "PredictorSource",
    "RecommendJobSpec",
    "batch_metrics",
    "run_embed",
    "run_predict",
    "run_recommend",
]
