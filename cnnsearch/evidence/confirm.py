"""Confirm a win: retrain the top configurations and the baseline over training seeds, then judge.

A search picks its best trial by validation accuracy at a reduced fidelity, and
the largest of many noisy numbers is biased upwards. Confirmation retrains the
top K distinct configurations and the reference model with S seeds each at one
:class:`Fidelity` (epochs, training images), stores every run's test accuracy
and test predictions on the study (resumable: a finished (fidelity,
configuration, seed) is never rerun), declares its family (the K candidates,
its first seed and its maximum seeds) before training, and records a *look*
when all runs of the requested seeds are done. Verdicts
(:mod:`cnnsearch.evidence.verdict`) count training seeds and test images,
Holm-corrected over the declared family, at the level the look spends.

More seeds after a look: only within the maximum declared before the first
look (``max_seeds``); each look spends its part of alpha (O'Brien-Fleming). A
request beyond it is refused with the way out: a new confirmation at fresh
seeds (``new=True``), whose runs were never looked at.

:func:`show` and :func:`summarize` read what is stored and never train; only
:func:`run` and :func:`train_and_store` train (and only they import TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from cnnsearch.evidence import reuse
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.evidence.store import (FAMILY_PREFIX, LABELS_KEY, PREFIX, REFERENCE_FIDELITY, Fidelity, decode,
                                      encode, families, family_key, fidelities, new_family, put, run_key, runs,
                                      stored)
from cnnsearch.evidence.summary import REFERENCE_ACCURACY, summarize
from cnnsearch.evidence.words import candidate_sentence, rank_sentence, reference_sentence, sentence
from cnnsearch.ground import data as data_mod
from cnnsearch.ground import provenance
from cnnsearch.ground.errors import ConfigError, StorageError
from cnnsearch.model.arch import ArchSpec
from cnnsearch.model.train import TrainConfig, TrainResult
from cnnsearch.search import points
from cnnsearch.search import study as study_mod

#: Training seed of seed index s: the first release's offset, so stored runs stay reusable.
SEED_OFFSET = 1000
_store = put  # the name tests and the first release used


@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: the baseline or a trial's."""

    key: str  # "baseline" or "trial<N>"
    trial: int
    params: dict[str, Any]
    spec: ArchSpec | None  # None for a model of the user's own build(trial)
    overrides: dict[str, Any]  # learning rate / batch size the trial chose
    build: Callable[[], Any] | None = None  # the user's build, bound to the trial's params (issue 23)


