"""Issue 22: ablation of the winner against the baseline (tiny data, 1 epoch where it trains)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from cnnsearch.cli import main
from cnnsearch.evidence import ablate, ablate_changes, ablation_stats, confirm
from cnnsearch.search import points, runner
from cnnsearch.search import study as study_mod

REPO = Path(__file__).resolve().parents[1]

#: A tiny space with both kinds of conditional dimension: depth (conv2_* only with 2 layers) and the
#: optimizer (adam_learning_rate only for Adam). It holds the reference's values (the baseline).
SPACE = """
[study]
seed = 1
pruner = "none"
[training]
epochs = 1
batch_size = 32
[space]
conv_layers = { low = 1, high = 2 }
conv1_filters = [4, 32]
conv1_kernel = [3, 11]
conv2_filters = [8, 64]
dropout_dense = [0.0, 0.5]
optimizer = ["adadelta", "adam"]
adam_learning_rate = { low = 1e-3, high = 1e-2, log = true }
"""
#: The winner: 1 conv layer of 4 filters, no dense dropout, Adam at 0.003 (4 changes from the baseline).
WINNER = {"conv_layers": 1, "conv1_filters": 4, "conv1_kernel": 3, "dropout_dense": 0.0, "optimizer": "adam",
          "adam_learning_rate": 0.003}
#: The trained test's winner: two changes only (depth with its layer, the optimizer with its learning rate).
SMALL_WINNER = {**WINNER, "conv1_filters": 32, "dropout_dense": 0.5}


def _distribution(dim: Any) -> Any:
    if dim.kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(dim.choices))
    if dim.kind == "int":
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), step=int(dim.step or 1))
    return optuna.distributions.FloatDistribution(dim.low, dim.high, step=dim.step, log=dim.log)


def _add(h: study_mod.Handle, params: dict[str, Any], val: float, **attrs: Any) -> None:
    """A completed trial without training (Optuna's create_trial), as the logic tests need."""
    h.study.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: _distribution(h.space.dims[k]) for k in params}, value=val,
        user_attrs={"val_accuracy": val, **attrs}))


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "ablate.toml"
    path.write_text(SPACE)
    return path


def test_conditional_choices_are_grouped_into_one_change() -> None:
    base = {"conv_layers": 2, "conv1_filters": 32, "conv2_filters": 64, "conv2_kernel": 3, "optimizer": "adadelta",
            "adadelta_learning_rate": 1.0, "dropout_dense": 0.5, "padding": "valid"}
    deeper = {"conv_layers": 3, "conv1_filters": 16, "conv2_filters": 64, "conv2_kernel": 3, "conv3_filters": 96,
              "conv3_kernel": 5, "optimizer": "adam", "adam_learning_rate": 0.002, "dropout_dense": 0.5,
              "padding": "same"}
    found = {c.name: c for c in ablate_changes.changes(deeper, base)}
    assert set(found) == {"conv_layers", "conv1_filters", "optimizer", "padding"}
    # Adding a third layer comes with its filters and kernel; the optimizer with both learning rates.
    assert set(found["conv_layers"].keys) == {"conv_layers", "conv3_filters", "conv3_kernel"}
    assert found["conv_layers"].baseline == {"conv_layers": 2} and found["conv_layers"].winner["conv3_kernel"] == 5
    assert set(found["optimizer"].keys) == {"optimizer", "adam_learning_rate", "adadelta_learning_rate"}
    assert found["conv1_filters"].keys == ("conv1_filters",)
    # Same optimizer, other learning rate: the learning rate is a change of its own.
    tuned = {**base, "adadelta_learning_rate": 0.5}
    assert [(c.name, c.keys) for c in ablate_changes.changes(tuned, base)] == [
        ("adadelta_learning_rate", ("adadelta_learning_rate",))]
    # Same depth: a layer's filters are a change of their own, not part of a depth change.
    wider = {**base, "conv2_filters": 96}
    assert [c.keys for c in ablate_changes.changes(wider, base)] == [("conv2_filters",)]
    # Fewer layers: the removed layer's dimensions go with the depth change.
    shallow = {k: v for k, v in base.items() if not k.startswith("conv2")} | {"conv_layers": 1}
    assert set(ablate_changes.changes(shallow, base)[0].keys) == {"conv_layers", "conv2_filters", "conv2_kernel"}


