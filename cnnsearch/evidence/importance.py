"""Which choices mattered, with the uncertainty the answer carries.

fANOVA (Optuna's :class:`~optuna.importance.FanovaImportanceEvaluator`) fits a
random forest to a handful of trials; one fit on 9 trials ranks differently
from the next. So the importance here is computed on :data:`RESAMPLES`
bootstrap resamples of the completed trials (each with its own forest seed),
and reported as a mean and spread per dimension. Beside it stands the ranking
optuna-dashboard's importance panel shows (its ``_importance.py`` calls
:class:`~optuna.importance.PedAnovaImportanceEvaluator` on the objective,
negated for a maximised objective), so a user who opens both sees which is which.

Rules, said in words rather than drawn:

- fewer completed trials than twice the searched dimensions: too few to rank;
- a dimension that took fewer than 2 distinct values: "not explored", never "did not matter";
- a choice is named as mattering only when it ranks in the top 2 in at least
  :data:`TOP_SHARE` of the resamples (top 1 when only 2 dimensions were explored)
  *and* its mean share is above an equal share (1 / explored dimensions): with one
  dominant choice, the runner-up slot is a lottery among near-zero shares;
- a *conditional* dimension (conv3_filters exists only with 3 conv layers) is not in every
  trial, so fANOVA cannot rank it: it is named "conditional: not ranked", with the trials it
  exists in, and its per-value medians are given within those trials;
- each choice comes with its direction (:func:`direction`): the median validation accuracy of
  the trials with its best value against its runner-up value, and how many trials each;
- where fANOVA and PED-ANOVA disagree, one sentence says what each measures.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

#: Bootstrap resamples of the completed trials (each fANOVA fit with its own forest seed).
RESAMPLES = 10
#: Trees per fANOVA fit (Optuna's default is 64). The resamples already average RESAMPLES forests, so 16 trees
#: each keep 160 in all: the fits were 11 of a 21-s report of 100 trials (cProfile, 2026-12-03, 2-core EPYC,
#: loaded), and 16 trees cut them 4x.
FANOVA_TREES = 16
#: Share of the resamples in which a dimension must rank in the top 2 to be named as mattering.
TOP_SHARE = 0.8
#: Completed trials needed per searched dimension before any ranking is shown.
TRIALS_PER_DIMENSION = 2
#: fANOVA and PED-ANOVA "disagree" on a dimension when one gives it at least this share and the other
#: less than a quarter of it (e.g. 19% against 0%).
DISAGREE_SHARE = 0.10


@dataclass(frozen=True)
class Dimension:
    """One searched dimension's importance: fANOVA over resamples, and the dashboard's PED-ANOVA."""

    name: str
    distinct: int  # distinct values among the completed trials
    fanova: tuple[float, ...] = ()  # one share of variance per resample; empty when not explored
    top_share: float = 0.0  # share of resamples in which it ranked in the top 2 (top 1 with 2 dimensions)
    dashboard: float | None = None  # PED-ANOVA importance as optuna-dashboard computes it
    direction: "Direction | None" = None  # best value against the runner-up, by median validation accuracy

    @property
    def explored(self) -> bool:
        """Took at least 2 distinct values among the completed trials (else: "not explored")."""
        return self.distinct >= 2

    @property
    def mean(self) -> float:
        """Mean fANOVA share over the resamples (nan when not ranked)."""
        return float(np.mean(self.fanova)) if self.fanova else math.nan

    @property
    def sd(self) -> float:
        """Sample sd of the fANOVA share over the resamples (nan with fewer than 2)."""
        return float(np.std(self.fanova, ddof=1)) if len(self.fanova) > 1 else math.nan


@dataclass(frozen=True)
class Direction:
    """Which way a choice goes: median validation accuracy per value (or per third of a continuous range)."""

    best: str
    runner_up: str
    gain: float  # median(best) - median(runner-up), in accuracy
    n_best: int
    n_runner_up: int

    def describe(self, name: str) -> str:
        """``conv_layers 3: +0.30 pp over 2 (median of 40 and 35 trials)``."""
        return (f"{name} {self.best}: {100 * self.gain:+.2f} pp over {self.runner_up} (median of {self.n_best} and"
                f" {self.n_runner_up} trials)")


@dataclass(frozen=True)
class Conditional:
    """A dimension that exists only in some trials (it depends on another choice): not ranked by fANOVA."""

    name: str
    trials: int  # completed trials it exists in
    direction: Direction | None = None  # within those trials


@dataclass(frozen=True)
class Importance:
    """The answer to "which choices mattered", or why it cannot be given yet."""

    completed: int
    needed: int  # completed trials needed to rank at all
    dimensions: list[Dimension] = field(default_factory=list)  # by fANOVA mean, then not explored
    resamples: int = 0
    error: str = ""
    conditional: list[Conditional] = field(default_factory=list)

    @property
    def too_few(self) -> bool:
        """Fewer completed trials than :data:`TRIALS_PER_DIMENSION` per searched dimension."""
        return self.completed < self.needed

    @property
    def ranked(self) -> bool:
        """A fANOVA ranking over resamples exists (enough trials, no error, something explored)."""
        return not self.too_few and not self.error and any(d.fanova for d in self.dimensions)

    @property
    def mattered(self) -> list[str]:
        """Dimensions named as mattering: top-ranked in :data:`TOP_SHARE` of resamples, above an equal share."""
        if not self.ranked:
            return []
        equal = 1 / sum(1 for d in self.dimensions if d.fanova)
        return [d.name for d in self.dimensions if d.fanova and d.top_share >= TOP_SHARE and d.mean > equal]

    @property
    def not_explored(self) -> list[str]:
        """Searched dimensions with fewer than 2 distinct values: no evidence either way."""
        return [d.name for d in self.dimensions if not d.explored]

    @property
    def dashboard_order(self) -> list[str]:
        """Dimensions in optuna-dashboard's (PED-ANOVA) order, most important first."""
        scored = [d for d in self.dimensions if d.dashboard is not None]
        return [d.name for d in sorted(scored, key=lambda d: -(d.dashboard or 0.0))]


