"""One self-contained HTML report per study, answer first.

The report answers the reference's open question (how are filter counts,
kernel sizes and the rest chosen?) with the study's evidence, and never claims
a win that noise could explain: the selection used validation accuracy only,
and a win is called only by :mod:`cnnsearch.evidence.confirm`'s verdict over training
seeds. The order (issue 24): the answer (:mod:`~cnnsearch.report.answer`: the
headline sentence, the verdict table, which choices mattered), the confirmation,
the figures, the trials (the top 20, then all), the model pictures, the settings.

Compute, then render: :mod:`cnnsearch.report.data` and :mod:`cnnsearch.report.models`
gather plain numbers and arrays; the section modules (``answer``, ``tables``,
``figures``, ``modelfig``) only format and draw them. :data:`SECTIONS` is the list of
section renderers after the answer: a new section (a frontier, an ablation) is one
renderer added there from its own module. The file makes no network request; nothing
here imports TensorFlow; the file is written atomically.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from pathlib import Path
from typing import Callable, Sequence

from cnnsearch.ground.output import write_file
from cnnsearch.report.answer import ANSWER_PARTS, answer_section
from cnnsearch.report.data import ReportData, compute
from cnnsearch.report.figures import figure_sections
from cnnsearch.report.markup import Section
from cnnsearch.report.modelfig import model_section
from cnnsearch.report.models import compute_models
from cnnsearch.report.tables import confirm_section, header_section, trials_section

__all__ = ["ANSWER_PARTS", "SECTIONS", "Section", "ReportData", "build", "compute", "compute_models",
           "default_out", "render", "write"]

#: The sections after the answer, in order; each takes the ReportData and returns one Section or a list.
#: The model figures and the settings come after these (they need the models and come last).
def ablation_section(d: ReportData) -> Section:
    """Which choices carry the winner's gain, by experiment (``study ablate``), or how to find out."""
    from cnnsearch.report import ablation

    return Section(ablation.TITLE, ablation.section_html(d.name, d.ablation), ablation.ANCHOR)


def frontier_section(d: ReportData) -> Section:
    """Parameters against confirmed test accuracy for every study in this storage, beside published points."""
    from cnnsearch.report import frontier

    if not d.mnist:  # the published hand-built points and the reference's figures are MNIST's
        return Section("Frontier", "<p class='missing'>The frontier compares with published MNIST models; this"
                       " study's data are not MNIST.</p>", "frontier")
    import warnings

    with warnings.catch_warnings():  # other studies' skipped records: the confirmation section said this study's
        warnings.simplefilter("ignore")
        body = frontier.html(d.storage or None, files=d.frontier_files)
    return Section("Frontier: all studies in this storage", body, "frontier")


SECTIONS: list[Callable[[ReportData], "Section | list[Section]"]] = [confirm_section, ablation_section,
                                                                     frontier_section, figure_sections,
                                                                     trials_section]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:.6rem auto;max-width:1320px;color:#222;
