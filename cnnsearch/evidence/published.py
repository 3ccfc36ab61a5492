"""Comparisons that are not a paired verdict: against a published single-run figure, and rank agreement.

The reference's 99.15% is *one* training run. Treating it as an exact constant
claims more than the data hold: a second run of the reference would land
elsewhere by its own seed spread. :func:`vs_published` therefore adds the
spread of one run, for which the re-trained baseline's seed sd is the stand-in
(the same architecture and training, so the fairest guess available), and
words the result "above" / "below the published single-run figure" or "no
difference detected", never ``better``. The published figure was measured on
the same test images, whose predictions were not published, so the comparison
can only be made on MNIST's test set as it is.

:func:`rank_agreement` checks whether the search's cheap fidelity ranked the
confirmed configurations as the confirmation did (Spearman's rho), with an exact
permutation p for up to :data:`EXACT_UP_TO` configurations: with 3 the smallest
two-sided p is 1/3, so "rho = -1.00 (p = 0)" can no longer be printed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Words of a comparison with a published single-run figure (never "better": one run is not a population).
WORDS = ("above", "below", "no difference detected")
#: Said instead of a word when fewer seeds than a verdict needs were run.
TOO_FEW = "not judged (fewer than 3 seeds)"
#: Rank correlations of up to this many configurations get an exact permutation p (n! orderings).
EXACT_UP_TO = 8
#: Fewer configurations than this: the rank check is a sanity check, not a measurement.
RANK_MIN = 5
#: Smallest spread one run can be credited with: one test image of 10,000 (a guess of 0 is certainty).
SD_FLOOR = 1e-4


@dataclass(frozen=True)
class VsPublished:
    """Mean test accuracy over seeds against one published run, counting that run's own seed spread."""

    n: int
    mean: float
    diff_mean: float  # mean - figure
    sd_published: float  # the stand-in spread of one run (the baseline's seed sd), nan when unknown
    ci95: tuple[float, float]  # of diff_mean
    p: float
    se: float = math.nan
    df: float = math.nan

    def tost(self, margin: float) -> float:
        """TOST p of |true difference| < ``margin`` (an equivalence claim needs this below alpha)."""
        from scipy import stats

        if not (math.isfinite(self.se) and self.se > 0):
            return math.nan
        return float(max(stats.t.sf((self.diff_mean + margin) / self.se, self.df),
                         stats.t.cdf((self.diff_mean - margin) / self.se, self.df)))


def vs_published(accuracies: Sequence[float], baseline: Sequence[float], figure: float) -> VsPublished:
    """``accuracies`` (one configuration's seeds) against ``figure`` (one published run).

    Var(mean - figure) = s_c^2 / n + s_b^2, s_b the baseline's seed sd standing in for the
    published run's; Satterthwaite degrees of freedom. Both sds floored at :data:`SD_FLOOR`.
    """
    from scipy import stats

    a, b = np.asarray(accuracies, dtype=float), np.asarray(baseline, dtype=float)
    n, mean = len(a), float(a.mean())
    if n < 2 or len(b) < 2:
        return VsPublished(n, mean, mean - figure, math.nan, (math.nan, math.nan), math.nan)
    sc2, sb2 = max(float(a.var(ddof=1)), SD_FLOOR ** 2), max(float(b.var(ddof=1)), SD_FLOOR ** 2)
    v = sc2 / n + sb2
    df = v ** 2 / ((sc2 / n) ** 2 / (n - 1) + sb2 ** 2 / (len(b) - 1))
    se, diff = math.sqrt(v), mean - figure
    half = float(stats.t.ppf(0.975, df)) * se
    p = max(1e-12, float(2 * stats.t.sf(abs(diff) / se, df)))
    return VsPublished(n, mean, diff, math.sqrt(sb2), (diff - half, diff + half), p, se, df)


def word(diff: float, p_adjusted: float, alpha: float) -> str:
    """``above`` / ``below`` the published figure when the corrected test rejects, else "no difference detected"."""
    if math.isnan(p_adjusted) or p_adjusted >= alpha or diff == 0:
        return "no difference detected"
    return "above" if diff > 0 else "below"


@dataclass(frozen=True)
class RankCheck:
    """Do two fidelities rank the same configurations alike? Spearman's rho over ``n`` configurations."""

    n: int
    rho: float  # nan with fewer than 3 configurations or a constant side
    p: float  # two-sided; exact (all n! orderings) up to EXACT_UP_TO configurations
    exact: bool


def rank_agreement(search: Sequence[float], confirmed: Sequence[float]) -> RankCheck:
    """Spearman's rank correlation between search-fidelity scores and confirmed scores of the same configurations."""
    from scipy.stats import rankdata, spearmanr

    a, b = np.asarray(search, dtype=float), np.asarray(confirmed, dtype=float)
    n = len(a)
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return RankCheck(n, math.nan, math.nan, False)
    rho = float(spearmanr(a, b).statistic)
    if n > EXACT_UP_TO:
        return RankCheck(n, rho, float(spearmanr(a, b).pvalue), False)
    ra, rb = rankdata(a), rankdata(b)
    # Every ordering of one side is equally likely under "no association": p = share as extreme.
    rhos = [float(np.corrcoef(ra, np.array(perm))[0, 1]) for perm in itertools.permutations(rb)]
    p = sum(abs(r) >= abs(rho) - 1e-12 for r in rhos) / len(rhos)
    return RankCheck(n, rho, p, True)