def _val(t: FrozenTrial) -> float:
    v = t.user_attrs.get("val_accuracy")
    return float("nan") if v is None else float(v)


def direction(trials: Sequence[FrozenTrial], name: str, target: Callable[[FrozenTrial], float] = _val
              ) -> Direction | None:
    """The value of ``name`` whose trials have the highest median ``target``, against the runner-up.

    Continuous dimensions (more than 6 distinct values) are cut into thirds of their values. None
    with fewer than 2 values (or groups) holding trials.
    """
    pairs = [(t.params[name], target(t)) for t in trials if name in t.params and math.isfinite(target(t))]
    values = sorted({v for v, _ in pairs}, key=repr)
    if len(values) < 2:
        return None
    if len(values) > 6 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        cuts = np.quantile([float(v) for v, _ in pairs], [1 / 3, 2 / 3])
        label = ["lowest third", "middle third", "highest third"]
        groups: dict[str, list[float]] = {}
        for v, y in pairs:
            groups.setdefault(f"{label[int(np.searchsorted(cuts, float(v), side='right'))]}", []).append(y)
    else:
        groups = {}
        for v, y in pairs:
            groups.setdefault(str(v), []).append(y)
    if len(groups) < 2:
        return None
    ranked = sorted(groups.items(), key=lambda kv: -float(np.median(kv[1])))
    (best, a), (second, b) = ranked[0], ranked[1]
    return Direction(best, second, float(np.median(a) - np.median(b)), len(a), len(b))


def _conditional(done: list[FrozenTrial], space: dict[str, Any], target: Callable[[FrozenTrial], float]
                 ) -> list[Conditional]:
    names = sorted({n for t in done for n in t.params} - set(space))
    return [Conditional(n, sum(n in t.params for t in done), direction(done, n, target)) for n in names]


def compute(study: optuna.Study, *, resamples: int = RESAMPLES, seed: int = 0,
            target: Callable[[FrozenTrial], float] = _val) -> Importance:
    """fANOVA over bootstrap resamples and the dashboard's PED-ANOVA, for the completed trials of ``study``."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if math.isfinite(target(t))]
    space = optuna.search_space.intersection_search_space(done) if done else {}
    searched = [n for n, d in space.items() if not d.single()]
    needed = TRIALS_PER_DIMENSION * max(1, len(searched))
    distinct = {n: len({repr(t.params[n]) for t in done}) for n in searched}
    explored = [n for n in searched if distinct[n] >= 2]
    cond = _conditional(done, space, target)
    if len(done) < needed or not explored:
        try:  # what the dashboard shows regardless, so the report can say not to read it yet
            dash = dashboard_importance(study) if len(done) > 1 else {}
        except (ValueError, RuntimeError):
            dash = {}
        return Importance(len(done), needed, [Dimension(n, distinct[n], dashboard=dash.get(n)) for n in searched],
                          conditional=cond)
    k = 2 if len(explored) > 2 else 1
    rng = np.random.default_rng(seed)
    shares: dict[str, list[float]] = {n: [] for n in explored}
    tops: dict[str, int] = {n: 0 for n in explored}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per resample
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(resamples):
                sample = [done[j] for j in rng.integers(0, len(done), len(done))]
                try:
                    imp = _fanova(sample, explored, target, seed + i)
                except RuntimeError as exc:
                    if "zero total variance" not in str(exc):
                        raise
                    # Every trial drawn into this resample scored the same: no choice explains any
                    # variance in it (fANOVA refuses to divide by zero). A share of 0 each, no top rank.
                    imp = {}
                for n in explored:
                    shares[n].append(imp.get(n, 0.0))
                for n in sorted(explored, key=lambda n: -imp.get(n, 0.0))[:k] if imp else ():
                    tops[n] += 1
            dash = dashboard_importance(study)
    except (ValueError, RuntimeError) as exc:  # e.g. a conditional space with no common part
        return Importance(len(done), needed, [Dimension(n, distinct[n]) for n in searched], error=str(exc),
                          conditional=cond)
    finally:
        optuna.logging.set_verbosity(verbosity)
    dims = [Dimension(n, distinct[n], tuple(shares[n]), tops[n] / resamples, dash.get(n), direction(done, n, target))
            for n in explored]
    dims.sort(key=lambda d: -d.mean)
    dims += [Dimension(n, distinct[n], dashboard=dash.get(n)) for n in searched if n not in explored]
    return Importance(len(done), needed, dims, resamples, conditional=cond)


def _fanova(trials: Sequence[FrozenTrial], params: list[str], target: Callable[[FrozenTrial], float],
            seed: int) -> dict[str, float]:
    study = optuna.create_study(direction="maximize")
    study.add_trials([optuna.trial.create_trial(params={n: t.params[n] for n in params},
                                                distributions={n: t.distributions[n] for n in params},
                                                value=target(t)) for t in trials])
    out = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed),
        params=params)
    return {k: float(v) for k, v in out.items()}


def dashboard_importance(study: optuna.Study) -> dict[str, float]:
    """The importances optuna-dashboard 0.21 shows: PED-ANOVA on objective 0, negated when maximised."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
            target=lambda t: sign * t.values[0])
    return {k: float(v) for k, v in imp.items()}