line-height:1.4;padding:0 1rem}
h1{margin:.2rem 0;font-size:1.5rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}th,td{padding:.22rem .45rem;
border-bottom:1px solid #e5e5e5;text-align:right;vertical-align:top}th{background:#f6f6f6}
table.meta th,table.meta td,table.summary td:first-child,table.summary th:first-child{text-align:left}
.reason{cursor:help;border-bottom:1px dotted #999}
tr.baseline td{background:#fff3d6;font-weight:600}tr.best td{background:#eef6ee}
.missing{color:#8a5a00;background:#fff8e6;padding:.5rem;border-left:4px solid #e0a000}
.answer{font-size:1rem;background:#eef6ee;padding:.5rem .5rem .5rem 1.6rem;border-left:4px solid #2e8b57}
.headline{font-size:1.25rem;font-weight:600;margin:.4rem 0;padding:.6rem .8rem;border-left:6px solid #888;
background:#f4f4f4}.headline.yes{border-color:#2e8b57;background:#eaf6ec}.headline.no{border-color:#b33;
background:#fbeaea}.headline.not-yet{border-color:#e0a000;background:#fff8e6}.headline code{font-size:1rem}
.note{color:#555;font-size:.88rem;margin:.3rem 0}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:.5rem}
.grid img{width:49%}.cols{display:flex;gap:1rem}.col{flex:1;min-width:0}.scroll{overflow-x:auto}
nav a{margin-right:.8rem}nav{font-size:.9rem}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}
#answer h2{margin-top:.6rem}.statement{margin:.4rem 0;padding:.4rem .6rem;background:#f3f7fb;
border-left:4px solid #3a6ea5;font-size:.92rem}table.summary{font-size:.9rem}
.verdict{padding:0 .35rem;border-radius:3px}.verdict.better{background:#cdebd3}.verdict.worse{background:#f6d0d0}
.verdict.inconclusive{background:#eee}details>summary{cursor:pointer;font-weight:600;margin:.4rem 0}
figure.mosaic{margin:.6rem 0}figure.mosaic>figcaption{font-weight:600;font-size:.88rem;margin:.2rem 0}
img.mosaic{width:100%;image-rendering:pixelated}.digit img.mosaic{width:20%;display:block}
figure.mosaic div{font-size:.8rem;color:#444}.mistakes{display:grid;grid-template-columns:repeat(4,1fr);gap:.3rem}
.mistakes figure{margin:0;text-align:center;font-size:.75rem}
table.confusion{font-size:.75rem}table.confusion td,table.confusion th{text-align:center;padding:.15rem .3rem}
"""


def render(d: ReportData, sections: list[Section]) -> str:
    """The whole HTML document."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title.split(":")[0].split(",")[0].split(" (")[0])}</a>'
                   for s in sections if s.anchor)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cnnsearch report:"
             f" {html.escape(d.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>cnnsearch report: {html.escape(d.name)}</h1>",
             f"<p class='note'>{html.escape(d.settings.get('study', {}).get('description') or '')}</p>"
             if d.settings.get("study", {}).get("description") else "", f"<nav>{nav}</nav>"]
    for s in sections:
        parts.append(f"<section id='{s.anchor}'><h2>{html.escape(s.title)}</h2>{s.body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build(name: str, url: str | None = None, *, data_path: str | None = None, models: bool = True,
          on_step: Callable[[str], None] | None = None,
          frontier_files: Sequence[str | os.PathLike[str]] = ()) -> str:
    """The report of study ``name`` as an HTML string.

    Args:
        name: Study name.
        url: Storage URL (resolved as for the study commands).
        data_path: Test images for the model figures (resolved as for ``--data``; never downloaded).
        models: Include the learned-filter figures (set False for a table-and-figures-only report).
        on_step: Hears what is being computed (one short line per step), for progress.
        frontier_files: Committed confirmation JSONs of studies in other storages, added to the frontier
            (``reports/NAME/confirm.json``; see :func:`cnnsearch.report.frontier.compute`).
    """
    step = on_step or (lambda _text: None)
    d, h = compute(name, url, on_loaded=lambda: step(f"read study {name!r}; computing parameter importance"))
    d.frontier_files = tuple(frontier_files)
    step("drawing the study figures")
    sections = [answer_section(d)]
    for renderer in SECTIONS:
        got = renderer(d)
        sections.extend(got if isinstance(got, list) else [got])
    if models:
        step("drawing the best and baseline models' figures (their arrays are cached beside the weights)")
        m = compute_models(d, h, data_path)
        if m.missing:
            step(f"left out the model figures: {m.missing}")
        sections.append(model_section(m))
    sections.append(header_section(d))
    return render(d, sections)


def default_out(name: str) -> Path:
    """``reports/<slug>/index.html``: the study name made a safe folder name.

    Names stay free text in the database; only ``--out`` writes elsewhere. A
    name that is not already safe (``../x``, ``/abs``, spaces, unicode) gets
    its unsafe characters replaced and a short hash of the full name added,
    so two names never share a folder.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:80]
    if slug != name:
        slug = f"{slug or 'study'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return Path("reports") / slug / "index.html"


def write(name: str, out: str | os.PathLike[str] | None = None, url: str | None = None, *,
          data_path: str | None = None, models: bool = True, on_step: Callable[[str], None] | None = None,
          frontier_files: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Build the report and write it atomically (default ``reports/NAME/index.html``); see :func:`build`."""
    path = Path(out) if out is not None else default_out(name)
    text = build(name, url, data_path=data_path, models=models, on_step=on_step, frontier_files=frontier_files)
    # Atomic over a regular file (a failure never leaves half a report over a good one); through a
    # device or pipe; never over one (cnnsearch.ground.output).
    write_file(path, text, flag="--out", what="the report")
    return path
