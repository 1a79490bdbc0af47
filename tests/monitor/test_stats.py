"""Drift statistics, NDCG and histogram quantiles on their own, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from shopserve.monitor.feedback import ndcg
from shopserve.monitor.history import quantile
from shopserve.monitor.stats import chi2_sf, chi_square_two_sample, ks_two_sample, psi


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi(np.array([10, 20, 30]), np.array([20, 40, 60])) == pytest.approx(0.0)
    small = psi(np.array([50, 50]), np.array([45, 55]))
    large = psi(np.array([50, 50]), np.array([10, 90]))
    assert 0 < small < 0.05 < 0.2 < large


def test_ks_and_chi_square_match_scipy() -> None:
    st = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(0.2, size=300)
    ours, theirs = ks_two_sample(a, b), st.ks_2samp(a, b)
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=0.1)
    for x, dof in ((12.3, 5), (2.0, 7), (300.0, 3), (0.5, 1)):
        assert chi2_sf(x, dof) == pytest.approx(st.chi2.sf(x, dof), rel=1e-6)
    ref, live = np.array([30, 50, 20]), np.array([10, 60, 40])
    expected = st.chi2_contingency(np.vstack([ref, live]), correction=False)
    assert chi_square_two_sample(ref, live).p_value == pytest.approx(expected.pvalue, rel=1e-6)


def test_ndcg_rewards_feedback_near_the_top() -> None:
    shown = ["a", "b", "c", "d"]
    assert ndcg(shown, {"a": 1}) == pytest.approx(1.0)
    assert ndcg(shown, {"b": 1}) == pytest.approx(1 / np.log2(3))
    assert ndcg(shown, {"b": 2, "a": 1}) < 1.0
    assert ndcg(shown, {"x": 1}) == 0.0


def test_quantile_interpolates_like_histogram_quantile() -> None:
    buckets = {0.01: 10.0, 0.1: 100.0, float("inf"): 100.0}
    assert quantile(0.99, buckets) == pytest.approx(0.099)
    assert quantile(0.05, buckets) == pytest.approx(0.005)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
