"""The model figures section: the best model beside the baseline (filters, feature maps, confusion, mistakes).

The arrays come from :mod:`cnnsearch.report.models`; here they are only drawn: the confusion
matrix as an HTML table of counts; filters, feature maps and mistakes as mosaics (each tile scaled
to its own range, white gutters) written straight to PNG with Pillow, their titles and labels in
HTML. The ~420 matplotlib axes of two models' panels, and then the figure machinery around one
mosaic per panel, took most of a report's time (issue 24).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from cnnsearch.model import viz
from cnnsearch.report.markup import Section, img, p
from cnnsearch.report.models import ModelPanel, Models

#: Pixels a mosaic is drawn at (about the width of one column of the report's two-model panel).
MOSAIC_PIXELS = 560


def mosaic(tiles: np.ndarray, cols: int, gutter: int = 1) -> np.ndarray:
    """Tiles (n, h, w) in rows of ``cols``, each scaled to [0, 1] by its own range; gutters are NaN (drawn white)."""
    n, h, w = tiles.shape[:3]
    colour = tiles.ndim == 4 and tiles.shape[3] == 3  # RGB first-layer filters (issue 23): drawn in colour
    depth = (3,) if colour else ()
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + gutter), cols * (w + gutter), *depth), np.nan, dtype=np.float32)
    for i in range(n):
        t = np.asarray(tiles[i], dtype=np.float32).reshape(h, w, *depth)
        lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
        r, c = divmod(i, cols)
        y, x = r * (h + gutter), c * (w + gutter)
        out[y:y + h, x:x + w] = (t - lo) / (hi - lo) if hi > lo else 0.5
    return out


def png_uri(image: np.ndarray, pixels: int = MOSAIC_PIXELS) -> str:
    """A mosaic in [0, 1] (NaN gutters drawn white; grey, or RGB in the last axis) as an inline PNG.

    Each value becomes a square block of whole pixels, about ``pixels`` wide in all, so a 3x3
    filter stays nine sharp squares (the page keeps them sharp with ``image-rendering: pixelated``).
    """
    from PIL import Image

    scale = max(1, round(pixels / image.shape[1]))
    a = np.clip(np.where(np.isnan(image), 1.0, image), 0.0, 1.0)
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray((a * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _mosaic_img(image: np.ndarray, alt: str, pixels: int = MOSAIC_PIXELS) -> str:
    return img(png_uri(image, pixels), alt, "mosaic")


def _maps(maps: np.ndarray, n: int) -> np.ndarray:
    return np.moveaxis(maps[..., :n], -1, 0)  # (h, w, c) -> (c, h, w)


def filters_html(filters: np.ndarray, title: str, alt: str) -> str:
    """Filters (n, k, k), or colour patches (n, k, k, 3), as one mosaic, 8 a row, under their title."""
    return (f"<figure class='mosaic'><figcaption>{html.escape(title)}</figcaption>"
            f"{_mosaic_img(mosaic(filters, 8), alt)}</figure>")


def digit_maps_html(digit: np.ndarray, maps1: np.ndarray, maps_last: np.ndarray, *, title: str, alt: str) -> str:
    """One test digit, 16 first-layer maps (2x8) and 32 of the last conv layer's maps (4x8), each under a label."""
    n1, n2 = min(16, maps1.shape[-1]), min(32, maps_last.shape[-1])
    return (f"<figure class='mosaic'><figcaption>{html.escape(title)}</figcaption>"
            f"<div class='digit'>input{_mosaic_img(mosaic(np.squeeze(digit)[None], 1), alt + ': the input digit', 112)}"
            f"</div><div>first conv layer: maps 0-{n1 - 1}</div>"
            f"{_mosaic_img(mosaic(_maps(maps1, n1), 8), alt + ': first conv layer')}"
            f"<div>last conv layer: maps 0-{n2 - 1}</div>"
            f"{_mosaic_img(mosaic(_maps(maps_last, n2), 8), alt + ': last conv layer')}</figure>")


