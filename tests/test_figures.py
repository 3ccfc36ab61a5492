"""Figures that do not mislead: checked on the drawn matplotlib objects (no training)."""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pytest
from matplotlib.colors import to_hex
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from cnnsearch.model import viz

#: The report's model column at a 1366 px screen (two columns in a 1300 px page, 16 px apart).
COLUMN_PX = 642


def _smallest_text_px(fig: object, displayed_px: float) -> float:
    """Height in screen pixels of the smallest text on ``fig`` when shown ``displayed_px`` wide."""
    natural = fig.get_figwidth() * viz.DPI  # type: ignore[attr-defined]
    scale = min(1.0, displayed_px / natural)
    found = fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))  # type: ignore[attr-defined]
    texts = [t for t in found if t.get_text()]
    return min(t.get_fontsize() for t in texts) * viz.DPI / 72 * scale


def test_model_figure_labels_are_at_least_9_px_in_the_report_column() -> None:
    rng = np.random.default_rng(0)
    labels = [f"#{i}: 7→1 (99%)" for i in range(16)]
    figs = [viz.draw_mistakes(rng.random((16, 28, 28)), labels, title="mistakes"),
            viz.draw_digit_maps(rng.random((28, 28)), rng.random((26, 26, 32)), rng.random((11, 11, 64)), title="m"),
            viz.draw_filters(rng.random((32, 3, 3)), "filters"),
            viz.draw_confusion(rng.integers(0, 1000, (10, 10)), title="confusion")]
    for fig in figs:
        assert fig.get_figwidth() * viz.DPI <= COLUMN_PX  # shown at natural size, not shrunk
        assert _smallest_text_px(fig, COLUMN_PX) >= 9


def test_zoom_marks_the_points_it_drops() -> None:
    nums = list(range(12))
    vals = [0.98 + 0.001 * i for i in range(11)] + [0.31]  # one diverged trial far below
    fig = viz.draw_history(nums, vals, list(np.maximum.accumulate(vals)), 0.98, 0.9915)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] > 0.31  # the view is zoomed past it ...
    marks = [c for c in ax.collections if c.get_label() == "1 below the view"]
    assert len(marks) == 1 and marks[0].get_offsets()[0][0] == 11  # ... and it is marked where it is
    assert any("1 trial below this view" in t.get_text() for t in ax.texts)


def test_pareto_ticks_are_plain_counts() -> None:
    fig = viz.draw_pareto([20_000, 150_000, 1_200_000], [0.97, 0.98, 0.985], [0, 1, 2], (1_200_000, 0.98), 0.9915)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(lab.endswith(("k", "M")) for lab in labels), labels
    assert not any("10^" in lab or "$" in lab for lab in labels)


def test_learning_curves_never_reuse_the_baseline_colour_and_legend_is_outside() -> None:
    curves = {"baseline (#0)": [0.97, 0.98]} | {f"trial {i}": [0.96 + 0.001 * i, 0.98] for i in range(1, 12)}
    fig = viz.draw_learning_curves(curves, "baseline (#0)")
    ax = fig.axes[0]
    orange = to_hex("tab:orange")
    colours = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}
    assert colours["baseline (#0)"] == orange
    assert all(c != orange for k, c in colours.items() if k != "baseline (#0)")
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the plot: covers no point


def test_slice_uses_a_categorical_axis_and_marks_the_baseline() -> None:
    dists = {"pool": CategoricalDistribution(["max", "avg"]), "dropout": FloatDistribution(0.0, 0.5)}
    study = optuna.create_study(direction="maximize")
    for i, (pool, d) in enumerate([("max", 0.1), ("avg", 0.2), ("max", 0.3), ("avg", 0.4)]):
        v = 0.98 + 0.001 * i
        study.add_trial(create_trial(params={"pool": pool, "dropout": d}, distributions=dists, value=v,
                                     user_attrs={"val_accuracy": v}))
    fig = viz.draw_slice(study, "pool", "max", 0.981)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "'max'" in ticks and "'avg'" in ticks
    star = next(c for c in ax.collections if c.get_label() == "in-study baseline")
    assert star.get_offsets()[0][1] == 0.981
    assert not any(c.get_label() == "Infeasible Trial" for c in ax.collections)
    import matplotlib

    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's ggplot style did not leak out


