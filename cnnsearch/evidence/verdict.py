"""The verdict of a confirmation: is a configuration better than the baseline, counting both sources of noise?

Public entry point (used by ``confirm`` and ``ablate``)::

    paired_verdicts(baseline, candidates, labels=None, *, seeds=None, alpha=ALPHA,
                    margin=EQUIVALENCE_MARGIN) -> dict
        baseline:   {seed: run}             run = a stored record: {"test_accuracy": float,
        candidates: {key: {seed: run}}            "predictions": base64 text or array of class ids}
        labels:     the test labels (array); None: test-image noise cannot be counted
        seeds:      the seeds the family was declared with (default: the baseline's)
        alpha:      the level this look may spend (Holm over the family at this level)
    returns {"alpha", "seeds", "family": [keys], "incomplete": {key: finished seeds},
             "results": {key: Difference.to_dict() + p_holm, verdict, reason}}

Two sources of noise. A configuration and the baseline trained with the same
seed s form a pair; d_s is their test-accuracy difference on the *same*
10,000 test images. Training noise varies d_s from seed to seed (the classic
paired t-interval, ``ci95_seeds``). Test-image sampling does not shrink with
more seeds, because every seed reuses the same images: a candidate that is
right on a few more hard images than the baseline on *these* digits may not be
on new ones. :func:`difference` counts both by a two-way random-effects variance
decomposition of the seed x image matrix D_si = cand_si - base_si (right = 1):

    Var(mean) = V_seeds + V_images
    V_seeds  = max(s_d^2, MS_E / m) / n          (seed-to-seed spread of d_s; floored, below)
    V_images = max(0, s_u^2 - MS_E / n) / m      (spread over images of u_i, the seed-mean of D_si)

with MS_E the seed x image interaction mean square, which is inside both s_d^2
and s_u^2 and is counted once. Degrees of freedom by Satterthwaite's rule. The
p-value of the verdict is max(p seeds-only, p both sources): a configuration is
called better only when both the t-test over seeds and the both-sources test
reject, so ``ci95`` always contains ``ci95_seeds``. Floors: the seed spread is
never below the interaction's share (MS_E/m) nor below one test image (1/m),
so identical differences on every seed never give sd 0 or p = 0.

Without per-image predictions (a confirmation stored by an older version) the
test-image part cannot be counted: the verdict is then ``inconclusive`` with a
reason, never a silent ``better``. ``better``/``worse`` also need
:data:`MIN_SEEDS` paired seeds. Equivalence (TOST) is reported only against a
stated margin. McNemar's exact test (:func:`mcnemar`) compares two *fixed*
models and is kept per seed pair as supporting evidence only.

Pure functions of numbers: no Optuna, no TensorFlow (tests feed synthetic seeds).
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from cnnsearch.evidence.published import RankCheck, rank_agreement  # noqa: F401  (its earlier home)

#: Family-wise significance level of the verdicts of one confirmation (Holm over its declared candidates,
#: spent over its looks by :func:`spending`).
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
#: Equivalence margin of the TOST, in test accuracy (0.2 pp = 20 of MNIST's 10,000 test images): a
#: difference inside +-0.2 pp is called "equivalent" only when both one-sided tests reject at ALPHA.
EQUIVALENCE_MARGIN = 0.002
#: Smallest p-value reported: no confirmation here can tell smaller ones apart, and 0 would read as certainty.
P_FLOOR = 1e-12


@dataclass(frozen=True)
class Difference:
    """Mean test-accuracy difference (candidate - baseline) over paired seeds, with both noise sources."""

    n: int  # paired seeds
    images: int  # test images per seed (0: no predictions; only the seed part is known)
    mean: float
    sd_seeds: float  # sd of the per-seed differences after the floors; nan with one seed
    se_seeds: float  # standard error from training seeds alone
    se_images: float  # standard error from test-image sampling (nan without predictions)
    se: float  # both together (nan without predictions)
    df: float  # Satterthwaite degrees of freedom of ``se``
    ci95_seeds: tuple[float, float]  # t-interval over seeds only (n-1 df)
    ci95: tuple[float, float]  # seeds + test images; always contains ci95_seeds
    p_seeds: float
    p: float  # max(p seeds-only, p both sources), never below P_FLOOR

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists; nan stays nan: callers turn it into None)."""
        d = asdict(self)
        d["ci95_seeds"], d["ci95"] = list(self.ci95_seeds), list(self.ci95)
        return d


