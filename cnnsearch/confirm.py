"""Confirm a win: retrain the top configurations and the baseline over several seeds, then test.

A search picks its best trial by validation accuracy at a reduced fidelity, and
the largest of many noisy numbers is biased upwards. Confirmation retrains the
top K distinct configurations and the reference model on the full training
data, with S seeds each, records every run's test predictions on the study
(resumable: a finished (configuration, seed) is never rerun), and compares each
configuration with the baseline:

- mean and standard deviation of test accuracy over seeds;
- the paired difference from the baseline (same seed), with a 95% t-interval;
- McNemar's exact test on the test-set predictions, pooled over seeds: of the
  test images exactly one of the two models gets right, how often is it the
  candidate? Under "no difference" that is a fair coin.

A configuration is called better *beyond noise* when its mean difference is
positive and McNemar's p < 0.05. The computation needs no TensorFlow; only
:func:`run` trains.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from cnnsearch import data as data_mod
from cnnsearch import provenance
from cnnsearch import space as space_mod
from cnnsearch import study as study_mod
from cnnsearch.arch import REFERENCE, ArchSpec
from cnnsearch.errors import ConfigError, StorageError

#: Study user-attribute prefix of one confirmation run: confirm:<fidelity>:<config>:seed<s>.
PREFIX = "confirm:"
#: Significance level of the verdict.
ALPHA = 0.05


@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: the baseline or a trial's."""

    key: str  # "baseline" or "trial<N>"
    trial: int
    params: dict[str, Any]
    spec: ArchSpec
    overrides: dict[str, Any]  # learning rate / batch size the trial chose


def fidelity_key(epochs: int, train_limit: int) -> str:
    """Runs at different fidelities never mix."""
    return f"e{epochs}-n{train_limit}"


def candidates(handle: study_mod.Handle, top: int) -> list[Candidate]:
    """The baseline and the ``top`` best distinct configurations by validation accuracy."""
    import optuna

    done = [t for t in handle.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("val_accuracy") is not None]
    base = next((t for t in done if t.user_attrs.get("baseline")), None)
    out: list[Candidate] = []
    base_params = space_mod.baseline_params(handle.space)
    spec, overrides = space_mod.suggest(optuna.trial.FixedTrial(base_params), handle.space)
    out.append(Candidate("baseline", base.number if base else 0, base_params, spec, overrides))
    seen = {tuple(sorted(base_params.items()))}
    for t in sorted(done, key=lambda t: (-t.user_attrs["val_accuracy"], t.number)):
        key = tuple(sorted(t.params.items()))
        if key in seen:
            continue
        seen.add(key)
        spec, overrides = space_mod.suggest(optuna.trial.FixedTrial(t.params), handle.space)
        out.append(Candidate(f"trial{t.number}", t.number, dict(t.params), spec, overrides))
        if len(out) == top + 1:
            break
    return out