def disagreements(imp: Importance) -> list[str]:
    """Dimensions where fANOVA and PED-ANOVA disagree (see :data:`DISAGREE_SHARE`)."""
    out = []
    for d in imp.dimensions:
        if not d.fanova or d.dashboard is None:
            continue
        hi, lo = max(d.mean, d.dashboard), min(d.mean, d.dashboard)
        if hi >= DISAGREE_SHARE and lo < hi / 4:
            out.append(d.name)
    return out


def _extras(imp: Importance) -> str:
    """Directions, conditional dimensions and the two measures' disagreement, in words."""
    s = ""
    dirs = [d.direction.describe(d.name) for d in imp.dimensions if d.fanova and d.direction]
    if dirs:
        s += " Which way, by median validation accuracy (observational, not a controlled comparison): " \
             + "; ".join(dirs) + "."
    if imp.conditional:
        parts = [f"{c.name} (in {c.trials} of {imp.completed} trials"
                 + (f"; within them {c.direction.describe(c.name)}" if c.direction else "") + ")"
                 for c in imp.conditional]
        s += (" Conditional, not ranked (each exists only when another choice allows it, and fANOVA needs a"
              " dimension present in every trial): " + "; ".join(parts) + ".")
    for name in disagreements(imp):
        d = next(x for x in imp.dimensions if x.name == name)
        what = ("it moves the average trial, but the best trials use its values alike" if d.mean > (d.dashboard or 0)
                else "the best trials concentrate on some of its values, though it explains little variance overall")
        s += (f" fANOVA and PED-ANOVA disagree on {name} ({d.mean:.0%} against {d.dashboard:.0%}): fANOVA measures"
              " the share of the variance of validation accuracy over all trials a choice explains, PED-ANOVA how"
              f" differently its values are spread in the top 10% of trials than in all of them; here {what}.")
    return s


def sentence(imp: Importance) -> str:
    """The plain answer, following the rules in the module docstring."""
    skipped = (f" Not explored (fewer than 2 distinct values among the completed trials, so no evidence either way):"
               f" {', '.join(imp.not_explored)}." if imp.not_explored else "")
    if imp.too_few:
        dash = (" optuna-dashboard's importance panel already draws a ranking from these trials; do not read it"
                " yet." if imp.dashboard_order else "")
        return (f"Too few trials to rank the choices ({imp.completed} completed, about {imp.needed} needed for"
                f" {imp.needed // TRIALS_PER_DIMENSION} searched dimensions): run more trials.{dash}{skipped}")
    if imp.error:
        return f"Importance could not be computed: {imp.error}.{skipped}"
    if not imp.ranked:
        return f"No searched choice was explored by the completed trials.{skipped}"
    top = "top 2" if sum(1 for d in imp.dimensions if d.explored) > 2 else "top"
    rule = (f"ranked in the {top} in at least {TOP_SHARE:.0%} of {imp.resamples} bootstrap resamples of the"
            f" {imp.completed} completed trials, with more than an equal share of the variance (fANOVA)")
    if imp.mattered:
        s = f"The choice{'s' * (len(imp.mattered) > 1)} that mattered most for validation accuracy: " \
            f"{' and '.join(imp.mattered)} ({rule})."
    else:
        s = f"No choice stands out yet: none {rule}; the ranking below is not stable."
    return s + _extras(imp) + skipped
