"""Ablation: which of the winner's choices carry its gain over the baseline, by experiment.

A search's winner differs from the baseline (the reference model, trial 0) in
several choices at once. Ablation (after Fawcett & Hoos 2016) changes one of them
at a time and retrains over paired seeds:

* **leave one out**: the winner with one change reverted to the baseline's value;
* **add one in**: the baseline with one change applied.

A *change* is a set of dimensions that only make sense together (the number of
conv layers with the layers it adds, an optimizer with its own learning rate;
:mod:`cnnsearch.evidence.ablate_changes`).

Runs are stored on the study like confirmation runs (same record, same seeds
0..K-1 trained with seed 1000 + s): the winner's and the baseline's as
confirmation runs (``confirm:<fidelity>:trial<N>|baseline:seed<s>``), each
variant under ``ablate:run:<fidelity>:<identity>:seed<s>``, where the identity
is a hash of the model and training it builds, so a finished identical run
(from a confirmation, or a variant equal to another) is never trained again.
The ablation itself (changes, variants, seeds) is stored under
``ablate:plan:<fidelity>:trial<N>`` before any training, so ``--show`` and the
report read it without data. Statistics: :mod:`cnnsearch.evidence.ablation_stats`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from cnnsearch.evidence import ablation_stats
from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence.ablate_changes import (PLAN_PREFIX, Ablation, Change, changes, check_differs, identity,
                                               plan_ablation, point, winner_trial)
from cnnsearch.evidence.confirm import Fidelity
from cnnsearch.ground.errors import ConfigError
from cnnsearch.search import study as study_mod

#: Study system-attribute prefix of one variant run (``ablate:run:<fidelity>:<identity>:seed<s>``).
RUN_PREFIX = "ablate:run:"
#: Training seed of stored seed s: confirmation's rule, so its runs pair with the ablation's.
SEED_OFFSET = 1000


def stored(study: Any) -> dict[str, Any]:
    """Every run a study holds that an ablation may reuse (confirmation's and ablation's), and the plans."""
    attrs = study_mod.system_attrs(study)
    return {k: v for k, v in attrs.items()
            if k.startswith(("ablate:", confirm_mod.PREFIX)) or k == "confirm_labels"}


def run_index(attrs: dict[str, Any], fid: Fidelity, space: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """Finished runs at ``fid`` by (identity, seed): ablation runs, and confirmation runs by their params."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in confirm_mod.runs(attrs, fid):
        try:
            ident = identity(*point(r["params"], space))
        except Exception:  # a run of another space version: it cannot be matched, so it is not reused
            continue
        out.setdefault((ident, int(r["seed"])), r)
    for k, r in attrs.items():
        if k.startswith(RUN_PREFIX) and isinstance(r, dict) and Fidelity.of(r) == fid:
            out.setdefault((r["identity"], int(r["seed"])), r)
    return out


def todo(ab: Ablation, done: dict[tuple[str, int], Any]) -> tuple[list[dict[str, Any]], int]:
    """The distinct (point, seed) runs still to train, winner and baseline first, and how many are reused."""
    points_ = [{**ab.winner, "role": f"trial{ab.trial}"}, {**ab.baseline, "role": "baseline"}]
    points_ += [{**v, "role": "variant"} for v in ab.variants if v["problem"] is None]
    seen: set[tuple[str, int]] = set()
    out, reused = [], 0
    for seed in range(ab.seeds):
        for p in points_:
            key = (p["identity"], seed)
            if key in seen:
                continue
            seen.add(key)
            if key in done:
                reused += 1
            else:
                out.append({**p, "seed": seed})
    return out, reused


def store_key(ab: Ablation, job: dict[str, Any]) -> tuple[str, str]:
    """Where a run is stored and its ``config``: the winner and baseline as confirmation runs (they serve both)."""
    if job["role"] == "variant":
        return f"{RUN_PREFIX}{ab.fidelity.key}:{job['identity']}:seed{job['seed']}", f"ablate:{job['identity']}"
    return f"{confirm_mod.PREFIX}{ab.fidelity.key}:{job['role']}:seed{job['seed']}", job["role"]