def run(
    name: str,
    *,
    top: int = 3,
    seeds: int = 3,
    epochs: int = REFERENCE.epochs,
    train_limit: int = 0,
    data_path: str | None = None,
    url: str | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    on_plan: Callable[[Any], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Retrain the baseline and the top configurations of study ``name`` with ``seeds`` seeds.

    Every run is stored on the study as it finishes; runs already stored are skipped.
    Progress hooks: ``on_plan`` hears the :class:`cnnsearch.estimate.Plan` before any training,
    ``on_start`` each run's label (``trial4 seed 1``), ``on_epoch`` its epochs, ``on_run`` its record.
    Returns :func:`summarize` of the study afterwards.
    """
    if top < 1 or seeds < 1 or epochs < 1 or train_limit < 0:
        raise ConfigError(f"confirm: expected --top >= 1, --seeds >= 1, --epochs >= 1, --train-limit >= 0; received"
                          f" top={top}, seeds={seeds}, epochs={epochs}, train_limit={train_limit}")
    from cnnsearch.train import fit

    h = study_mod.load(name, url)
    stored_runs = stored(h.study)
    cands = candidates(h, top)
    if len(cands) == 1:
        raise StorageError(f"study {name!r} has no completed trial besides the baseline to confirm; run the search"
                           f" first: cnnsearch study run {name} --trials N")
    ds = provenance.load(h.study, data_path)
    splits = data_mod.split(ds, train_limit=train_limit)
    fid = fidelity_key(epochs, train_limit)
    labels = encode(splits.y_test)
    known = stored_runs.get("confirm_labels")
    if known is None:
        _store(h.study, "confirm_labels", labels)
    elif known != labels:
        raise ConfigError(f"{ds.source}: these test labels differ from the ones earlier confirmation runs of {name!r}"
                          " used; confirm with the same data (--data) so runs stay comparable")
    if on_plan is not None:
        on_plan(_plan(h, cands, stored_runs, splits, fid, seeds, epochs, len(ds.x_train)))
    for seed in range(seeds):
        for c in cands:
            key = f"{PREFIX}{fid}:{c.key}:seed{seed}"
            if key in stored_runs:
                continue
            if on_start is not None:
                on_start(f"{c.key} seed {seed}")
            config = replace(h.training, epochs=epochs, train_limit=train_limit, seed=1000 + seed, **c.overrides)
            r = fit(c.spec, splits, config, predict_test=True, on_epoch=on_epoch)
            record = {"config": c.key, "trial": c.trial, "seed": seed, "epochs": epochs, "train_limit": train_limit,
                      "params": c.params, "param_count": r.params, "test_accuracy": r.test_accuracy,
                      "test_loss": r.test_loss, "val_accuracy": r.val_accuracy, "seconds": round(r.seconds, 1),
                      "predictions": encode(r.test_predictions)}
            _store(h.study, key, record)
            if on_run is not None:
                on_run(record)
    return summarize(stored(h.study), fid)


def _plan(h: study_mod.Handle, cands: list[Candidate], done: dict[str, Any], splits: data_mod.Splits, fid: str,
          seeds: int, epochs: int, n_train: int) -> Any:
    """The runs still to train and their estimated time, from the study's measured epoch times."""
    import optuna

    from cnnsearch import estimate
    from cnnsearch.arch import summarize

    flops = {c.key: summarize(c.spec, splits.input_shape, splits.n_classes).flops for c in cands}
    todo = [flops[c.key] for s in range(seeds) for c in cands if f"{PREFIX}{fid}:{c.key}:seed{s}" not in done]
    trials = [t.user_attrs for t in h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    cut = n_train - len(splits.x_val)  # training images after the validation split
    trial_images = min(h.training.train_limit, cut) if h.training.train_limit else cut
    return estimate.plan(trials, trial_images, len(splits.x_val), todo, configs=len(cands), seeds=seeds,
                         epochs=epochs, train_images=len(splits.x_train))


def _store(study: Any, key: str, value: Any) -> None:
    # Study *system* attributes: kept in the same storage, but out of optuna-dashboard's
    # user-attribute table, where 10,000 predictions per run would bury everything else.
    study_mod.set_system_attr(study, key, value)


def stored(study: Any) -> dict[str, Any]:
    """Everything confirmation stored on a study (runs and test labels)."""
    attrs = study_mod.system_attrs(study)
    return {k: v for k, v in attrs.items() if k.startswith(PREFIX) or k == "confirm_labels"}


def encode(pred: np.ndarray | None) -> str:
    """Class predictions as compact text (one byte per image, base64)."""
    if pred is None:
        return ""
    return base64.b64encode(np.asarray(pred, dtype=np.uint8).tobytes()).decode()


def decode(text: str) -> np.ndarray:
    """Inverse of :func:`encode`."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)


def runs(attrs: dict[str, Any], fidelity: str | None = None) -> list[dict[str, Any]]:
    """Confirmation runs among ``attrs`` (see :func:`stored`), optionally of one fidelity."""
    out = [v for k, v in attrs.items() if k.startswith(PREFIX)]
    if fidelity is not None:
        out = [r for r in out if fidelity_key(r["epochs"], r["train_limit"]) == fidelity]
    return out


def mcnemar(base_correct: np.ndarray, cand_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test: (only baseline right, only candidate right, two-sided p)."""
    from scipy.stats import binomtest

    b = int(np.sum(base_correct & ~cand_correct))
    c = int(np.sum(~base_correct & cand_correct))
    p = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5).pvalue)
    return b, c, p


def summarize(attrs: dict[str, Any], fidelity: str | None = None, labels: np.ndarray | None = None
              ) -> dict[str, Any]:
    """Per-configuration statistics against the baseline, from the stored runs.

    ``attrs`` is :func:`stored` of a study. McNemar needs the test labels:
    ``labels`` if given, else the copy :func:`run` stored (``confirm_labels``).
    """
    all_runs = runs(attrs)
    if fidelity is None and all_runs:
        # The fidelity with the most runs.
        keys = [fidelity_key(r["epochs"], r["train_limit"]) for r in all_runs]
        fidelity = max(set(keys), key=keys.count)
    rs = [r for r in all_runs if fidelity_key(r["epochs"], r["train_limit"]) == fidelity]
    if not rs:
        return {"fidelity": fidelity, "configs": [], "verdict": None}
    from scipy import stats  # only when there is something to test: it costs most of a second to import
    if labels is None and "confirm_labels" in attrs:
        labels = decode(attrs["confirm_labels"])
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rs:
        by_config.setdefault(r["config"], {})[r["seed"]] = r
    base = by_config.get("baseline", {})
    rows = []
    for key, seeds in sorted(by_config.items(), key=lambda kv: (kv[0] != "baseline", kv[0])):
        accs = np.array([seeds[s]["test_accuracy"] for s in sorted(seeds)])
        row: dict[str, Any] = {
            "config": key, "trial": next(iter(seeds.values()))["trial"], "seeds": len(seeds),
            "params": next(iter(seeds.values()))["params"], "param_count": next(iter(seeds.values()))["param_count"],
            "mean_test_accuracy": float(accs.mean()), "std_test_accuracy": float(accs.std(ddof=1)) if len(accs) > 1
            else 0.0, "test_accuracies": accs.tolist(),
        }
        paired = sorted(set(seeds) & set(base))
        if key != "baseline" and paired:
            diffs = np.array([seeds[s]["test_accuracy"] - base[s]["test_accuracy"] for s in paired])
            mean = float(diffs.mean())
            if len(diffs) > 1:
                half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
            else:
                half = float("nan")
            row.update(diff_mean=mean, diff_ci95=(mean - half, mean + half), paired_seeds=len(paired))
            if labels is not None:
                bc = [mcnemar(decode(base[s]["predictions"]) == labels, decode(seeds[s]["predictions"]) == labels)
                      for s in paired]
                b, c = sum(x[0] for x in bc), sum(x[1] for x in bc)
                p = 1.0 if b + c == 0 else float(stats.binomtest(c, b + c, 0.5).pvalue)
                row.update(mcnemar_only_baseline=b, mcnemar_only_candidate=c, mcnemar_p=p,
                           mcnemar_p_by_seed=[x[2] for x in bc])
                row["beyond_noise"] = bool(mean > 0 and p < ALPHA)
        rows.append(row)
    return {"fidelity": fidelity, "configs": rows, "verdict": verdict(rows)}


def verdict(rows: list[dict[str, Any]]) -> str:
    """One plain sentence about the best confirmed configuration."""
    cands = [r for r in rows if r["config"] != "baseline" and "diff_mean" in r]
    if not cands:
        return "No configuration has been retrained beside the baseline yet."
    best = max(cands, key=lambda r: r["diff_mean"])
    pp = 100 * best["diff_mean"]
    lo, hi = (100 * v for v in best["diff_ci95"])
    p = best.get("mcnemar_p")
    ptext = f"McNemar p = {p:.3g}" if p is not None else "McNemar not computed (no test labels)"
    n = best["paired_seeds"]
    if best.get("beyond_noise"):
        caveat = ("" if lo > 0 else f" The seed-to-seed interval still includes 0 with only {n} seeds: more seeds"
                  " would make the claim firmer.")
        return (f"{best['config']} beats the baseline beyond noise: {pp:+.2f} pp test accuracy over {n} seeds"
                f" (95% interval {lo:+.2f} to {hi:+.2f} pp; {ptext}).{caveat}")
    return (f"No configuration beats the baseline beyond noise: the best, {best['config']}, differs by {pp:+.2f} pp"
            f" over {n} seeds (95% interval {lo:+.2f} to {hi:+.2f} pp; {ptext}), which noise can explain.")
