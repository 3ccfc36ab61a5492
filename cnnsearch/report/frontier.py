"""The frontier figure (issue 21 item 5): confirmed test accuracy against parameters, every study of a storage.

Compute, then draw: :func:`compute` reads every study's stored confirmation runs
(never trains, never loads data) and returns plain points; :func:`draw` makes the
matplotlib figure; :func:`html` returns the figure, its table and its caption as
one HTML fragment for the report page and README.

Three series, never mixed: the re-trained reference (one point per distinct set of
runs: studies that reused the same runs share it), every confirmed candidate of
every study (mean test accuracy over its seeds with a 95% interval), and the
published hand-built small MNIST CNNs, whose protocol differs and is named on the
figure: one seed, best epoch, mostly chosen on the test set.
"""

from __future__ import annotations

import html as html_mod
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.ground.errors import ConfigError
from cnnsearch.model.arch import REFERENCE

#: A committed confirmation (``study confirm --json`` or ``reports/NAME/confirm.json``), for studies whose
#: storage is elsewhere: one path, or a sequence of them.
Files = Sequence["str | os.PathLike[str]"]

#: The protocol of the published points, as the figure and table name it.
PUBLISHED_PROTOCOL = "one seed, best epoch"


@dataclass(frozen=True)
class Published:
    """A published hand-built small MNIST CNN figure (or range of them), as issue 21 summarizes them."""

    label: str
    params: tuple[int, int]  # parameter count, or its range (low, high)
    accuracy: tuple[float, float]  # test accuracy, or its range (low, high): ranges, not intervals
    epochs: int


#: Issue 21's summary of widely circulated hand-built small MNIST CNNs (one seed, best epoch, mostly chosen on
#: the test set: worth about 0.1-0.3 pp less as a final-epoch seed mean). Their parameter counts are PyTorch's
#: (trainable only); cnnsearch counts as Keras does, batch norm's moving statistics included.
PUBLISHED = (
    Published("hand-built, 6,000-8,000 params, 15 epochs", (6_000, 8_000), (0.9940, 0.9954), 15),
    Published("hand-built, 9,074 params, 20 epochs", (9_074, 9_074), (0.9941, 0.9941), 20),
    Published("hand-built, 13,500-15,800 params, 20 epochs", (13_500, 15_800), (0.9950, 0.9959), 20),
)


@dataclass(frozen=True)
class Point:
    """One confirmed configuration: its parameters and mean test accuracy over seeds, with a 95% interval."""

    study: str  # the studies whose stored runs these are (several when the runs were reused)
    config: str  # "baseline" (the re-trained reference) or "trial<N>"
    params: int
    mean: float
    ci95: tuple[float | None, float | None]  # the seeds' t-interval (None with one seed)
    seeds: int
    verdict: str | None  # against the in-study baseline: better | worse | inconclusive (None: the baseline)


@dataclass
class FrontierData:
    """Everything the figure shows, as plain data."""

    fidelity: dict[str, int]  # the confirmation fidelity of every point
    reference: list[Point] = field(default_factory=list)
    candidates: list[Point] = field(default_factory=list)
    published: tuple[Published, ...] = PUBLISHED
    unconfirmed: list[str] = field(default_factory=list)  # studies with no runs at this fidelity

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def interval(accuracies: list[float]) -> tuple[float | None, float | None]:
    """95% interval of a configuration's mean test accuracy over its seeds (the one place to change it)."""
    one = verdict_mod.one_sample(accuracies, REFERENCE.test_accuracy)
    low, high = one.ci95
    return (None, None) if low != low else (low, high)  # NaN with one seed


def compute(url: str | None = None, fidelity: confirm_mod.Fidelity = confirm_mod.REFERENCE_FIDELITY,
            files: Files = ()) -> FrontierData:
    """The frontier of every study in storage ``url`` at ``fidelity`` (default: 20 epochs on all images).

    Reads only: each study's stored confirmation runs (:func:`cnnsearch.evidence.confirm.stored`), then each
    of ``files``, a committed confirmation JSON whose storage is not this one (its study is named after the
    file's folder, as ``reports/NAME/confirm.json``). A study in both counts once, from the storage.
    """
    import optuna

    from cnnsearch.records.storage import open_storage

    storage = open_storage(url)
    out = FrontierData(fidelity=fidelity.to_dict())
    refs: dict[tuple[tuple[int, float], ...], Point] = {}
    names = sorted(optuna.study.get_all_study_names(storage))
    for name in names:
        attrs = confirm_mod.stored(optuna.load_study(study_name=name, storage=storage))
        _add(out, refs, name, confirm_mod.summarize(attrs, fidelity)["configs"])
    for path in files:
        name, configs = read_file(path, fidelity)
        if name not in names:
            _add(out, refs, name, configs)
    out.reference = list(refs.values())
    return out


def read_file(path: "str | os.PathLike[str]", fidelity: confirm_mod.Fidelity) -> tuple[str, list[dict[str, Any]]]:
    """A committed confirmation JSON's study name (its folder's) and its configurations at ``fidelity``."""
    def bad(received: str) -> ConfigError:
        return ConfigError(f"--frontier-with {path}: expected the JSON of 'cnnsearch study confirm NAME --json'"
                           f" (as reports/NAME/confirm.json); received {received}; give such a file")

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise bad(f"a file that cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("a file that is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("configs"), list) or not isinstance(doc.get("fidelity"), dict):
        raise bad("JSON without 'configs' and 'fidelity'")
    name = Path(path).resolve().parent.name or str(path)
    if {k: doc["fidelity"].get(k) for k in fidelity.to_dict()} != fidelity.to_dict():
        return name, []  # another fidelity: listed as unconfirmed at this one
    need = ("config", "param_count", "mean_test_accuracy", "test_accuracies", "seeds", "seed_list")
    if not all(isinstance(c, dict) and all(k in c for k in need) for c in doc["configs"]):
        raise bad(f"a configuration without one of {', '.join(need)}")
    # A verdict without 'reason' was judged before test-image noise was counted (issue 20): not today's verdict.
    return name, [c if c.get("verdict") is None or "reason" in c
                  else {**c, "verdict": f"not decidable today (was {c['verdict']} under the older rules)"}
                  for c in doc["configs"]]