def train_run(h: study_mod.Handle, ab: Ablation, job: dict[str, Any], splits: Any,
              callbacks: list[Any], on_epoch: Callable[[int, dict[str, float]], None] | None) -> dict[str, Any]:
    """Train one (point, seed) at the ablation's fidelity and store its record as a confirmation run's.

    The one place ablation trains: the record (fields, seed rule, predictions) is confirmation's, so either
    command reuses the other's runs. Switch point: when confirmation publishes its per-run function, call it here.
    """
    from cnnsearch.model.train import fit

    spec, overrides = point(job["params"], h.space)
    fid = ab.fidelity
    config = replace(h.training, epochs=fid.epochs, train_limit=fid.train_limit, seed=SEED_OFFSET + job["seed"],
                     **overrides)
    r = fit(spec, splits, config, predict_test=True, callbacks=callbacks, on_epoch=on_epoch)
    key, label = store_key(ab, job)
    base = study_mod.baseline_trial(h.study) if job["role"] == "baseline" else None
    trial = ab.trial if job["role"] != "baseline" else base.number if base is not None else 0  # as confirm's
    record = {"config": label, "trial": trial, "seed": job["seed"], **fid.to_dict(), "params": job["params"],
              "param_count": r.params, "test_accuracy": r.test_accuracy, "test_loss": r.test_loss,
              "val_accuracy": r.val_accuracy, "seconds": round(r.seconds, 1),
              "predictions": confirm_mod.encode(r.test_predictions)}
    if job["role"] == "variant":
        record["identity"] = job["identity"]
    study_mod.set_system_attr(h.study, key, record)
    return record


def summarize(ab: dict[str, Any], attrs: dict[str, Any], space: Any) -> dict[str, Any]:
    """The stored ablation ``ab`` (its :meth:`Ablation.to_dict`) judged from the stored runs."""
    fid = Fidelity(**ab["fidelity"])
    labels = confirm_mod.decode(attrs["confirm_labels"]) if attrs.get("confirm_labels") else None
    return ablation_stats.summarize(ab, run_index(attrs, fid, space), labels)


@dataclass(frozen=True)
class Plan:
    """What an ablation will train, what it reuses, and how long that should take here."""

    changes: int
    unbuildable: list[str]  # "<change> (<direction>): <problem>"
    configs: int  # distinct models trained or reused: winner, baseline, buildable variants
    seeds: int
    runs: int  # configs x seeds
    reused: int
    new: int
    fidelity: Fidelity
    train_images: int
    seconds: float | None  # None: no measured epoch time to scale from
    speed_trials: int  # finished trials the speed rests on

    def text(self) -> str:
        """``ablation plan: 4 changes -> 10 configurations x 3 seeds = 30 runs (6 reused, 24 new) ...``."""
        from cnnsearch.ground.progress import duration

        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        s = (f"ablation plan: {n(self.changes, 'change')} -> {n(self.configs, 'configuration')} x"
             f" {n(self.seeds, 'seed')} = {n(self.runs, 'run')} ({self.reused} reused, {self.new} new) at"
             f" {n(self.fidelity.epochs, 'epoch')} on {self.train_images:,} images")
        if not self.new:
            s += "; nothing to train"
        elif self.seconds is None:
            s += "; no time estimate (no trial of this study has measured epoch times)"
        else:
            s += (f"; about {duration(self.seconds)} at this machine's measured speed (median epoch time of"
                  f" {n(self.speed_trials, 'finished trial')}, scaled by images and FLOPs)")
        if self.unbuildable:
            s += f"; not run: {'; '.join(self.unbuildable)}"
        return s


