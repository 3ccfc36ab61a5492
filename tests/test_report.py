from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from cnnsearch.report import page as report_mod
from cnnsearch.search import runner
from cnnsearch.search import study as study_mod
from cnnsearch.model.arch import ArchSpec, summarize
from cnnsearch.cli import main

DISTS = {"conv1_filters": CategoricalDistribution([4, 8, 32]), "conv2_filters": CategoricalDistribution([8, 64]),
         "conv1_kernel": CategoricalDistribution([3, 13]),
         "dropout_dense": FloatDistribution(0.0, 0.5, step=0.25)}


def fake_trial(i: int, *, state: TrialState = TrialState.COMPLETE, baseline: bool = False) -> optuna.trial.FrozenTrial:
    """A trial as cnnsearch stores it, without training (val accuracy grows with conv2_filters)."""
    import random

    rng = random.Random(i)
    params = ({"conv1_filters": 32, "conv2_filters": 64, "conv1_kernel": 3, "dropout_dense": 0.5} if baseline else
              {"conv1_filters": rng.choice([4, 8, 32]), "conv2_filters": rng.choice([8, 64]), "conv1_kernel": 3,
               "dropout_dense": rng.choice([0.0, 0.25, 0.5])})
    spec = ArchSpec(conv_filters=(params["conv1_filters"], params["conv2_filters"]), dense_units=128)
    s = summarize(spec, (28, 28, 1), 10)
    val = 0.97 + 0.0002 * params["conv2_filters"] - 0.01 * params["dropout_dense"] + rng.random() * 0.002
    attrs = {"baseline": baseline, "spec": spec.to_dict(), "params": s.params, "flops": s.flops,
             "history": {"val_accuracy": [val - 0.01, val], "loss": [0.3, 0.2]}, "epochs_run": 2,
             "seconds": 3.0, "versions": {"tensorflow": "2.21.0"}}
    if state == TrialState.COMPLETE:
        attrs.update(val_accuracy=val, test_accuracy=val - 0.001, test_loss=0.05)
        return create_trial(state=state, params=params, distributions=DISTS, value=val, user_attrs=attrs,
                            intermediate_values={0: val - 0.01, 1: val})
    attrs["fail_reason"] = "loss became NaN or infinite at epoch 1; lower the learning rate"
    return create_trial(state=state, params=params, distributions=DISTS, user_attrs=attrs)


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    u = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", u)
    return u


def make_study(name: str, space: Path, trials: list[optuna.trial.FrozenTrial]) -> study_mod.Handle:
    h = study_mod.create(name, space)
    # The enqueued baseline is replaced by the fabricated one.
    h.study.add_trials(trials)
    return h


def trial_rows(text: str) -> int:
    """Rows of the full trial table (the top 20 first; all of them folded away when there are more)."""
    section = text.split("<section id='trials'>")[1].split("</section>")[0]
    table = section.split("id='all-trials'")[1] if "id='all-trials'" in section else section
    return len(re.findall(r"<tr(?: class=\"baseline\")?>\s*<td>", table.split("</table>")[0]))


def test_report_of_a_study_built_with_create_trial(url: str, tiny_space: Path, tmp_path: Path) -> None:
    make_study("fab", tiny_space, [fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 25)]
               + [fake_trial(99, state=TrialState.FAIL)])
    out = tmp_path / "report" / "index.html"
    path = report_mod.write("fab", out, models=False)
    text = path.read_text()
    assert trial_rows(text) == 27  # 26 fabricated + the WAITING baseline queued at create
    top = text.split("id='top-trials'")[1].split("</table>")[0]
    assert len(re.findall(r"<tr(?: class=\"baseline\")?>\s*<td>", top)) == 20  # the top 20 first, the rest folded
    assert 'class="baseline"' in text
    assert "in-study baseline" in text
    assert "99.15%" not in text  # a 2-epoch study: no number against the published figure, and no "not possible"
    assert "mattered most for validation accuracy: conv2_filters" in text  # the only strong driver
    assert "conv2_filters: best at 64" in text  # ... and which value wins
    assert "loss became NaN" in text  # the failed trial's reason
    assert "Not confirmed yet" in text
    assert "Not yet: nothing is confirmed" in text and "cnnsearch study confirm fab --top 3 --seeds 3" in text
    assert "id='effect-table'" in text and "id='parallel'" in text
    order = [text.index(f"<section id='{a}'>") for a in ("answer", "confirm", "history", "trials", "study")]
    assert order == sorted(order)  # answer, confirmation, figures, then the trial table
    assert not re.search(r"(src|href)=[\"']https?:", text)  # nothing loads from the network
    assert text.count("data:image/png;base64,") >= 5