def test_variants_are_exactly_the_winner_or_the_baseline_with_one_change(tmp_path: Path, space_file: Path) -> None:
    h = study_mod.create("v", space_file, f"sqlite:///{tmp_path / 'v.db'}")
    base = points.baseline_params(h.space)
    _add(h, WINNER, 0.9)
    t = h.study.get_trials()[-1]
    ab = ablate_changes.plan_ablation(h, t, ablate.Fidelity(1, 0), 2, (12, 12, 1), 3)
    assert {c.name for c in ab.changes} == {"conv_layers", "conv1_filters", "dropout_dense", "optimizer"}
    assert len(ab.variants) == 2 * len(ab.changes)
    for v in ab.variants:
        c = next(c for c in ab.changes if c.name == v["change"])
        start, other = (WINNER, base) if v["direction"] == "leave_one_out" else (base, WINNER)
        # Outside the change: the starting point's values; inside: the other point's (absent where inactive).
        assert {k: x for k, x in v["params"].items() if k not in c.keys} == {
            k: x for k, x in start.items() if k not in c.keys}
        assert {k: x for k, x in v["params"].items() if k in c.keys} == {k: x for k, x in other.items() if k in c.keys}
        spec, _ = ablate_changes.point(v["params"], h.space)  # every variant is a valid point of the space
        assert v["identity"] not in (ab.winner["identity"], ab.baseline["identity"])
        assert spec is not None and v["problem"] is None
    # An unbuildable variant is listed with its reason; the rest still plans.
    _add(h, {**WINNER, "conv1_kernel": 11}, 0.95)
    big = ablate_changes.plan_ablation(h, h.study.get_trials()[-1], ablate.Fidelity(1, 0), 1, (12, 12, 1), 3)
    bad = {(v["direction"], v["change"]): v["problem"] for v in big.variants if v["problem"]}
    assert ("add_one_in", "conv1_kernel") in bad and bad[("add_one_in", "conv1_kernel")].startswith("cannot be built")
    assert ("leave_one_out", "conv_layers") in bad  # 2 layers after an 11x11 kernel on 12x12 images
    assert any(v["problem"] is None for v in big.variants)


def test_bad_winners_are_one_line(tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    h = study_mod.create("b", space_file)
    # Trial 0: the queued baseline (waiting); 1: a completed copy of it, the best so far; 2: pruned.
    _add(h, points.baseline_params(h.space), 0.99, baseline=True)
    h.study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={},
                                                distributions={}, user_attrs={}))
    cases = [([], 1, "no trial better than the baseline itself"), (["--trial", "7"], 2, "received 7"),
             (["--trial", "2"], 2, "which is pruned"), (["--trial", "0"], 2, "which is waiting"),
             (["--trial", "1"], 2, "nothing to ablate")]
    monkeypatch.setenv("CNNSEARCH_DATA", str(tmp_path / "absent.npz"))  # the winner is judged before the data
    for args, code, text in cases:
        r = CliRunner().invoke(main, ["study", "ablate", "b", *args])
        assert r.exit_code == code, (args, r.output)
        assert r.stderr.count("\n") == 1 and text in r.stderr and "Traceback" not in r.stderr
    assert not [k for k in study_mod.system_attrs(h.study) if k.startswith("ablate:")]  # nothing stored


#: Test labels of the synthetic runs: 10,000 images, as MNIST's test set.
LABELS = np.zeros(10_000, dtype=np.int64)


