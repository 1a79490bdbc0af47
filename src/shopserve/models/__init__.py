"""The reference shop models (CTR ranking, recommendation, search) and their pipelines.

Serving, batch and optimize use ``load_pipeline`` and ``evaluate``; training returns a
``TrainedModel`` for the registry. Nothing here imports torch unless a torch trainer runs.
"""

from shopserve.models.base import Hit, TrainedModel
from shopserve.models.ctr import CtrTrainer, CtrTrainSpec, train_ctr, train_ctr_table
from shopserve.models.features import CategoricalFeature, FeatureSpec, NumericFeature, featurize
from shopserve.models.pipelines import Pipeline, evaluate, load_pipeline
from shopserve.models.rank import RankPipeline
from shopserve.models.recommend import (
    RecommendTrainSpec,
    train_recommender,
    train_recommender_table,
)
from shopserve.models.recommend_pipeline import RecommendPipeline
from shopserve.models.register import train, train_and_register

__all__ = [
    "CategoricalFeature",
    "CtrTrainSpec",
    "CtrTrainer",
    "FeatureSpec",
    "Hit",
    "NumericFeature",
    "Pipeline",
    "RankPipeline",
    "RecommendPipeline",
    "RecommendTrainSpec",
    "TrainedModel",
    "evaluate",
    "featurize",
    "load_pipeline",
    "train",
    "train_and_register",
    "train_ctr",
    "train_ctr_table",
    "train_recommender",
    "train_recommender_table",
]