def mistakes_html(images: np.ndarray, labels: list[str], *, title: str, alt: str) -> str:
    """The most confidently wrong digits, 4 a row, each labelled "#index: true→predicted (p)" under it."""
    tiles = np.asarray(images)
    if tiles.ndim == 4 and tiles.shape[-1] == 1:  # grayscale (n, h, w, 1); colour (n, h, w, 3) stays colour
        tiles = tiles[..., 0]
    if not len(tiles):
        return f"<p class='note'>{html.escape(title)}: no wrong predictions among these test images.</p>"
    cells = "".join(f"<figure>{_mosaic_img(mosaic(t[None], 1), f'{alt}: {label}', 112)}"
                    f"<figcaption>{html.escape(label)}</figcaption></figure>" for t, label in zip(tiles, labels))
    return (f"<figure class='mosaic'><figcaption>{html.escape(title)}</figcaption>"
            f"<div class='mistakes'>{cells}</div></figure>")


def confusion_html(matrix: np.ndarray, names: list[str], *, title: str) -> str:
    """The confusion matrix as a table: counts on cells shaded by log count (diagonal in green), every zero readable.

    A table, not a picture: the numbers are text (searchable, read aloud, sharp at any zoom) and it
    costs nothing to draw.
    """
    shade = np.log1p(matrix.astype(float))
    top = float(shade.max()) or 1.0
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            a = 0.85 * shade[i, j] / top
            colour = f"rgba(46,139,87,{a:.2f})" if i == j else f"rgba(58,110,165,{a:.2f})"
            ink = "#fff" if a > 0.5 else "#222"
            cells.append(f"<td style='background:{colour};color:{ink}'>{int(matrix[i, j])}</td>")
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (f"<figure class='mosaic'><figcaption>{html.escape(title)}</figcaption><table class='confusion'>"
            f"<tr><th>true ↓ predicted →</th>{head}</tr>{''.join(rows)}</table></figure>")


def _panel_html(m: ModelPanel) -> str:
    rec, lab = m.record, m.label
    n_f1 = len(m.filters1)
    parts = [f"<h3>{html.escape(lab)}: trial #{rec['number']}, {rec['param_count']:,} parameters</h3>",
             filters_html(m.filters1, f"{lab}: first-layer filters",
                          f"The {lab} model's {n_f1} first-layer filters as grey 3x3 (or larger) patches")]
    if m.filters2 is not None:
        parts.append(filters_html(m.filters2, f"{lab}: second-layer filters, input channel 0",
                                  f"The {lab} model's second-layer filters for input channel 0"))
    for idx, image, m1, m2 in m.digits:
        parts.append(digit_maps_html(image, m1, m2, title=f"{lab}: test digit #{idx}",
                                     alt=f"Test digit #{idx} and the {lab} model's feature maps of it"))
    names = m.class_names or [str(k) for k in range(len(m.confusion))]
    parts.append(confusion_html(m.confusion, names, title=f"{lab}: confusion matrix, first {m.sample:,} test images"
                                f" ({m.accuracy:.4f} correct)"))
    parts.append(mistakes_html(m.mistakes, m.mistake_labels, title=f"{lab}: most confidently wrong test digits",
                               alt=f"A test digit the {lab} model got wrong with high confidence"))
    return "<div class='col'>" + "\n".join(parts) + "</div>"


def model_section(m: Models) -> Section:
    """Draw the model panels side by side, folded away."""
    title = "What the filters learned: the best model beside the baseline"
    if m.missing:
        return Section(title, p(m.missing, "missing"), "model")
    note = p(m.note, "answer") if m.note else ""
    sample = m.panels[0].sample if m.panels else 0
    return Section(title, note + "<details><summary>Filters, feature maps of test digits "
                   + ", ".join(str(i) for i in viz.REFERENCE_DIGITS) + ", confusion matrices and the most"
                   f" confidently wrong digits (of the first {sample:,} test images)</summary><div class='cols'>"
                   + "".join(_panel_html(x) for x in m.panels) + "</div></details>", "model")


__all__ = ["MOSAIC_PIXELS", "confusion_html", "digit_maps_html", "filters_html", "mistakes_html", "model_section",
           "mosaic", "png_uri"]