def candidates(handle: study_mod.Handle, top: int, build: Callable[[Any], Any] | None = None) -> list[Candidate]:
    """The baseline and the ``top`` best distinct configurations by validation accuracy.

    Distinct: differing in at least one discrete choice. Trials that differ only in a continuous
    value (a log-range learning rate) are one configuration, represented by its best trial, so
    the confirmation budget is not spent on three learning rates of one architecture.
    ``build``: the study's own ``build(trial)`` (a builder's study), replayed on each trial's
    params through ``optuna.trial.FixedTrial``; the baseline is still the space's point.
    """
    import optuna

    done = _scored(handle)
    base = next((t for t in done if t.user_attrs.get("baseline")), None)
    out: list[Candidate] = []
    base_params = points.baseline_params(handle.space)
    if base_params is None:
        raise ConfigError(f"study {handle.name!r} has no baseline ([baseline] model = \"none\" in its space file);"
                          " a confirmation judges candidates against one, so it cannot run: create the study with"
                          " [baseline] model = \"reference\" or a point of your own")
    spec, overrides = points.suggest(optuna.trial.FixedTrial(base_params), handle.space)
    out.append(Candidate("baseline", base.number if base else 0, base_params, spec, overrides))
    def discrete(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        dims = handle.space.dims
        return tuple(sorted((k, v) for k, v in params.items() if not (k in dims and dims[k].continuous)))

    seen = {discrete(base_params)}
    for t in sorted(done, key=lambda t: (-t.user_attrs["val_accuracy"], t.number)):
        key = discrete(t.params)
        if key in seen:
            continue
        seen.add(key)
        spec, overrides = points.suggest(optuna.trial.FixedTrial(t.params), handle.space)
        own = None if build is None else _bound(build, dict(t.params), handle.space)
        out.append(Candidate(f"trial{t.number}", t.number, dict(t.params), None if own else spec, overrides, own))
        if len(out) == top + 1:
            break
    return out


def _bound(build: Callable[[Any], Any], params: dict[str, Any], space: Any) -> Callable[[], Any]:
    """``build`` replayed on a finished trial's choices (called after the seed is set, as in the search).

    As in the search, the space's point is suggested first, so ``trial.params`` holds it when ``build`` reads it.
    """
    import optuna

    def replay() -> Any:
        trial = optuna.trial.FixedTrial(params)
        points.suggest(trial, space)
        return build(trial)

    return replay


def run(
    name: str,
    *,
    top: int = 3,
    seeds: int = 3,
    max_seeds: int | None = None,
    new: bool = False,
    epochs: int = REFERENCE_FIDELITY.epochs,
    train_limit: int = REFERENCE_FIDELITY.train_limit,
    data_path: str | None = None,
    url: str | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    on_plan: Callable[[Any], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    build: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Retrain the baseline and the top configurations of study ``name`` with ``seeds`` seeds, then judge.

    ``max_seeds``: the most seeds this confirmation may ever reach (default ``seeds``), declared
    before its first look; later calls may add seeds up to it, each a look at the level it spends.
    ``new``: start a new confirmation at seeds no stored run used. Every run is stored as it
    finishes; runs already stored are skipped. Returns :func:`summarize` of this confirmation.
    Progress hooks: ``on_plan`` hears the :class:`cnnsearch.evidence.estimate.Plan`, ``on_start``
    each run's label (``trial4 seed 1``), ``on_epoch`` its epochs, ``on_run`` its record.
    ``build``: the ``build(trial)`` a builder's study was searched with (required for one, refused for
    others): its models train in this process, one after another (a function of yours does not cross
    into the pool's processes).
    """
    if top < 1 or seeds < 1 or epochs < 1 or train_limit < 0 or (max_seeds is not None and max_seeds < seeds):
        raise ConfigError(f"confirm: expected --top >= 1, --seeds >= 1, --max-seeds >= --seeds, --epochs >= 1,"
                          f" --train-limit >= 0; received top={top}, seeds={seeds}, max_seeds={max_seeds},"
                          f" epochs={epochs}, train_limit={train_limit}")
    fid = Fidelity(epochs, train_limit)
    h = study_mod.load(name, url)
    _check_builder(h, build)
    attrs = stored(h.study)
    cands = candidates(h, top, build)
    if len(cands) == 1:
        raise StorageError(f"study {name!r} has no completed trial besides the baseline to confirm; run the search"
                           f" first: cnnsearch study run {name} --trials N")
    fam, seeds = _declare(name, attrs, fid, [c.key for c in cands[1:]], seeds, max_seeds, new)
    splits, n_train = _data(h, name, attrs, data_path, train_limit)
    done = {(Fidelity.of(r), r["config"], int(r["seed"])) for r in runs(attrs)}
    todo = [(s, c) for s in range(fam["first_seed"], fam["first_seed"] + seeds) for c in cands
            if (fid, c.key, s) not in done]
    if on_plan is not None:
        on_plan(_plan(h, cands, todo, splits, fid, seeds, n_train))
    put(h.study, family_key(fid, fam["id"]), fam)  # declared before any training: an interrupt keeps it
    for record in train_all(h, todo, splits, fid, on_start=on_start, on_epoch=on_epoch):
        if on_run is not None:
            on_run(record)
    looks = fam["looks"]
    if not looks or seeds > int(looks[-1]["seeds"]):
        looks.append({"seeds": seeds})
        put(h.study, family_key(fid, fam["id"]), fam)  # the look first: its verdicts are read back from storage
        judged = summarize(stored(h.study), fid, family=fam["id"])
        looks[-1]["verdicts"] = judged["verdicts"]
        put(h.study, family_key(fid, fam["id"]), fam)
    return summarize(stored(h.study), fid, family=fam["id"], search=search_scores(h))


def _check_builder(h: study_mod.Handle, build: Callable[[Any], Any] | None) -> None:
    """A builder's study needs its build function again (functions are not stored); other studies refuse one."""
    own = h.study.user_attrs.get("builder")
    if own and build is None:
        raise ConfigError(f"study {h.name!r} was searched with your own build function ({own}); expected it again to"
                          f" retrain its trials; received none. From Python: cnnsearch.confirm({h.name!r},"
                          f" build={own.split('.')[-1]}, ...) (the command line cannot call your function)")
    if build is not None and not own:
        raise ConfigError(f"study {h.name!r} was searched over its space's architectures; received build="
                          f"{getattr(build, '__qualname__', build)!r}, which would confirm other models than those"
                          " searched: confirm it without build")


def _declare(name: str, attrs: dict[str, Any], fid: Fidelity, keys: list[str], seeds: int, max_seeds: int | None,
             new: bool) -> tuple[dict[str, Any], int]:
    """The confirmation this call continues or declares, and the seeds it judges; refuses an uncorrected look."""
    fams = families(attrs, fid)
    latest = fams[-1] if fams else None
    if new or latest is None or latest["candidates"] != keys:
        used = [int(r["seed"]) for r in runs(attrs, fid)]
        first = 1 + max(used) if new and used else 0
        return new_family(attrs, fid, keys, first_seed=first, max_seeds=max_seeds or seeds,
                          alpha=verdict_mod.ALPHA), seeds
    looks, cap = latest.get("looks", []), int(latest["max_seeds"])
    seen = int(looks[-1]["seeds"]) if looks else 0
    fix = (f"start a new confirmation at fresh seeds with its maximum declared up front: cnnsearch study confirm"
           f" {name} --seeds {seeds} --max-seeds N --new")
    if max_seeds is not None and max_seeds != cap:
        if looks:
            raise ConfigError(f"confirmation {latest['id']} declared at most {cap} seeds before its first look;"
                              f" received --max-seeds {max_seeds}. A maximum changed after a look would spend its"
                              f" alpha twice; keep --max-seeds {cap}, or {fix}")
        latest = {**latest, "max_seeds": max_seeds}
        cap = max_seeds
    if seeds > cap:
        raise ConfigError(f"confirmation {latest['id']} declared at most {cap} seeds"
                          + (f" and its verdicts at {seen} seeds were seen" if looks else "")
                          + f"; received --seeds {seeds}, a look without correction. Stay within {cap} seeds,"
                          f" or {fix}")
    return latest, max(seeds, seen)


def _data(h: study_mod.Handle, name: str, attrs: dict[str, Any], data_path: str | None,
          train_limit: int) -> tuple[data_mod.Splits, int]:
    """The study's data split as confirmation trains on it; the test labels checked against earlier runs'."""
    ds = provenance.load(h.study, data_path)
    splits = data_mod.split(ds, train_limit=train_limit)
    labels = encode(splits.y_test)
    known = attrs.get(LABELS_KEY)
    if known is None:
        put(h.study, LABELS_KEY, labels)
    elif known != labels:
        raise ConfigError(f"{ds.source}: these test labels differ from the ones earlier confirmation runs of {name!r}"
                          " used; confirm with the same data (--data) so runs stay comparable")
    return splits, len(ds.x_train)


def run_config(h: study_mod.Handle, c: Candidate, fid: Fidelity, seed: int) -> TrainConfig:
    """The training settings of one (configuration, seed) run at ``fid``: the study's, with the candidate's."""
    return replace(h.training, epochs=fid.epochs, train_limit=fid.train_limit, seed=SEED_OFFSET + seed,
                   **c.overrides)


def record_of(c: Candidate, fid: Fidelity, seed: int, r: TrainResult) -> dict[str, Any]:
    """A stored run: config, trial, seed, epochs, train_limit, params, param_count, test_accuracy, test_loss,
    val_accuracy, seconds and ``predictions`` (:func:`encode`: one byte per test image)."""
    return {"config": c.key, "trial": c.trial, "seed": seed, **fid.to_dict(),
            "params": c.params, "param_count": r.params, "test_accuracy": r.test_accuracy,
            "test_loss": r.test_loss, "val_accuracy": r.val_accuracy, "seconds": round(r.seconds, 1),
            "predictions": encode(r.test_predictions)}


def train_all(h: study_mod.Handle, todo: list[tuple[int, Candidate]], splits: data_mod.Splits, fid: Fidelity, *,
              on_start: Callable[[str], None] | None = None,
              on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Store every (seed, candidate) run of ``todo`` and yield its record as it lands.

    A run another study of this storage already trained identically (the reference's, mostly) is
    copied, marked ``reused_from`` (:mod:`cnnsearch.evidence.reuse`); the rest train on both cores,
    one one-thread process each (:mod:`cnnsearch.model.pool`), or here, in order, where one process
    is all there is. This process stores every record: the children never write to the study.
    """
    from cnnsearch.model import pool

    donors = reuse.Pool(h, splits)  # issue 21: identical runs of other studies in this storage
    jobs: dict[str, tuple[int, Candidate, TrainConfig]] = {}
    own: dict[str, tuple[int, Candidate, TrainConfig]] = {}  # the user's build: in this process only
    for seed, c in todo:
        config = run_config(h, c, fid, seed)
        copied = None if c.spec is None else donors.find(
            c.spec, config, {"config": c.key, "trial": c.trial, "seed": seed, **fid.to_dict(), "params": c.params})
        if copied is None:
            (jobs if c.spec is not None else own)[f"{c.key} seed {seed}"] = (seed, c, config)
        else:
            yield _keep(h, donors, c, fid, seed, config, copied)
    workers = pool.pool_size(len(jobs))
    if workers > 1 and on_start is not None:
        on_start(f"{len(jobs)} runs on {workers} processes: {', '.join(jobs)}")
    for label, (seed, c, config) in [*own.items(), *(jobs.items() if workers == 1 else [])]:
        if on_start is not None:
            on_start(label)
        r = fit_one(c, splits, config, on_epoch)
        yield _keep(h, donors, c, fid, seed, config, record_of(c, fid, seed, r), r)
    if workers > 1:
        for done in pool.run([pool.Job(k, c.spec, cfg) for k, (_, c, cfg) in jobs.items()], splits, workers=workers,
                             keep_weights=True):
            seed, c, config = jobs[done.job.key]
            done.result.model = pool.rebuild(done.job.spec, splits, done.weights)  # to keep it, if its best seed
            yield _keep(h, donors, c, fid, seed, config, record_of(c, fid, seed, done.result), done.result)


def fit_one(c: Candidate, splits: data_mod.Splits, config: TrainConfig,
            on_epoch: Callable[[int, dict[str, float]], None] | None) -> TrainResult:
    """Train one run in this process (the sequential path), then free its model."""
    from cnnsearch.model.train import fit

    own = {"build": c.build} if c.build is not None else {}  # a space model's call stays as it was (fakes too)
    return fit(c.spec, splits, config, predict_test=True, on_epoch=on_epoch, **own)


def _keep(h: study_mod.Handle, donors: Any, c: Candidate, fid: Fidelity, seed: int, config: TrainConfig,
          record: dict[str, Any], result: TrainResult | None = None) -> dict[str, Any]:
    from cnnsearch.search import retrain

    if c.spec is not None:  # a builder's model has no spec to match another study's runs by
        donors.identify(record, c.spec, config)
    put(h.study, run_key(fid, c.key, seed), record)
    if getattr(result, "model", None) is not None:  # issue 23: the best seed's weights are kept
        retrain.keep_confirmed(h.study, h.url, f"{fid.key}:{c.key}", c.trial, seed, result)
    return record


def show(name: str, url: str | None = None, fidelity: Fidelity | None = None,
         family: int | None = None) -> dict[str, Any]:
    """:func:`summarize` of what study ``name`` has stored: reads only, never trains or loads data."""
    h = study_mod.load(name, url)
    return summarize(stored(h.study), fidelity, family=family, search=search_scores(h))


def search_scores(h: study_mod.Handle) -> tuple[Fidelity, dict[int, float]]:
    """The search's fidelity and each completed trial's validation accuracy at it, for the rank check."""
    val = {t.number: float(t.user_attrs["val_accuracy"]) for t in _scored(h)}
    return Fidelity(h.training.epochs, h.training.train_limit), val


def _scored(h: study_mod.Handle) -> list[Any]:
    """The study's completed trials that have a validation accuracy (trained, not infeasible draws)."""
    import optuna

    return [t for t in h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("val_accuracy") is not None]


def _plan(h: study_mod.Handle, cands: list[Candidate], todo: list[tuple[int, Candidate]], splits: data_mod.Splits,
          fid: Fidelity, seeds: int, n_train: int) -> Any:
    """The runs still to train and their estimated time, from the study's measured epoch times."""
    import optuna

    from cnnsearch.evidence import estimate
    from cnnsearch.model.arch import summarize as arch_summary

    if any(c.spec is None for c in cands):  # a builder's FLOPs are unknown: the plan gives no time
        return estimate.plan([], 0, len(splits.x_val), [0 for _ in todo], configs=len(cands), seeds=seeds,
                             total=seeds * len(cands), epochs=fid.epochs, train_images=len(splits.x_train))
    from cnnsearch.model import pool

    flops = {c.key: arch_summary(c.spec, splits.input_shape, splits.n_classes).flops for c in cands}
    done = h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trials = {t.number: {"epoch_seconds": study_mod.trial_attr(t, "epoch_seconds"),
                         "flops": study_mod.trial_attr(t, "flops")} for t in done}
    base = next((t.number for t in done if t.user_attrs.get("baseline")), None)  # the baseline's own trial
    own = [trials.get(base if c.key == "baseline" else c.trial) for _, c in todo]
    cut = n_train - len(splits.x_val)  # training images after the validation split
    trial_images = min(h.training.train_limit, cut) if h.training.train_limit else cut
    return estimate.plan(list(trials.values()), trial_images, len(splits.x_val), [flops[c.key] for _, c in todo],
                         configs=len(cands), seeds=seeds, total=seeds * len(cands), epochs=fid.epochs,
                         train_images=len(splits.x_train), own=own, processes=pool.pool_size(len(todo)))


__all__ = ["Candidate", "FAMILY_PREFIX", "Fidelity", "PREFIX", "REFERENCE_ACCURACY", "REFERENCE_FIDELITY",
           "candidate_sentence", "candidates", "decode", "encode", "fidelities", "rank_sentence", "reference_sentence",
           "record_of", "run", "run_config", "runs", "search_scores", "sentence", "show", "stored", "summarize",
           "train_all"]
