"""Confirm a win: retrain the top configurations and the baseline over training seeds, then judge.

A search picks its best trial by validation accuracy at a reduced fidelity, and
the largest of many noisy numbers is biased upwards. Confirmation retrains the
top K distinct configurations and the reference model with S seeds each at one
:class:`Fidelity` (epochs, training images), records every run's test accuracy
and test predictions on the study (resumable: a finished (fidelity,
configuration, seed) is never rerun), and judges each configuration against
the baseline on the *paired per-seed differences* (:mod:`cnnsearch.evidence.verdict`):
``better``, ``worse`` or ``inconclusive``, Holm-corrected over the K
candidates. McNemar's test on the test images is kept per seed pair as
supporting evidence only. Only at the reference's fidelity (20 epochs, all
training images) is a candidate also compared with the reference's 99.15%.

:func:`show` and :func:`summarize` read what is stored and never train; only
:func:`run` trains (and only it imports TensorFlow).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from cnnsearch.ground import data as data_mod
from cnnsearch.search import points
from cnnsearch.ground import provenance
from cnnsearch.search import study as study_mod
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.model.arch import REFERENCE as REFERENCE_RUN
from cnnsearch.model.arch import ArchSpec
from cnnsearch.ground.errors import ConfigError, StorageError

#: Study system-attribute prefix of one confirmation run: confirm:<Fidelity.key>:<config>:seed<s>.
PREFIX = "confirm:"
#: The reference's test accuracy (20 epochs on all training images); defined in arch.REFERENCE.
REFERENCE_ACCURACY = REFERENCE_RUN.test_accuracy


@dataclass(frozen=True, order=True)
class Fidelity:
    """How long and on how much data a confirmation trains: runs at different fidelities never mix."""

    epochs: int  # full passes over the training subset
    train_limit: int = 0  # first N training images after the validation split; 0 = all

    @property
    def key(self) -> str:
        """Storage key part, e.g. ``e20-n0`` (the format of the first release, so old studies read on)."""
        return f"e{self.epochs}-n{self.train_limit}"

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Fidelity":
        """The fidelity of a stored run, read from its fields (never parsed back out of a key)."""
        return cls(int(record["epochs"]), int(record["train_limit"]))

    @property
    def at_reference(self) -> bool:
        """True at the reference's fidelity, the only one where 99.15% is a fair comparison."""
        return self == REFERENCE_FIDELITY

    def describe(self) -> str:
        """``3 epochs on 12,000 training images`` / ``20 epochs on all training images``."""
        images = "all training images" if self.train_limit == 0 else f"{self.train_limit:,} training images"
        return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} on {images}"

    def to_dict(self) -> dict[str, int]:
        """JSON-ready: ``{"epochs": 20, "train_limit": 0}``."""
        return {"epochs": self.epochs, "train_limit": self.train_limit}


#: The reference's fidelity: its epochs (20) on all 54,000 training images.
REFERENCE_FIDELITY = Fidelity(REFERENCE_RUN.epochs, 0)


@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: the baseline or a trial's."""

    key: str  # "baseline" or "trial<N>"
    trial: int
    params: dict[str, Any]
    spec: ArchSpec
    overrides: dict[str, Any]  # learning rate / batch size the trial chose


def candidates(handle: study_mod.Handle, top: int) -> list[Candidate]:
    """The baseline and the ``top`` best distinct configurations by validation accuracy.

    Distinct: differing in at least one discrete choice. Trials that differ only in a continuous
    value (a log-range learning rate) are one configuration, represented by its best trial, so
    the confirmation budget is not spent on three learning rates of one architecture.
    """
    import optuna

    done = _scored(handle)
    base = next((t for t in done if t.user_attrs.get("baseline")), None)
    out: list[Candidate] = []
    base_params = points.baseline_params(handle.space)
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
        out.append(Candidate(f"trial{t.number}", t.number, dict(t.params), spec, overrides))
        if len(out) == top + 1:
            break
    return out


