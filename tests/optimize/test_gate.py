"""The quality gate's verdicts and the reasons it gives."""

from __future__ import annotations

from shopserve.optimize import Quality, QualityBudget, judge, topk_agreement

PARENT = Quality(metrics={"auc": 0.80, "logloss": 0.45, "ndcg_at_10": 0.60},
                 topk=[["a", "b", "c", "d"], ["e", "f", "g", "h"]])


def test_small_losses_pass_and_name_nothing() -> None:
    child = Quality(metrics={"auc": 0.799, "logloss": 0.46, "ndcg_at_10": 0.597},
                    topk=[["a", "b", "c", "d"], ["f", "e", "g", "h"]])
    verdict = judge(PARENT, child, QualityBudget())
    assert verdict.accepted and verdict.reason is None and verdict.agreement == 1.0


def test_each_broken_budget_is_named_with_its_numbers() -> None:
    child = Quality(metrics={"auc": 0.79, "ndcg_at_10": 0.59, "logloss": 0.3},
                    topk=[["a", "b", "c", "x"], ["e", "f", "y", "z"]])
    verdict = judge(PARENT, child, QualityBudget(min_topk_agreement=0.9))
    assert not verdict.accepted
    assert verdict.reasons == (
        "auc dropped 0.0100 (0.8000 → 0.7900), budget 0.002",
        "ndcg_at_10 dropped 0.0100 (0.6000 → 0.5900), budget 0.005",
        "top-k agreement with the parent 0.625 is below 0.9",
    )


def test_unmeasurable_metric_and_explicit_budgets() -> None:
    parent = Quality(metrics={"auc": 0.8, "recall_at_20": 0.30, "logloss": 0.4})
    child = Quality(metrics={"auc": float("nan"), "recall_at_20": 0.28, "logloss": 0.9})
    reasons = judge(parent, child, QualityBudget(max_drops={"recall_at_20": 0.01})).reasons
    assert reasons == ("auc could not be measured on the child",
                       "recall_at_20 dropped 0.0200 (0.3000 → 0.2800), budget 0.01")
    assert topk_agreement([["a", "b"]], [["b", "c"]]) == 0.5


def test_budgets_apply_by_metric_family_whatever_the_prefix() -> None:
    parent = Quality(metrics={"ndcg_at_10": 0.6, "encoder_ndcg_at_10": 0.5,
                              "recall_at_100": 0.9, "bm25_recall_at_100": 0.8,
                              "eval_queries": 66.0})
    child = Quality(metrics={"ndcg_at_10": 0.6, "encoder_ndcg_at_10": 0.49,
                             "recall_at_100": 0.88, "bm25_recall_at_100": 0.8,
                             "eval_queries": 10.0})
    assert judge(parent, child, QualityBudget()).reasons == (
        "encoder_ndcg_at_10 dropped 0.0100 (0.5000 → 0.4900), budget 0.005",
        "recall_at_100 dropped 0.0200 (0.9000 → 0.8800), budget 0.01",
    )
    assert judge(parent, child, QualityBudget(max_ndcg_drop=0.02, max_recall_drop=0.05)).accepted