def test_edge_cases_render_with_statements(url: str, tiny_space: Path, tmp_path: Path) -> None:
    study_mod.create("only", tiny_space)  # the baseline queued, nothing run
    text = report_mod.build("only")
    assert "no trial has completed yet" in text and "No trial has completed, so there is nothing to plot" in text
    make_study("failed", tiny_space, [fake_trial(i, state=TrialState.FAIL) for i in range(3)])
    assert "Every finished trial failed" in report_mod.build("failed")
    h = make_study("running", tiny_space, [fake_trial(0, baseline=True), fake_trial(1)])
    h.study.ask()  # pops the queued baseline: a RUNNING trial
    text = report_mod.build("running")
    assert "still running when this report was written" in text
    r = CliRunner().invoke(main, ["report", "ghost"])
    assert r.exit_code == 1 and "no study 'ghost'" in r.stderr


def test_atomic_write_keeps_the_old_report(url: str, tiny_space: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_study("atomic", tiny_space, [fake_trial(0, baseline=True), fake_trial(1)])
    out = tmp_path / "index.html"
    report_mod.write("atomic", out, models=False)
    good = out.read_text()
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "build", broken)
    with pytest.raises(RuntimeError):
        report_mod.write("atomic", out)
    assert out.read_text() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report-")] == []
    # A failure while writing the file itself: the temporary file is removed, the old report stays.
    monkeypatch.setattr(report_mod, "build", lambda *a, **k: "<html>new</html>")
    monkeypatch.setattr(report_mod.os, "replace", broken)
    with pytest.raises(RuntimeError):
        report_mod.write("atomic", out)
    assert out.read_text() == good and not list(tmp_path.glob(".report-*"))


def test_report_imports_no_tensorflow(url: str, tiny_space: Path, tmp_path: Path, tiny_npz: Path) -> None:
    make_study("notf", tiny_space, [fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 6)])
    code = ("import sys; from cnnsearch.report import page as report; report.write('notf', sys.argv[1]);"
            " assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.html")], check=True,
                   env={**os.environ, "CNNSEARCH_STORAGE": url})
    assert (tmp_path / "x.html").stat().st_size > 10_000


def test_report_of_a_trained_study_shows_filters(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("trained", tiny_space, url)
    h = study_mod.load("trained", url)
    h.study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.0})
    runner.run("trained", trials=2, url=url)
    # The worker that kept each model cached its figure arrays (issue 24): the report only reads them.
    from cnnsearch.model import figcache
    from cnnsearch.search.kept import model_file

    kept = [model_file(h, w) for w in ("best", "baseline")]
    assert all(p is not None and figcache.cache_path(p).exists() for p in kept)
    stamps = {p: figcache.cache_path(p).stat().st_mtime_ns for p in kept}
    text = report_mod.build("trained", url)
    assert {p: figcache.cache_path(p).stat().st_mtime_ns for p in kept} == stamps  # read, not rewritten
    section = text.split("<section id='model'>")[1].split("</section>")[0]
    assert "first-layer filters" in section or section.count("<img") >= 6
    assert section.count("<img") >= 7  # filters x2, three digits' maps, confusion, mistakes (per model)
    assert "trial #0" in section


def test_report_in_chromium(url: str, tiny_space: Path, tmp_path: Path) -> None:
    """The file opened from disk in a real headless Chromium: no failed request, no console error."""
    from playwright.sync_api import sync_playwright

    make_study("browser", tiny_space, [fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 12)])
    out = report_mod.write("browser", tmp_path / "index.html", models=False)
    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        rows = page.locator("section#trials table.trials tbody tr").count()
        shot = page.screenshot(full_page=True)
        images_loaded = page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        browser.close()
    assert errors == [] and failed == []
    assert all(u.startswith(("file:", "data:")) for u in requests)
    assert rows == 13  # 12 fabricated trials + the queued baseline
    assert images_loaded
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(shot)).convert("L")
    assert img.size[1] > 2000 and len(set(img.resize((64, 256)).getdata())) > 20  # not blank