def make_plan(h: study_mod.Handle, ab: Ablation, jobs: list[dict[str, Any]], reused: int, splits: Any,
              n_train: int) -> Plan:
    """The plan line's numbers; the time from the study's measured epoch times (:mod:`estimate`)."""
    import optuna

    from cnnsearch.evidence import estimate

    trials = [{"epoch_seconds": study_mod.trial_attr(t, "epoch_seconds"), "flops": study_mod.trial_attr(t, "flops")}
              for t in h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    cut = n_train - len(splits.x_val)  # training images after the validation split
    trial_images = min(h.training.train_limit, cut) if h.training.train_limit else cut
    from cnnsearch.model import pool

    p = estimate.plan(trials, trial_images, len(splits.x_val), [int(j["flops"]) for j in jobs], configs=0,
                      seeds=ab.seeds, epochs=ab.fidelity.epochs, train_images=len(splits.x_train),
                      processes=pool.pool_size(len(jobs)))
    configs = len({ab.winner["identity"], ab.baseline["identity"],
                   *[v["identity"] for v in ab.variants if v["problem"] is None]})
    bad = [f"{v['change']} ({v['direction'].replace('_', '-')}): {v['problem']}" for v in ab.variants if v["problem"]]
    return Plan(len(ab.changes), bad, configs, ab.seeds, configs * ab.seeds, reused, len(jobs), ab.fidelity,
                len(splits.x_train), p.seconds, p.speed.trials if p.speed else 0)


def _check_labels(study: Any, attrs: dict[str, Any], labels: str, source: str, name: str) -> None:
    # Confirmation's rule: every stored run of a study was tested on the same images, so runs pair.
    known = attrs.get("confirm_labels")
    if known is None:
        study_mod.set_system_attr(study, "confirm_labels", labels)
    elif known != labels:
        raise ConfigError(f"{source}: these test labels differ from the ones earlier runs of {name!r} used;"
                          " ablate with the same data (--data) so runs stay comparable")


def default_fidelity(attrs: dict[str, Any], trial: int) -> Fidelity:
    """The fidelity of an earlier ablation of ``trial`` (so the same command resumes it), else the one with
    the most confirmation runs of ``trial`` (they are reused), else the reference's."""
    plans = [v for k, v in attrs.items() if k.startswith(PLAN_PREFIX) and isinstance(v, dict) and v["trial"] == trial]
    if plans:
        return max((Fidelity(**v["fidelity"]) for v in plans), key=lambda f: (f.epochs, f.train_limit == 0, f))
    counts: dict[Fidelity, int] = {}
    for r in confirm_mod.runs(attrs):
        if r.get("config") == f"trial{trial}":
            counts[Fidelity.of(r)] = counts.get(Fidelity.of(r), 0) + 1
    return max(counts, key=lambda f: (counts[f], f)) if counts else confirm_mod.REFERENCE_FIDELITY


def run(name: str, *, trial: int | None = None, seeds: int = 3, epochs: int | None = None,
        train_limit: int | None = None, data_path: str | None = None, url: str | None = None,
        on_plan: Callable[[Plan], None] | None = None, on_start: Callable[[str], None] | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Ablate the winner of study ``name`` (trial ``trial``, else the best) against its baseline.

    Trains every (point, seed) not stored yet, storing each as it finishes (an interrupted ablation
    resumes where it stopped), then returns :func:`summarize`. ``epochs``/``train_limit`` None: the
    fidelity of the winner's confirmation runs, else the reference's. Ctrl-C, SIGTERM and SIGHUP stop
    it between training batches (:mod:`cnnsearch.ground.interrupt`); finished runs stay stored.
    """
    if seeds < 1 or (epochs is not None and epochs < 1) or (train_limit is not None and train_limit < 0):
        raise ConfigError(f"ablate: expected --seeds >= 1, --epochs >= 1, --train-limit >= 0; received seeds={seeds},"
                          f" epochs={epochs}, train_limit={train_limit}")
    from cnnsearch.ground import data as data_mod
    from cnnsearch.ground import interrupt, provenance

    h = study_mod.load(name, url)
    t = winner_trial(h, trial)
    check_differs(h, t)
    attrs = stored(h.study)
    fid = default_fidelity(attrs, t.number)
    fid = Fidelity(fid.epochs if epochs is None else epochs, fid.train_limit if train_limit is None else train_limit)
    ds = provenance.load(h.study, data_path)
    splits = data_mod.split(ds, train_limit=fid.train_limit)
    _check_labels(h.study, attrs, confirm_mod.encode(splits.y_test), ds.source, name)
    ab = plan_ablation(h, t, fid, seeds, splits.input_shape, splits.n_classes)
    earlier = attrs.get(ab.key)
    stored_ab = ab if earlier is None or earlier["seeds"] <= seeds else replace(ab, seeds=earlier["seeds"])
    study_mod.set_system_attr(h.study, ab.key, stored_ab.to_dict())  # --show reads it, even if interrupted
    jobs, reused = todo(ab, run_index(attrs, fid, h.space))
    if on_plan is not None:
        on_plan(make_plan(h, ab, jobs, reused, splits, len(ds.x_train)))
    with interrupt.handled():
        for job in jobs:
            interrupt.check()
            if on_start is not None:
                on_start(f"{job['role'] if job['role'] != 'variant' else _label(ab, job)} seed {job['seed']}")
            record = train_run(h, ab, job, splits, [interrupt.keras_callback()], on_epoch)
            if on_run is not None:
                on_run(record)
    return summarize(ab.to_dict(), stored(h.study), h.space)


def _label(ab: Ablation, job: dict[str, Any]) -> str:
    """A variant run's label: ``leave-one-out optimizer`` (the first variant with that identity)."""
    v = next(v for v in ab.variants if v["identity"] == job["identity"])
    return f"{v['direction'].replace('_', '-')} {v['change']}"


def show(name: str, url: str | None = None, trial: int | None = None,
         fidelity: Fidelity | None = None) -> dict[str, Any] | None:
    """The stored ablation of study ``name`` judged from its stored runs; reads only, never trains or loads data.

    Which one: of ``trial`` and at ``fidelity`` when given, else the one with the most seeds (then the
    highest fidelity). None when the study holds no ablation.
    """
    h = study_mod.load(name, url)
    attrs = stored(h.study)
    plans = [v for k, v in attrs.items() if k.startswith(PLAN_PREFIX) and isinstance(v, dict)
             and (trial is None or v["trial"] == trial)
             and (fidelity is None or Fidelity(**v["fidelity"]) == fidelity)]
    if not plans:
        return None
    ab = max(plans, key=lambda v: (v["seeds"], Fidelity(**v["fidelity"]), v["trial"]))
    return summarize(ab, attrs, h.space)


__all__ = ["Ablation", "Change", "PLAN_PREFIX", "Plan", "RUN_PREFIX", "changes", "default_fidelity", "make_plan",
           "run", "run_index", "show", "store_key", "stored", "summarize", "todo", "train_run"]
