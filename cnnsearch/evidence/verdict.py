"""The verdict of a confirmation, from per-seed numbers only: is a configuration better than the baseline?

The unit of replication is the *training seed*: a configuration and the
baseline trained with the same seed s form a pair, and the question is whether
the paired differences d_s = candidate_s - baseline_s are reliably above or
below 0. For each candidate: the mean and sd of d, the 95% t-interval with n-1
degrees of freedom and its p-value (``scipy.stats.ttest_rel``), the p-values
Holm-corrected over the K candidates of one confirmation, and one of exactly
three words: ``better``, ``worse`` or ``inconclusive``.

McNemar's exact test on the test images (:func:`mcnemar`) compares two *fixed*
trained models; it says nothing about seed-to-seed noise, so it is reported per
seed pair as supporting evidence and never decides a verdict.

Pure functions of numbers: no Optuna, no TensorFlow (tests feed synthetic seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Family-wise significance level of the verdicts of one confirmation (Holm over its K candidates).
ALPHA = 0.05
#: Fewer paired seeds than this is always "inconclusive": a t-interval from 2 seeds has 1 degree of
#: freedom (t = 12.7) and its sd is itself a guess.
MIN_SEEDS = 3
#: Power of the "seeds needed" estimate: the chance that a rerun with that many seeds resolves the difference.
POWER = 0.8
#: The estimate stops counting here (a difference this small against this much noise is not worth chasing).
MAX_SEEDS_ESTIMATE = 1000
#: The three verdict words, and the only ones.
VERDICTS = ("better", "worse", "inconclusive")


@dataclass(frozen=True)
class Paired:
    """Paired per-seed comparison of a candidate with the baseline (accuracies as fractions)."""

    n: int  # paired seeds
    mean: float  # mean of candidate - baseline
    sd: float  # sample sd (ddof=1) of the differences; nan with one seed
    ci95: tuple[float, float]  # 95% t-interval of the mean difference (n-1 degrees of freedom); nan with one seed
    p: float  # two-sided paired t-test p-value; nan with one seed


def paired(candidate: Sequence[float], baseline: Sequence[float]) -> Paired:
    """Compare per-seed accuracies of a candidate and the baseline, given in the same seed order."""
    from scipy import stats

    a, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"expected two equally long, non-empty per-seed lists; received {len(a)} and {len(b)}")
    d = a - b
    n, mean = len(d), float(d.mean())
    if n < 2:
        return Paired(n, mean, math.nan, (math.nan, math.nan), math.nan)
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # identical differences: the t statistic is undefined, the evidence is not
        return Paired(n, mean, 0.0, (mean, mean), 1.0 if mean == 0 else 0.0)
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(confidence_level=0.95)
    return Paired(n, mean, sd, (float(ci.low), float(ci.high)), float(res.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, family-wise error control); nan stays nan and is not counted."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def decide(mean: float, p_adjusted: float, n: int, alpha: float = ALPHA) -> str:
    """``better`` / ``worse`` when the corrected test rejects "no difference", else ``inconclusive``."""
    if n < MIN_SEEDS or math.isnan(p_adjusted) or p_adjusted >= alpha or mean == 0:
        return "inconclusive"
    return "better" if mean > 0 else "worse"


def seeds_needed(mean: float, sd: float | None, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """An estimate: paired seeds for a two-sided t-test at ``alpha`` to detect ``mean`` with ``power``.

    Assumes the observed difference and sd are the true ones (both are noisy
    with few seeds, so this is a rough guide). None when it cannot be said (no
    difference observed, no sd yet) or it exceeds :data:`MAX_SEEDS_ESTIMATE`.
    """
    from scipy import stats

    if sd is None or not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0 or sd == 0:
        return None
    effect = abs(mean) / sd
    for n in range(MIN_SEEDS, MAX_SEEDS_ESTIMATE + 1):
        df, nc = n - 1, effect * math.sqrt(n)
        crit = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) >= power:
            return n
    return None


@dataclass(frozen=True)
class OneSample:
    """Mean test accuracy over seeds against a fixed figure (the reference's 99.15%)."""

    n: int
    mean: float
    ci95: tuple[float, float]
    p: float


def one_sample(accuracies: Sequence[float], reference: float) -> OneSample:
    """Mean, 95% t-interval and p-value of ``accuracies`` against ``reference``."""
    from scipy import stats

    a = np.asarray(accuracies, dtype=float)
    n, mean = len(a), float(a.mean())
    if n < 2:
        return OneSample(n, mean, (math.nan, math.nan), math.nan)
    if float(a.std(ddof=1)) == 0.0:
        return OneSample(n, mean, (mean, mean), 1.0 if mean == reference else 0.0)
    res = stats.ttest_1samp(a, reference)
    ci = res.confidence_interval(confidence_level=0.95)
    return OneSample(n, mean, (float(ci.low), float(ci.high)), float(res.pvalue))


def mcnemar(base_correct: np.ndarray, cand_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two fixed models on the same images: (only baseline right, only candidate right, p)."""
    from scipy.stats import binomtest

    b = int(np.sum(base_correct & ~cand_correct))
    c = int(np.sum(~base_correct & cand_correct))
    return b, c, 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5).pvalue)


@dataclass(frozen=True)
class RankCheck:
    """Do two fidelities rank the same configurations alike? Spearman's rho over ``n`` configurations."""

    n: int
    rho: float  # nan with fewer than 3 configurations or a constant side
    p: float  # two-sided p of rho = 0; with n = 4 it cannot go below 0.08


def rank_agreement(search: Sequence[float], confirmed: Sequence[float]) -> RankCheck:
    """Spearman's rank correlation between search-fidelity scores and confirmed scores of the same configurations."""
    from scipy.stats import spearmanr

    a, b = np.asarray(search, dtype=float), np.asarray(confirmed, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return RankCheck(len(a), math.nan, math.nan)
    res = spearmanr(a, b)
    return RankCheck(len(a), float(res.statistic), float(res.pvalue))