def _add(out: FrontierData, refs: dict[tuple[tuple[int, float], ...], Point], name: str,
         configs: list[dict[str, Any]]) -> None:
    """One study's confirmed configurations into ``out``; identical reference runs share one point."""
    if not configs:
        out.unconfirmed.append(name)
        return
    for row in configs:
        accs = [float(a) for a in row["test_accuracies"]]
        point = Point(name, row["config"], int(row["param_count"]), float(row["mean_test_accuracy"]),
                      interval(accs), int(row["seeds"]), row.get("verdict"))
        if row["config"] != "baseline":
            out.candidates.append(point)
            continue
        key = tuple(zip(row["seed_list"], accs))  # reused runs: the same seeds and accuracies, one point
        seen = refs.get(key)
        refs[key] = point if seen is None else replace(seen, study=f"{seen.study}, {name}")


def draw(data: FrontierData) -> Any:
    """Parameters (log axis) against confirmed mean test accuracy with its interval; published points apart."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for series, color, marker, label in ((data.reference, "tab:orange", "*", "re-trained reference"),
                                         (data.candidates, "tab:blue", "o", "confirmed candidate")):
        if not series:
            continue
        xs = [p.params for p in series]
        ys = [p.mean for p in series]
        lo = [p.mean - p.ci95[0] if p.ci95[0] is not None else 0.0 for p in series]
        hi = [p.ci95[1] - p.mean if p.ci95[1] is not None else 0.0 for p in series]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, color=color, ms=12 if marker == "*" else 6, capsize=3,
                    label=f"{label} (mean over seeds, 95% interval)")
        for p in series:
            ax.annotate(f"{p.study}: {p.config}", (p.params, p.mean), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    for i, pub in enumerate(data.published):
        x = (pub.params[0] * pub.params[1]) ** 0.5
        y = sum(pub.accuracy) / 2
        ax.errorbar([x], [y], xerr=[[x - pub.params[0]], [pub.params[1] - x]],
                    yerr=[[y - pub.accuracy[0]], [pub.accuracy[1] - y]], fmt="s", color="tab:gray", mfc="none",
                    capsize=2, label=f"published hand-built ({PUBLISHED_PROTOCOL}; bars: ranges)" if i == 0 else None)
    ax.axhline(REFERENCE.test_accuracy, color="tab:red", ls="--",
               label=f"reference's published {REFERENCE.test_accuracy:.2%} (one run)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale; Keras's count)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="major")
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: never over a point
    fid = confirm_mod.Fidelity(**data.fidelity)
    ax.set_title(f"the frontier: confirmed at {fid.describe()}")
    return fig


def html(url: str | None = None, fidelity: confirm_mod.Fidelity = confirm_mod.REFERENCE_FIDELITY,
         files: Files = ()) -> str:
    """The frontier section's HTML (figure, table, caption), or one paragraph saying why there is none.

    For the report page (``report/page.py``: one Section after the confirmation's) and README; ``files`` as
    for :func:`compute`.
    """
    from cnnsearch.model import viz

    data = compute(url, fidelity, files)
    fid = confirm_mod.Fidelity(**data.fidelity)
    if not data.reference and not data.candidates:
        return (f"<p class='missing'>No study in this storage has confirmation runs at {fid.describe()}, so there"
                f" is no frontier to draw yet: run <code>cnnsearch study confirm NAME --epochs {fid.epochs}"
                f" --train-limit {fid.train_limit}</code>.</p>")
    img = f'<img src="{viz.data_uri(draw(data))}" alt="the frontier: test accuracy against parameters">'
    rows = [(p.study, p.config, p.params, _acc(p), p.seeds, p.verdict or "-") for p in data.reference + data.candidates]
    rows += [(pub.label, PUBLISHED_PROTOCOL, _range(pub.params, "{:,}"), _range(pub.accuracy, "{:.2%}"), 1,
              "not comparable") for pub in data.published]
    head = "".join(f"<th>{h}</th>" for h in ("study", "configuration", "parameters", "test accuracy", "seeds",
                                            "vs in-study baseline"))
    body = "".join("<tr>" + "".join(f"<td>{html_mod.escape(str(v) if not isinstance(v, int) else f'{v:,}')}</td>"
                                    for v in r) + "</tr>" for r in rows)
    caption = (f"Confirmed at {fid.describe()}: mean test accuracy over the seeds with its 95% t-interval over"
               f" seeds. The published hand-built points ({PUBLISHED_PROTOCOL}, mostly chosen on the test set) are a"
               " different protocol, worth about 0.1-0.3 pp less as a final-epoch seed mean; their parameter"
               " counts are trainable parameters only.")
    if data.unconfirmed:
        caption += f" Not confirmed at this fidelity: {', '.join(data.unconfirmed)}."
    return (f"<figure>{img}<figcaption>{html_mod.escape(caption)}</figcaption></figure>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _acc(p: Point) -> str:
    ci = "" if p.ci95[0] is None else f" ({p.ci95[0]:.2%} to {p.ci95[1]:.2%})"
    return f"{p.mean:.2%}{ci}"


def _range(pair: tuple[Any, Any], fmt: str) -> str:
    return fmt.format(pair[0]) if pair[0] == pair[1] else f"{fmt.format(pair[0])} to {fmt.format(pair[1])}"