def run(
    name: str,
    *,
    top: int = 3,
    seeds: int = 3,
    epochs: int = REFERENCE_FIDELITY.epochs,
    train_limit: int = REFERENCE_FIDELITY.train_limit,
    data_path: str | None = None,
    url: str | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    on_plan: Callable[[Any], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Retrain the baseline and the top configurations of study ``name`` with ``seeds`` seeds.

    Every run is stored on the study as it finishes; runs already stored (under
    any key format) are skipped. Returns :func:`summarize` at this fidelity.
    Progress hooks: ``on_plan`` hears the :class:`cnnsearch.evidence.estimate.Plan` before any training,
    ``on_start`` each run's label (``trial4 seed 1``), ``on_epoch`` its epochs, ``on_run`` its record.
    """
    if top < 1 or seeds < 1 or epochs < 1 or train_limit < 0:
        raise ConfigError(f"confirm: expected --top >= 1, --seeds >= 1, --epochs >= 1, --train-limit >= 0; received"
                          f" top={top}, seeds={seeds}, epochs={epochs}, train_limit={train_limit}")
    from cnnsearch.model.train import fit
    from cnnsearch.search import retrain

    fid = Fidelity(epochs, train_limit)
    h = study_mod.load(name, url)
    attrs = stored(h.study)
    done = {(Fidelity.of(r), r["config"], r["seed"]) for r in runs(attrs)}
    cands = candidates(h, top)
    if len(cands) == 1:
        raise StorageError(f"study {name!r} has no completed trial besides the baseline to confirm; run the search"
                           f" first: cnnsearch study run {name} --trials N")
    ds = provenance.load(h.study, data_path)
    splits = data_mod.split(ds, train_limit=train_limit)
    labels = encode(splits.y_test)
    known = attrs.get("confirm_labels")
    if known is None:
        _store(h.study, "confirm_labels", labels)
    elif known != labels:
        raise ConfigError(f"{ds.source}: these test labels differ from the ones earlier confirmation runs of {name!r}"
                          " used; confirm with the same data (--data) so runs stay comparable")
    if on_plan is not None:
        on_plan(_plan(h, cands, done, splits, fid, seeds, len(ds.x_train)))
    for seed in range(seeds):
        for c in cands:
            if (fid, c.key, seed) in done:
                continue
            if on_start is not None:
                on_start(f"{c.key} seed {seed}")
            config = replace(h.training, epochs=epochs, train_limit=train_limit, seed=1000 + seed, **c.overrides)
            r = fit(c.spec, splits, config, predict_test=True, on_epoch=on_epoch)
            record = {"config": c.key, "trial": c.trial, "seed": seed, **fid.to_dict(),
                      "params": c.params, "param_count": r.params, "test_accuracy": r.test_accuracy,
                      "test_loss": r.test_loss, "val_accuracy": r.val_accuracy, "seconds": round(r.seconds, 1),
                      "predictions": encode(r.test_predictions)}
            _store(h.study, f"{PREFIX}{fid.key}:{c.key}:seed{seed}", record)
            retrain.keep_confirmed(h.study, h.url, f"{fid.key}:{c.key}", c.trial, seed, r)  # issue 23 item 8
            if on_run is not None:
                on_run(record)
    return summarize(stored(h.study), fid, keys=[c.key for c in cands], search=search_scores(h))


def show(name: str, url: str | None = None, fidelity: Fidelity | None = None) -> dict[str, Any]:
    """:func:`summarize` of what study ``name`` has stored: reads only, never trains or loads data."""
    h = study_mod.load(name, url)
    return summarize(stored(h.study), fidelity, search=search_scores(h))


def search_scores(h: study_mod.Handle) -> tuple[Fidelity, dict[int, float]]:
    """The search's fidelity and each completed trial's validation accuracy at it, for the rank check."""
    val = {t.number: float(t.user_attrs["val_accuracy"]) for t in _scored(h)}
    return Fidelity(h.training.epochs, h.training.train_limit), val


def _scored(h: study_mod.Handle) -> list[Any]:
    """The study's completed trials that have a validation accuracy (trained, not infeasible draws)."""
    import optuna

    return [t for t in h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("val_accuracy") is not None]


def _plan(h: study_mod.Handle, cands: list[Candidate], done: set[tuple[Fidelity, str, int]], splits: data_mod.Splits,
          fid: Fidelity, seeds: int, n_train: int) -> Any:
    """The runs still to train and their estimated time, from the study's measured epoch times."""
    import optuna

    from cnnsearch.evidence import estimate
    from cnnsearch.model.arch import summarize

    flops = {c.key: summarize(c.spec, splits.input_shape, splits.n_classes).flops for c in cands}
    todo = [flops[c.key] for s in range(seeds) for c in cands if (fid, c.key, s) not in done]
    trials = [{"epoch_seconds": study_mod.trial_attr(t, "epoch_seconds"), "flops": study_mod.trial_attr(t, "flops")}
              for t in h.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    cut = n_train - len(splits.x_val)  # training images after the validation split
    trial_images = min(h.training.train_limit, cut) if h.training.train_limit else cut
    return estimate.plan(trials, trial_images, len(splits.x_val), todo, configs=len(cands), seeds=seeds,
                         epochs=fid.epochs, train_images=len(splits.x_train))


def _store(study: Any, key: str, value: Any) -> None:
    # Study *system* attributes: kept in the same storage, but out of optuna-dashboard's
    # user-attribute table, where 10,000 predictions per run would bury everything else.
    study_mod.set_system_attr(study, key, value)


def stored(study: Any) -> dict[str, Any]:
    """Everything confirmation stored on a study (runs and test labels)."""
    attrs = study_mod.system_attrs(study)
    kept = {k: v for k, v in attrs.items() if k.startswith(PREFIX) or k == "confirm_labels"}
    # Issue 23: the published 99.15% is MNIST's only; on other data it is never mentioned.
    return {**kept, "mnist": provenance.stored(study) is None or provenance.is_mnist(study)}


def encode(pred: np.ndarray | None) -> str:
    """Class predictions as compact text (one byte per image, base64)."""
    if pred is None:
        return ""
    return base64.b64encode(np.asarray(pred, dtype=np.uint8).tobytes()).decode()


def decode(text: str) -> np.ndarray:
    """Inverse of :func:`encode`."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)


def runs(attrs: dict[str, Any], fidelity: Fidelity | None = None) -> list[dict[str, Any]]:
    """Confirmation runs among ``attrs`` (see :func:`stored`), optionally of one fidelity."""
    out = [v for k, v in attrs.items() if k.startswith(PREFIX) and isinstance(v, dict)]
    return out if fidelity is None else [r for r in out if Fidelity.of(r) == fidelity]


def fidelities(attrs: dict[str, Any]) -> dict[Fidelity, int]:
    """Runs stored per fidelity."""
    out: dict[Fidelity, int] = {}
    for r in runs(attrs):
        out[Fidelity.of(r)] = out.get(Fidelity.of(r), 0) + 1
    return out


def summarize(attrs: dict[str, Any], fidelity: Fidelity | None = None, labels: np.ndarray | None = None,
              keys: list[str] | None = None, search: tuple[Fidelity, dict[int, float]] | None = None
              ) -> dict[str, Any]:
    """Per-configuration statistics and verdicts against the baseline, from the stored runs.

    Args:
        attrs: :func:`stored` of a study.
        fidelity: Which runs to judge; default: the fidelity with the most runs.
        labels: Test labels for McNemar; default: the copy :func:`run` stored (``confirm_labels``).
        keys: Only these configurations (the K candidates of one confirmation); default: all stored.
        search: :func:`search_scores`, for the fidelity check (``rank_check``); None leaves it out.

    Returns a JSON-ready dict: ``fidelity``, ``fidelities`` (all stored), ``reference`` (99.15% and
    whether it is comparable here), ``configs`` (the baseline first, then each candidate with its
    ``verdict``), ``verdicts`` ({config: word}), ``verdict`` (the plain sentence, None without runs) and
    ``rank_check`` (Spearman between search validation and confirmed test accuracy; None without ``search``).
    """
    stored_fids = fidelities(attrs)
    if fidelity is None and stored_fids:
        fidelity = max(stored_fids, key=lambda f: (stored_fids[f], f))
    rs = runs(attrs, fidelity) if fidelity is not None else []
    if keys is not None:
        rs = [r for r in rs if r["config"] in keys or r["config"] == "baseline"]
    out: dict[str, Any] = {
        "mnist": attrs.get("mnist", True),  # False: other data, where the published 99.15% is never mentioned
        "fidelity": fidelity.to_dict() if fidelity else None,
        "fidelities": [{**f.to_dict(), "runs": n} for f, n in sorted(stored_fids.items())],
        "alpha": verdict_mod.ALPHA, "min_seeds": verdict_mod.MIN_SEEDS,
        "reference": {"test_accuracy": REFERENCE_ACCURACY if attrs.get("mnist", True) else None,
                      "fidelity": REFERENCE_FIDELITY.to_dict(),
                      "comparable": bool(fidelity and fidelity.at_reference and attrs.get("mnist", True))},
        "configs": [], "verdicts": {}, "verdict": None, "rank_check": None,
    }
    if not rs:
        return out
    if labels is None and "confirm_labels" in attrs:
        labels = decode(attrs["confirm_labels"])
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rs:
        by_config.setdefault(r["config"], {})[int(r["seed"])] = r
    base = by_config.get("baseline", {})
    rows = [_row(key, seeds, base, labels) for key, seeds in
            sorted(by_config.items(), key=lambda kv: (kv[0] != "baseline", _config_order(kv[0])))]
    cands = [r for r in rows if r["config"] != "baseline" and r.get("paired_seeds")]
    for r, p in zip(cands, verdict_mod.holm([r["p"] for r in cands])):
        r["p_holm"] = p
        r["verdict"] = verdict_mod.decide(r["diff_mean"], p, r["paired_seeds"])
        r["seeds_needed_estimate"] = (verdict_mod.seeds_needed(r["diff_mean"], r["diff_sd"],
                                                               verdict_mod.ALPHA / len(cands))
                                      if r["verdict"] == "inconclusive" else None)
    if fidelity is not None and fidelity.at_reference and out["mnist"]:
        judged = [r for r in rows if r["seeds"] >= 2]
        for r, p in zip(judged, verdict_mod.holm([r["vs_reference"]["p"] for r in judged])):
            r["vs_reference"]["p_holm"] = p
            r["vs_reference"]["verdict"] = verdict_mod.decide(r["vs_reference"]["diff_mean"], p, r["seeds"])
    else:
        for r in rows:
            r["vs_reference"] = None
    out["rank_check"] = None if search is None else _rank_check(rows, *search)
    out["configs"] = _no_nan(rows)
    out["verdicts"] = {r["config"]: r["verdict"] for r in cands}
    out["verdict"] = sentence(out)
    return out


def _rank_check(rows: list[dict[str, Any]], search_fid: Fidelity, val: dict[int, float]) -> dict[str, Any]:
    # The search rests on its cheap fidelity ranking as the full one does: the confirmed configurations test it.
    pairs = [(r["config"], val[r["trial"]], r["mean_test_accuracy"]) for r in rows if r["trial"] in val]
    for r in rows:
        r["search_val_accuracy"] = val.get(r["trial"])
    check = verdict_mod.rank_agreement([p[1] for p in pairs], [p[2] for p in pairs])
    cand = [v for c, v, _ in pairs if c != "baseline"]
    out = {"search_fidelity": search_fid.to_dict(), "n": check.n, "spearman": check.rho, "p": check.p,
           "candidate_search_span": max(cand) - min(cand) if len(cand) > 1 else None}
    return _no_nan({**out, "sentence": rank_sentence(out)})


def _no_nan(obj: Any) -> Any:
    """NaN (a statistic that one seed cannot give) as None, so ``--json`` stays strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _config_order(key: str) -> tuple[int, str]:
    digits = key[len("trial"):] if key.startswith("trial") else ""
    return (int(digits), key) if digits.isdigit() else (10**9, key)


def _row(key: str, seeds: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]],
         labels: np.ndarray | None) -> dict[str, Any]:
    order = sorted(seeds)
    accs = np.array([seeds[s]["test_accuracy"] for s in order], dtype=float)
    first = seeds[order[0]]
    row: dict[str, Any] = {
        "config": key, "trial": first["trial"], "param_count": first["param_count"], "params": first["params"],
        "seeds": len(order), "seed_list": order, "test_accuracies": accs.tolist(),
        "mean_test_accuracy": float(accs.mean()),
        "sd_test_accuracy": float(accs.std(ddof=1)) if len(accs) > 1 else None,
    }
    one = verdict_mod.one_sample(accs, REFERENCE_ACCURACY)
    row["vs_reference"] = {"mean": one.mean, "diff_mean": one.mean - REFERENCE_ACCURACY, "ci95": list(one.ci95),
                           "p": one.p, "p_holm": None, "verdict": "inconclusive"}
    paired = [s for s in order if s in base]
    if key == "baseline" or not paired:
        return row
    cmp = verdict_mod.paired([seeds[s]["test_accuracy"] for s in paired], [base[s]["test_accuracy"] for s in paired])
    row.update(paired_seeds=cmp.n, diff_mean=cmp.mean, diff_sd=None if cmp.n < 2 else cmp.sd,
               diff_ci95=None if cmp.n < 2 else list(cmp.ci95), p=cmp.p, p_holm=None, verdict="inconclusive")
    if labels is not None:
        tests = [verdict_mod.mcnemar(decode(base[s]["predictions"]) == labels,
                                     decode(seeds[s]["predictions"]) == labels) for s in paired]
        row["mcnemar_by_seed"] = [{"seed": s, "only_baseline_right": b, "only_candidate_right": c, "p": p}
                                  for s, (b, c, p) in zip(paired, tests)]
        row["mcnemar_p_by_seed"] = [p for _, _, p in tests]
    return row


def _pp(v: float) -> str:
    return f"{100 * v:+.2f} pp"


def candidate_sentence(r: dict[str, Any], k: int) -> str:
    """One candidate's verdict in words: the word, the numbers, and what would resolve it."""
    n, word = r["paired_seeds"], r["verdict"]
    ci = r.get("diff_ci95")
    interval = "" if ci is None else f", 95% interval {_pp(ci[0])} to {_pp(ci[1])}"
    corrected = "" if ci is None else f", Holm-corrected p = {r['p_holm']:.2g} over {k} candidate{'s' * (k > 1)}"
    seeds = f"{n} paired seed{'s' * (n != 1)}"
    s = (f"{r['config']} vs the baseline: {word} ({_pp(r['diff_mean'])} test accuracy over {seeds}"
         f"{interval}{corrected}).")
    if word == "inconclusive":
        if n < verdict_mod.MIN_SEEDS:
            s += f" A verdict needs at least {verdict_mod.MIN_SEEDS} seeds."
        elif ci is not None and (ci[0] > 0 or ci[1] < 0):
            s += f" The interval excludes 0, but not after correcting for {k} candidates."
        need = r.get("seeds_needed_estimate")
        if need is not None:
            s += (f" Estimate: about {need} seeds would resolve a difference this size (80% power, from the"
                  " observed sd; itself noisy).")
        elif r.get("diff_sd") and r["diff_mean"] != 0:
            s += (f" Estimate: more than {verdict_mod.MAX_SEEDS_ESTIMATE} seeds; the difference is tiny against"
                  " the noise.")
    mc = r.get("mcnemar_p_by_seed")
    if mc:
        hits = sum(p < verdict_mod.ALPHA for p in mc)
        s += (f" Supporting only: McNemar's test on the test images gives p < {verdict_mod.ALPHA} in {hits} of"
              f" {len(mc)} seed pairs (it cannot see seed-to-seed noise).")
    return s


def reference_sentence(summary: dict[str, Any]) -> str:
    """The comparison with the reference's 99.15%, or why it is not possible here ('' on data other than MNIST)."""
    ref = summary["reference"]
    if summary.get("mnist") is False:
        return ""
    if not ref["comparable"]:
        fid = Fidelity(**summary["fidelity"]) if summary["fidelity"] else None
        return (f"Against the reference's {ref['test_accuracy']:.2%}: not possible"
                + (f" at {fid.describe()}" if fid else "") + f"; that needs the reference's fidelity"
                f" ({REFERENCE_FIDELITY.describe()}, --epochs {REFERENCE_FIDELITY.epochs} --train-limit 0)."
                " Only the in-study comparison with the baseline is shown.")
    parts = []
    for r in summary["configs"]:
        v = r["vs_reference"]
        if v is None:
            continue
        ci = v["ci95"]
        interval = "" if ci[0] is None else f", 95% interval {ci[0]:.4f} to {ci[1]:.4f}"
        seeds = f"{r['seeds']} seed{'s' * (r['seeds'] != 1)}"
        parts.append(f"{r['config']} {v['mean']:.4f} over {seeds}{interval}: {v['verdict']}")
    return f"Against the reference's {ref['test_accuracy']:.2%} (test accuracy): " + "; ".join(parts) + "."


def rank_sentence(check: dict[str, Any]) -> str:
    """The fidelity check in words: how well the search's ranking held at the confirmation's fidelity."""
    n, rho, search = check["n"], check["spearman"], Fidelity(**check["search_fidelity"])
    head = (f"Fidelity check: the search's validation accuracy ({search.describe()}) against the confirmed mean"
            f" test accuracy of the same {n} configurations")
    if rho is None or math.isnan(rho):
        return head + ": not computable (it needs at least 3 configurations with distinct scores)."
    s = f"{head}: Spearman's rho = {rho:+.2f} (p = {check['p']:.2g})."
    if rho < 0.5:
        s += (" Weak: the cheap fidelity did not rank these configurations as the confirmation did, so the"
              " search may have picked the wrong ones; search at a higher fidelity (more epochs or images).")
    elif rho < 0.8:
        s += " Moderate: the search's order held only in part."
    else:
        s += " Strong: the search's order held."
    span = check.get("candidate_search_span")
    if span is not None:
        s += f" The candidates' search validation accuracies lie within {100 * span:.2f} pp of each other."
    if n < 6:
        s += f" With {n} configurations this is a sanity check, not a measurement."
    return s


def sentence(summary: dict[str, Any]) -> str:
    """The plain verdict of a confirmation: one sentence per candidate, then the reference."""
    cands = [r for r in summary["configs"] if r["config"] != "baseline" and r.get("paired_seeds")]
    if not cands:
        if any(r["config"] != "baseline" for r in summary["configs"]):  # candidates ran, the baseline did not
            return ("No candidate can be judged yet: the baseline has no run at this fidelity with the same seeds"
                    " (run study confirm again with the same --epochs and --train-limit to train it).")
        return "No configuration has been retrained beside the baseline yet."
    fid = Fidelity(**summary["fidelity"])
    head = f"Confirmation at {fid.describe()}, paired by training seed: "
    return head + " ".join(candidate_sentence(r, len(cands)) for r in cands) + " " + reference_sentence(summary)