def _confirm_runs(h: study_mod.Handle, gains: dict[str, list[float]]) -> None:
    """Store confirmation runs as `study confirm` does (system attributes), without training."""
    import numpy as np

    from cnnsearch.evidence import confirm

    labels = np.arange(10000) % 10  # MNIST's test-set size: the image noise of a real confirmation
    confirm._store(h.study, "confirm_labels", confirm.encode(labels))
    for config, accs in gains.items():
        for seed, acc in enumerate(accs):
            pred = labels.copy()
            pred[int(round(acc * 10000)):] += 1
            rec = {"config": config, "trial": 0 if config == "baseline" else int(config[5:]), "seed": seed,
                   "epochs": 3, "train_limit": 12000, "params": {}, "param_count": 1000, "test_accuracy": acc,
                   "test_loss": 0.1, "val_accuracy": 0.98, "seconds": 1.0, "predictions": confirm.encode(pred % 10)}
            confirm._store(h.study, f"confirm:e3-n12000:{config}:seed{seed}", rec)


def test_answer_is_on_the_first_screen_and_changes_with_confirm(url: str, tmp_path: Path) -> None:
    """Chromium at 1366x900, a 1-epoch study: the headline and the verdict table on the first screen, the trial
    table within 1366 px, and no "99.15%" anywhere (the published figure needs 20 epochs on all of MNIST)."""
    from playwright.sync_api import sync_playwright

    from conftest import TINY_SPACE

    space = tmp_path / "one-epoch.toml"
    space.write_text(TINY_SPACE.format(epochs=1, heartbeat=60))
    h = make_study("first", space, [fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 16)]
                   + [fake_trial(50 + i, state=TrialState.FAIL) for i in range(3)])
    before = report_mod.write("first", tmp_path / "before.html", models=False)
    _confirm_runs(h, {"baseline": [0.970, 0.972, 0.968], "trial5": [0.975, 0.978, 0.973],
                      "trial7": [0.971, 0.970, 0.969]})
    after = report_mod.write("first", tmp_path / "after.html", models=False)
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        for key, path in (("before", before), ("after", after)):
            page.goto(path.as_uri())
            boxes = {sel: page.locator(sel).bounding_box() for sel in ("#headline", "#verdicts", "#single-runs")
                     if page.locator(sel).count()}
            right = page.evaluate("Math.max(...Array.from(document.querySelectorAll('#top-trials th'))"
                                  ".map(th => th.getBoundingClientRect().right))")
            seen[key] = (boxes, page.locator("#answer").inner_text(), right, page.locator("body").inner_text())
        browser.close()
    for key, (boxes, _text, right, body) in seen.items():
        assert "#headline" in boxes, key
        for sel, box in boxes.items():
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, (key, sel, box)
        assert right <= 1366, (key, right)  # the trial table fits the screen: no sideways scrolling
        assert "99.15" not in body and "99.15" not in (before if key == "before" else after).read_text(), key
    (b_boxes, text_before, _, _), (a_boxes, text_after, _, _) = seen["before"], seen["after"]
    assert "#verdicts" in a_boxes and "#single-runs" in b_boxes  # single runs labelled so before any verdict
    assert " ".join(text_before.split()).startswith("The answer Not yet: nothing is confirmed")
    assert not any(w in text_before for w in ("better", "worse", "inconclusive"))
    assert "Yes: a " in text_after and "(trial #5, " in text_after  # +0.5 to +0.6 pp on each of 3 seeds
    rows = text_after.split("verdict")[1]
    assert rows.index("#5") < rows.index("#7") and "better" in rows and "inconclusive" in rows  # winner first
    assert "not possible" not in after.read_text()