def _t_p(mean: float, se: float, df: float) -> float:
    from scipy import stats

    if not (math.isfinite(se) and se > 0):
        return 1.0 if mean == 0 else P_FLOOR
    return max(P_FLOOR, float(2 * stats.t.sf(abs(mean) / se, df)))


def _interval(mean: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    if not (math.isfinite(se) and math.isfinite(df) and df > 0):
        return (math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return (mean - half, mean + half)


def difference(cand: Sequence[float] | np.ndarray, base: Sequence[float] | np.ndarray) -> Difference:
    """Both-sources comparison of a candidate with the baseline over paired seeds.

    ``cand`` and ``base``: per-seed test accuracies (1-d, seeds only) or per-seed, per-image
    correctness (2-d, seeds x images, bool or 0/1), in the same seed order.
    """
    a, b = np.asarray(cand, dtype=float), np.asarray(base, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(f"expected two equally shaped, non-empty per-seed arrays; received {a.shape} and {b.shape}")
    n = a.shape[0]
    if a.ndim == 1:
        d, m, ms_e, s_u2 = a - b, 0, 0.0, math.nan
    else:
        D = a - b
        m = D.shape[1]
        d, u = D.mean(axis=1), D.mean(axis=0)
        s_u2 = float(u.var(ddof=1)) if m > 1 else 0.0
        # Interaction mean square (per-image flips that differ between seeds; part of both spreads above),
        # from the two-way sums of squares: SS_E = SS_total - SS_seeds - SS_images.
        grand = float(D.mean())
        ss_e = (float(np.square(D).sum()) - n * m * grand ** 2 - m * float(np.square(d - grand).sum())
                - n * float(np.square(u - grand).sum()))
        ms_e = max(0.0, ss_e) / ((n - 1) * (m - 1)) if n > 1 and m > 1 else 0.0
    mean = float(d.mean())
    nan2 = (math.nan, math.nan)
    if n < 2:
        return Difference(n, m, mean, math.nan, math.nan, math.nan, math.nan, math.nan, nan2, nan2, math.nan, math.nan)
    # Floors: the seed spread cannot be below what per-image flips alone produce (MS_E/m), and a
    # spread below one test image cannot be measured (identical differences are not certainty).
    floor = 1 / m if m else 1e-4
    s_d2 = max(float(d.var(ddof=1)), ms_e / m if m else 0.0, floor ** 2)
    v_seed = s_d2 / n
    se_seeds = math.sqrt(v_seed)
    ci_seeds = _interval(mean, se_seeds, n - 1)
    p_seeds = _t_p(mean, se_seeds, n - 1)
    if not m:
        return Difference(n, 0, mean, math.sqrt(s_d2), se_seeds, math.nan, math.nan, math.nan, ci_seeds, nan2,
                          p_seeds, p_seeds)
    v_img = max(0.0, s_u2 - ms_e / n) / m
    v = v_seed + v_img
    # Satterthwaite: each mean square's share of v with its own degrees of freedom (MS_E enters v_img
    # with a minus sign, and only when the image component is positive).
    terms = [(v_seed, n - 1)]
    if v_img > 0:
        terms += [(s_u2 / m, m - 1), (ms_e / (n * m), (n - 1) * (m - 1))]
    df = v ** 2 / sum(x ** 2 / k for x, k in terms)
    se = math.sqrt(v)
    ci_both = _interval(mean, se, df)
    ci = (min(ci_both[0], ci_seeds[0]), max(ci_both[1], ci_seeds[1]))
    p = max(p_seeds, _t_p(mean, se, df))
    return Difference(n, m, mean, math.sqrt(s_d2), se_seeds, math.sqrt(v_img), se, df, ci_seeds, ci, p_seeds, p)


def tost(diff: Difference, margin: float = EQUIVALENCE_MARGIN) -> float:
    """Two one-sided tests of |true difference| < ``margin``: the larger one-sided p (nan when not computable)."""
    from scipy import stats

    se, df = (diff.se, diff.df) if math.isfinite(diff.se) else (diff.se_seeds, diff.n - 1)
    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan
    lower = stats.t.sf((diff.mean + margin) / se, df)
    upper = stats.t.cdf((diff.mean - margin) / se, df)
    return max(P_FLOOR, float(max(lower, upper)))


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


def spending(looks: Sequence[int], max_seeds: int, alpha: float = ALPHA) -> list[float]:
    """The level each look may spend: O'Brien-Fleming-type alpha spending (Lan-DeMets).

    ``looks``: seeds judged at each look, increasing; ``max_seeds``: the maximum declared
    before the first look. Spent by look k: A(t_k) - A(t_{k-1}), A(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)),
    t = seeds / max_seeds. The levels add up to at most ``alpha``, so by the union bound the chance
    of any false ``better``/``worse`` over all looks stays below ``alpha`` whatever the looks'
    correlation (conservative: a group-sequential boundary would use that correlation).
    """
    from scipy.stats import norm

    z = norm.ppf(1 - alpha / 2)

    def spent(t: float) -> float:
        return 0.0 if t <= 0 else float(2 - 2 * norm.cdf(z / math.sqrt(min(t, 1.0))))

    out, before = [], 0.0
    for k in looks:
        now = spent(k / max_seeds)
        out.append(max(0.0, now - before))
        before = max(before, now)
    return out


def _correct(run: Mapping[str, Any], labels: np.ndarray | None) -> np.ndarray | None:
    pred = run.get("predictions")
    if labels is None or pred is None or (isinstance(pred, str) and not pred):
        return None
    p = np.frombuffer(base64.b64decode(pred), dtype=np.uint8) if isinstance(pred, str) else np.asarray(pred)
    return p.astype(np.int64) == labels if len(p) == len(labels) else None


def _compare(cand: Mapping[int, Mapping[str, Any]], base: Mapping[int, Mapping[str, Any]], seeds: list[int],
             labels: np.ndarray | None) -> tuple[Difference, str]:
    """One candidate's :class:`Difference` over ``seeds`` and why it cannot be judged fully ('' when it can)."""
    accs = [(cand[s]["test_accuracy"], base[s]["test_accuracy"]) for s in seeds]
    fids = {(r.get("epochs"), r.get("train_limit")) for r in [*(cand[s] for s in seeds), *(base[s] for s in seeds)]}
    if len(fids) > 1:  # e.g. runs of different --epochs handed in together: not a paired comparison
        shown = ", ".join(f"{e} epochs/train_limit {n}" for e, n in sorted(fids, key=repr))
        return difference([x for x, _ in accs], [y for _, y in accs]), (
            f"its runs and the baseline's were trained at different fidelities ({shown}), so they are not paired;"
            " no verdict: confirm them at one --epochs and --train-limit")
    cc = [_correct(cand[s], labels) for s in seeds]
    bc = [_correct(base[s], labels) for s in seeds]
    if labels is not None and all(x is not None for x in cc + bc):
        return difference(np.array(cc), np.array(bc)), ""
    diff = difference([x for x, _ in accs], [y for _, y in accs])
    if labels is None:
        why = "no stored test labels, so test-image noise cannot be counted"
    elif any(r.get("predictions") for r in [*cand.values(), *base.values()] if r.get("predictions")) and \
            any(x is None for x in cc + bc):
        why = (f"some runs' stored predictions do not match the {len(labels):,} test labels (made on other"
               " data or by an older version), so test-image noise cannot be counted")
    else:
        why = "runs stored without test predictions (an older version), so test-image noise cannot be counted"
    return diff, why + "; only the seeds-only interval is shown and the verdict stays inconclusive"


def paired_verdicts(baseline: Mapping[int, Mapping[str, Any]],
                    candidates: Mapping[str, Mapping[int, Mapping[str, Any]]],
                    labels: np.ndarray | None = None, *, seeds: Sequence[int] | None = None, alpha: float = ALPHA,
                    margin: float = EQUIVALENCE_MARGIN) -> dict[str, Any]:
    """Paired verdicts of candidates against a baseline from stored runs: one Holm family at level ``alpha``.

    The family is the candidates that finished every seed in ``seeds`` (default: the baseline's
    seeds); the others are listed under ``incomplete`` with their finished seed count and get no
    verdict. Each result carries :class:`Difference` fields, ``p_holm``, ``verdict`` (one of
    :data:`VERDICTS`), ``tost_p``/``equivalent`` (within +-``margin``) and ``reason`` (why a verdict
    is limited, '' when it is not). See the module docstring for the statistics.
    """
    seeds = sorted(baseline) if seeds is None else sorted(seeds)
    family = [k for k in candidates if seeds and all(s in candidates[k] and s in baseline for s in seeds)]
    incomplete = {k: sum(s in v for s in seeds) for k, v in candidates.items() if k not in family}
    results: dict[str, dict[str, Any]] = {}
    for k in family:
        diff, why = _compare(candidates[k], baseline, seeds, labels)
        if not why and diff.n < MIN_SEEDS:
            why = (f"{diff.n} paired seed{'s' * (diff.n != 1)}: no verdict can be better or worse; a verdict needs"
                   f" at least {MIN_SEEDS} seeds (the seed spread of fewer is itself a guess)")
        tp = tost(diff, margin)
        results[k] = {**diff.to_dict(), "reason": why, "tost_p": tp, "margin": margin,
                      "equivalent": bool(not why and math.isfinite(tp) and tp < alpha)}
    adjusted = holm([math.nan if r["reason"] else r["p"] for r in results.values()])
    for (k, r), p in zip(results.items(), adjusted):
        r["p_holm"] = p
        r["verdict"] = "inconclusive" if r["reason"] else decide(r["mean"], p, r["n"], alpha)
    return {"alpha": alpha, "seeds": seeds, "family": family, "incomplete": incomplete, "margin": margin,
            "results": results}


def seeds_needed(mean: float, sd: float | None, alpha: float = ALPHA, power: float = POWER,
                 se_images: float = 0.0) -> int | None:
    """An estimate: paired seeds for a two-sided test at ``alpha`` to detect ``mean`` with ``power``.

    Assumes the observed difference and spreads are the true ones (both are noisy
    with few seeds, so this is a rough guide). ``se_images``, the test-image part,
    does not shrink with seeds: when it alone hides the difference, no seed count
    resolves it. None when it cannot be said (no difference observed, no sd yet),
    cannot be reached, or exceeds :data:`MAX_SEEDS_ESTIMATE`.
    """
    from scipy import stats

    if sd is None or not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0 or sd == 0:
        return None
    img = se_images if math.isfinite(se_images) else 0.0
    if img > 0 and abs(mean) / img < stats.norm.ppf(1 - alpha / 2):  # the images alone hide it: seeds cannot help
        return None
    for n in range(MIN_SEEDS, MAX_SEEDS_ESTIMATE + 1):
        df = n - 1
        se = math.sqrt(sd ** 2 / n + img ** 2)
        nc, crit = abs(mean) / se, stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) >= power:
            return n
    return None


def mcnemar(base_correct: np.ndarray, cand_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two fixed models on the same images: (only baseline right, only candidate right, p)."""
    from scipy.stats import binomtest

    b = int(np.sum(base_correct & ~cand_correct))
    c = int(np.sum(~base_correct & cand_correct))
    return b, c, 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5).pvalue)


@dataclass(frozen=True)
class Paired:
    """Seeds-only paired comparison (the earlier API, kept for callers written against it)."""

    n: int
    mean: float
    sd: float
    ci95: tuple[float, float]
    p: float


def paired(candidate: Sequence[float], baseline: Sequence[float]) -> Paired:
    """Seeds-only paired comparison of per-seed accuracies, with the floors of :func:`difference`.

    Kept for callers of the earlier API; a verdict should come from :func:`paired_verdicts`, which
    also counts the test images.
    """
    d = difference(candidate, baseline)
    return Paired(d.n, d.mean, d.sd_seeds, d.ci95_seeds, d.p_seeds)


@dataclass(frozen=True)
class OneSample:
    """Mean over seeds against a fixed figure (the earlier API)."""

    n: int
    mean: float
    ci95: tuple[float, float]
    p: float


def one_sample(values: Sequence[float], reference: float) -> OneSample:
    """Mean, 95% t-interval and p of ``values`` against ``reference``, sd floored at one test image.

    For a published single-run figure use :func:`cnnsearch.evidence.published.vs_published`, which
    also counts that run's own seed spread.
    """
    a = np.asarray(values, dtype=float)
    d = difference(a, np.full_like(a, reference))
    return OneSample(d.n, float(a.mean()), (reference + d.ci95_seeds[0], reference + d.ci95_seeds[1]), d.p_seeds)
