"""Optimize → validate → register: rewrite a version's main ONNX graph with recipes, gate each
child on the parent's held-out rows, register it with its lineage, and report size and speed.
"""

from shopserve.optimize import mixed, pruning, quantize  # noqa: F401  (registers the recipes)
from shopserve.optimize.gate import Quality, QualityBudget, Verdict, judge, topk_agreement
from shopserve.optimize.probes import PipelineProbe, QualityProbe
from shopserve.optimize.recipes import (
    RECIPES,
    Recipe,
    RecipeContext,
    Variant,
    parse_recipe,
    parse_variant,
    recipe_names,
    register_recipe,
)
from shopserve.optimize.report import OptimizeReport, VariantReport, VariantStatus
from shopserve.optimize.runner import OptimizeSettings, optimize, require_accepted
from shopserve.optimize.speed import SpeedSettings

__all__ = [
    "RECIPES",
    "OptimizeReport",
    "OptimizeSettings",
    "PipelineProbe",
    "Quality",
    "QualityBudget",
    "QualityProbe",
    "Recipe",
    "RecipeContext",
    "SpeedSettings",
    "Variant",
    "VariantReport",
    "VariantStatus",
    "Verdict",
    "judge",
    "optimize",
    "parse_recipe",
    "parse_variant",
    "recipe_names",
    "register_recipe",
    "require_accepted",
    "topk_agreement",
]