def _infeasible_trial(i: int) -> optuna.trial.FrozenTrial:
    """An untrained point over a size limit, as the objective stores it: COMPLETE, constraint > 0, no accuracy."""
    params = {"conv1_filters": 32, "conv2_filters": 64, "conv1_kernel": 13, "dropout_dense": 0.25}
    return create_trial(params=params, distributions=DISTS, value=0.0,
                        user_attrs={"baseline": False, "infeasible": f"over the size limit: #{i}", "seconds": 0.1},
                        system_attrs={"constraints": [0.5]})


def test_infeasible_trials_are_not_reported_as_complete(url: str, tiny_space: Path, tmp_path: Path) -> None:
    make_study("lim", tiny_space, [fake_trial(0, baseline=True), fake_trial(1), _infeasible_trial(2),
                                   _infeasible_trial(3)])
    assert study_mod.counts(optuna.load_study(study_name="lim", storage=url)) == {
        "COMPLETE": 2, "INFEASIBLE": 2, "WAITING": 1}
    text = report_mod.build("lim", models=False)
    table = text.split("<section id='trials'>")[1].split("</section>")[0]
    assert table.count("<td>INFEASIBLE</td>") == 2 and "over the size limit: #3" in table
    assert "2 complete, 2 infeasible" in text  # the settings' trial counts
    assert "includes the 2 infeasible (untrained, over the size limit) trials" in text  # the dashboard column
    # A study whose only finished trials are infeasible: a report with statements, no crash, no best trial.
    make_study("allbad", tiny_space, [_infeasible_trial(i) for i in range(3)])
    text = report_mod.build("allbad", models=False)
    assert "no trial has completed yet" in text and "3 infeasible" in text
    # Only the baseline trained (over the limit, so never the best): the answer says so, not "nothing completed".
    base = fake_trial(0, baseline=True)
    base = create_trial(params=base.params, distributions=DISTS, value=base.value, user_attrs=base.user_attrs,
                        system_attrs={"constraints": [50.0]})
    make_study("onlybase", tiny_space, [base, _infeasible_trial(1)])
    text = report_mod.build("onlybase", models=True)
    assert "no trial within the size limit has completed yet (the in-study baseline, trial #1" in text
    assert "No completed trial within the study" in text and "size limits: no model to show" in text
    # A baseline that ended infeasible (unbuildable in a size-limited study): untrained, so no comparison row.
    bad_base = _infeasible_trial(0)
    bad_base = create_trial(params=bad_base.params, distributions=DISTS, value=0.0,
                            user_attrs={**bad_base.user_attrs, "baseline": True}, system_attrs={"constraints": [1.0]})
    make_study("badbase", tiny_space, [bad_base, fake_trial(1), fake_trial(2)])
    text = report_mod.build("badbase", models=False)
    assert "the in-study baseline has not completed" in text


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs-escape", "a b/c", "..", "café ☕"])
def test_report_folder_is_a_safe_slug_of_the_name(url: str, tiny_space: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    study_mod.create(name, tiny_space)  # names stay free text in the database
    r = CliRunner().invoke(main, ["report", name, "--no-models"])
    assert r.exit_code == 0, r.output
    written = [p for p in tmp_path.rglob("index.html")]
    assert len(written) == 1, written
    folder = written[0].parent
    assert folder.parent == work / "reports"  # inside reports/, one level down: never ../ or an absolute path
    assert re.fullmatch(r"[A-Za-z0-9._-]+", folder.name) and not folder.name.startswith(".")
    assert not Path("/tmp/abs-escape").exists()
    assert report_mod.default_out("plain-name_1") == Path("reports/plain-name_1/index.html")  # safe names unchanged
    assert report_mod.default_out("a/b") != report_mod.default_out("a_b")  # no two names share a folder


def test_report_out_into_an_unwritable_place_is_one_line(url: str, tiny_space: Path, tmp_path: Path) -> None:
    study_mod.create("blocked", tiny_space)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    r = CliRunner().invoke(main, ["report", "blocked", "--no-models", "--out", str(a_file / "sub" / "index.html")])
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("report: ")]  # minus the progress
    assert len(lines) == 1 and "plain.txt" in lines[0] and "cannot write the report" in lines[0]
    assert a_file.read_text() == "not a folder"