def _records(acc: dict[str, list[float]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Stored-run records with test predictions: the first ``accuracy x 10,000`` images right (nested sets, so
    a more accurate run gets every image a less accurate one got: a verdict counting test-image noise agrees)."""
    def rec(s: int, a: float) -> dict[str, Any]:
        pred = np.where(np.arange(len(LABELS)) < round(a * len(LABELS)), LABELS, 1)
        return {"seed": s, "test_accuracy": a, "predictions": confirm.encode(pred)}

    return {(ident, s): rec(s, a) for ident, accs in acc.items() for s, a in enumerate(accs)}


def _ablation(seeds: int) -> dict[str, Any]:
    variants = [{"direction": d, "change": c, "identity": f"{d}-{c}", "param_count": 1, "problem": None}
                for c in ("a", "b") for d in ("leave_one_out", "add_one_in")]
    return {"trial": 5, "fidelity": {"epochs": 1, "train_limit": 0}, "seeds": seeds,
            "winner": {"identity": "W"}, "baseline": {"identity": "B"},
            "changes": [{"name": c, "keys": [c], "text": c} for c in ("a", "b")], "variants": variants}


def test_effects_verdicts_and_interactions_in_words() -> None:
    noise = np.array([0.0, 0.0004, -0.0003, 0.0002])
    base = 0.98 + noise
    # Additive: a adds 1 pp, b adds 0.5 pp, in either order.
    acc = {"B": base, "W": base + 0.015, "leave_one_out-a": base + 0.005, "add_one_in-a": base + 0.010,
           "leave_one_out-b": base + 0.010 + noise, "add_one_in-b": base + 0.005 - noise}
    s = ablation_stats.summarize(_ablation(4), _records({k: list(v) for k, v in acc.items()}), LABELS)
    rows = {r["name"]: r for r in s["changes"]}
    assert rows["a"]["leave_one_out"]["effect"] == pytest.approx(0.010)  # winner minus winner-without-a
    assert rows["a"]["add_one_in"]["effect"] == pytest.approx(0.010)
    assert rows["a"]["leave_one_out"]["verdict"] == "helps" and s["total"]["verdict"] == "better"
    assert s["interaction"]["add_one_in"]["interact"] is False
    assert "No interaction shown" in s["interaction"]["sentence"]
    # Synergy: each alone adds nothing; together they add 1.5 pp, and removing either loses it all.
    acc.update({"add_one_in-a": base + noise, "add_one_in-b": base - noise, "leave_one_out-a": base + noise,
                "leave_one_out-b": base - noise})
    s = ablation_stats.summarize(_ablation(4), _records({k: list(v) for k, v in acc.items()}), LABELS)
    inter = s["interaction"]
    assert inter["add_one_in"]["interact"] is True and set(inter["likeliest_pair"]) == {"a", "b"}
    assert s["interaction"]["sentence"].startswith("The choices interact") and "likeliest pair" in inter["sentence"]
    assert "By experiment" in s["mattered"] and "helps leave-one-out" in s["mattered"]
    json.dumps(s, allow_nan=False)  # strict JSON


def test_ablate_trains_reuses_resumes_and_shows(tmp_path: Path, space_file: Path, tiny_npz: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("a", space_file)
    study_mod.load("a").study.enqueue_trial(SMALL_WINNER)
    runner.run("a", trials=1)  # trial 0 (the baseline) and trial 1 (the winner), measured epoch times
    # A confirmation trains the winner and the baseline at seed 0: the ablation reuses both.
    r = CliRunner().invoke(main, ["study", "confirm", "a", "--top", "1", "--seeds", "1", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["study", "ablate", "a", "--trial", "1", "--seeds", "1", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    # 4 variants but 2 models: the winner without its depth change is the baseline with Adam, and the
    # winner without Adam is the baseline with one layer; each model trains once per seed.
    assert lines[0].startswith("ablation plan: 2 changes -> 4 configurations x 1 seed = 4 runs (2 reused, 2 new)"
                               " at 1 epoch on 216 images; about ")
    done = [ln for ln in lines if ": test_acc " in ln]
    assert len(done) == 2 and not any(" trial1 seed" in ln or " baseline seed" in ln for ln in done)
    assert done[0].startswith("[1/2] leave-one-out conv_layers seed 0") and "ETA" in done[0]
    assert "conv_layers" in r.stdout and "add-one-in" in r.stdout and "Ablation of trial 1" in r.stdout

    # A second seed, stopped by a real SIGTERM after its second finished run: exit 143, finished runs stored.
    seed1 = _seed1_runs(url)
    assert seed1 == set()
    p = subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", "study", "ablate", "a", "--trial", "1", "--seeds", "2",
                          "--epochs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        finished, lines = 0, []
        assert p.stderr is not None
        for line in p.stderr:
            lines.append(line)
            finished += ": test_acc " in line
            if finished == 2:
                p.send_signal(signal.SIGTERM)
                break
        _, rest = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    err = "".join(lines) + rest
    assert lines[0].startswith("ablation plan: 2 changes -> 4 configurations x 2 seeds = 8 runs (4 reused, 4 new)")
    assert p.returncode == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    stopped = _seed1_runs(url)
    assert 2 <= len(stopped) < 4
    # The same command resumes: only the runs not stored yet train.
    trained: list[str] = []
    plans: list[Any] = []
    s = ablate.run("a", trial=1, seeds=2, epochs=1, on_plan=plans.append,
                   on_run=lambda r: trained.append(r.get("identity") or r["config"]))
    assert plans[0].new == 4 - len(stopped) and plans[0].reused == 4 + len(stopped)
    assert not set(trained) & stopped and set(trained) | stopped == _seed1_runs(url) and len(_seed1_runs(url)) == 4
    assert s["seeds"] == 2 and s["total"]["n"] == 2
    assert all(r[d]["n"] == 2 for r in s["changes"] for d in ablation_stats.DIRECTIONS)

    # --show trains nothing and needs no data; --json is one strict JSON document.
    monkeypatch.setenv("CNNSEARCH_DATA", str(tmp_path / "missing.npz"))
    shown = CliRunner().invoke(main, ["study", "ablate", "a", "--show", "--json"])
    assert shown.exit_code == 0 and "test_acc" not in shown.stderr and "plan" not in shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["seeds"] == 2 and [c["name"] for c in doc["changes"]] == [c["name"] for c in s["changes"]]
    assert doc["changes"][0]["leave_one_out"]["n"] == 2 and doc["verdict"] == s["verdict"]
    # The confirmation still sees only its own configurations (the variants are stored apart).
    conf = CliRunner().invoke(main, ["study", "confirm", "a", "--show", "--json"])
    assert {c["config"] for c in json.loads(conf.stdout)["configs"]} == {"baseline", "trial1"}


def _seed1_runs(url: str) -> set[str]:
    """The models with a stored seed-1 run: the variants' identities, ``trial1`` and ``baseline``."""
    attrs = study_mod.system_attrs(study_mod.load("a", url).study)
    return {r.get("identity") or r["config"] for k, r in attrs.items()
            if isinstance(r, dict) and k.endswith(":seed1") and k.startswith(("ablate:run:", "confirm:"))}


def test_report_section_computes_then_draws() -> None:
    from cnnsearch.report import ablation as report_ablation

    noise = np.array([0.0, 0.0004, -0.0003, 0.0002])
    base = 0.98 + noise
    acc = {"B": base, "W": base + 0.015, "leave_one_out-a": base + 0.005, "add_one_in-a": base + 0.010,
           "leave_one_out-b": base + 0.010 + noise, "add_one_in-b": base + 0.005 - noise}
    ab = _ablation(4)
    ab["variants"][3]["problem"] = "cannot be built: feature map vanishes"  # add one in, change b
    s = ablation_stats.summarize(ab, _records({k: list(v) for k, v in acc.items()}), LABELS)
    data = report_ablation.chart_data(s)
    assert data["total"]["effect"] == pytest.approx(1.5) and data["changes"] == ["a", "b"]
    a_loo = next(r for r in data["rows"] if r["change"] == "a" and r["direction"] == "leave_one_out")
    b_loo = next(r for r in data["rows"] if r["change"] == "b" and r["direction"] == "leave_one_out")
    assert a_loo["effect"] == pytest.approx(1.0) and b_loo["low"] < b_loo["effect"] < b_loo["high"]
    b_aoi = next(r for r in data["rows"] if r["change"] == "b" and r["direction"] == "add_one_in")
    assert b_aoi["effect"] is None and b_aoi["note"] == "not run"
    text = report_ablation.section_html("x", s)
    assert text.count("<img src='data:image/png;base64,") == 1 and "not run: cannot be built" in text
    assert "By experiment" in text and "Holm-corrected" in text
    assert "cnnsearch study ablate x" in report_ablation.section_html("x", None)
    assert report_ablation.mattered_statement(s, "fANOVA says a").startswith("By experiment")
    assert report_ablation.mattered_statement(None, "fANOVA says a").startswith("Observational")


def test_default_fidelity_resumes_then_reuses_then_is_the_reference() -> None:
    run = {"config": "trial4", "seed": 0, "epochs": 5, "train_limit": 1000}
    attrs: dict[str, Any] = {"confirm:e5-n1000:trial4:seed0": run, "confirm:e2-n0:trial9:seed0": {**run, "config": "trial9",
                                                                                                 "epochs": 2, "train_limit": 0}}
    assert ablate.default_fidelity(attrs, 4) == ablate.Fidelity(5, 1000)  # the winner's confirmation runs
    assert ablate.default_fidelity(attrs, 7) == ablate.confirm_mod.REFERENCE_FIDELITY  # none of its own
    attrs["ablate:plan:e1-n0:trial4"] = {"trial": 4, "fidelity": {"epochs": 1, "train_limit": 0}, "seeds": 3}
    assert ablate.default_fidelity(attrs, 4) == ablate.Fidelity(1, 0)  # an earlier ablation: resume it