def test_slice_marks_a_trial_below_its_view() -> None:
    dists = {"dropout": FloatDistribution(0.0, 0.5)}
    study = optuna.create_study(direction="maximize")
    for i in range(11):
        v = 0.98 + 0.001 * i if i < 10 else 0.2  # one diverged trial
        study.add_trial(create_trial(params={"dropout": 0.04 * i}, distributions=dists, value=v,
                                     user_attrs={"val_accuracy": v}))
    ax = viz.draw_slice(study, "dropout", 0.2, 0.985).axes[0]
    assert ax.get_ylim()[0] > 0.2
    assert any(c.get_label() == "1 below the view" for c in ax.collections)


def test_slice_leaves_untrained_trials_out_without_a_log_line_each(caplog: pytest.LogCaptureFixture) -> None:
    # A size-limited study's infeasible draws are COMPLETE with no val_accuracy: a real 252-trial
    # study printed 120 "omitted in visualization" lines (8 such trials x 15 parameters) per report.
    dists = {"dropout": FloatDistribution(0.0, 0.5)}
    study = optuna.create_study(direction="maximize")
    for i in range(4):
        attrs = {"val_accuracy": 0.98 + 0.001 * i} if i % 2 else {"infeasible": "over the size limit"}
        study.add_trial(create_trial(params={"dropout": 0.1 * i}, distributions=dists, value=0.5,
                                     user_attrs=attrs))
    before = optuna.logging.get_verbosity()
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            fig = viz.draw_slice(study, "dropout", 0.2, 0.985)
    finally:
        optuna.logging.disable_propagation()
    assert not [r for r in caplog.records if "omitted" in r.getMessage()]
    assert len(fig.axes[0].collections[0].get_offsets()) == 2  # only the trained trials are drawn
    assert optuna.logging.get_verbosity() == before  # restored


def test_model_mosaics_are_sharp_pngs_and_the_confusion_matrix_is_text() -> None:
    """Pillow mosaics keep every value a whole block of pixels (grey and RGB); the confusion table shows each count."""
    import base64
    import io

    from PIL import Image

    from cnnsearch.report import modelfig

    rng = np.random.default_rng(0)
    grey = modelfig.mosaic(rng.random((16, 3, 3)), 8)  # 2 rows of 8, gutters NaN
    im = Image.open(io.BytesIO(base64.b64decode(modelfig.png_uri(grey).split(",", 1)[1])))
    scale = round(modelfig.MOSAIC_PIXELS / grey.shape[1])
    assert im.size == (grey.shape[1] * scale, grey.shape[0] * scale) and im.mode == "L"
    px = np.asarray(im)
    assert px[3 * scale, 0] == 255  # a gutter (NaN) is white
    assert len(np.unique(px[:scale, :scale])) == 1  # one value, one uniform block: no resampling blur
    rgb = modelfig.mosaic(rng.random((8, 3, 3, 3)), 8)
    assert Image.open(io.BytesIO(base64.b64decode(modelfig.png_uri(rgb).split(",", 1)[1]))).mode == "RGB"
    matrix = np.array([[5, 0], [0, 0]])
    table = modelfig.confusion_html(matrix, ["cat", "dog"], title="t")
    assert table.count("<td") == 4 and table.count(">0</td>") == 3 and ">5</td>" in table
    assert "<th>cat</th>" in table and "<th>dog</th>" in table
    assert "no wrong predictions" in modelfig.mistakes_html(np.zeros((0, 4, 4)), [], title="m", alt="a")
