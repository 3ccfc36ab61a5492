"""Study text for optuna-dashboard: the note (space, settings, what trial 0 is) and the short settings attributes.

The published 99.15% appears only on MNIST (recognised by the data's sha256), never on other data.
"""

from __future__ import annotations

from typing import Any

import optuna

from cnnsearch.model.arch import REFERENCE
from cnnsearch.search import space as space_mod
from optuna.trial import FrozenTrial


def note_text(study: optuna.Study, settings: dict[str, Any], base: FrozenTrial | None) -> str:
    """The study note shown by optuna-dashboard: space, training settings, baseline references.

    ``base``: the completed baseline trial, if any.
    """
    if base is not None:
        ua = base.user_attrs
        in_study = (f"trial {base.number}: val accuracy {ua.get('val_accuracy', float('nan')):.4f}, test accuracy"
                    f" {ua.get('test_accuracy', float('nan')):.4f}, param_count {param_count(ua) or 0:,}, at this study's"
                    " fidelity")
    else:
        in_study = "trial 0, not finished yet"
    training = settings["training"]
    limit = training["train_limit"] or "all"
    return "\n".join([
        f"# cnnsearch study: {study.study_name}",
        "",
        settings["study"].get("description") or "",
        "",
        "## Baselines every trial is compared with",
        *_reference_note(study, settings, in_study),
        "",
        "The objective is validation accuracy; test accuracy is recorded (user attribute test_accuracy) but never"
        " used to select. User attributes per trial: param_count, flops, val_accuracy, test_accuracy, seconds, baseline"
        " (role says which is the baseline); per-epoch data are system attributes (cnnsearch:history, ...).",
        "",
        "## Training (fixed at create)",
        f"- {training['epochs']} epochs on {limit} training images, batch {training['batch_size']},"
        f" {training['optimizer']} learning rate {training['learning_rate']} {training['optimizer_args']}",
        f"- sampler {settings['study']['sampler']}, pruner {settings['study']['pruner']},"
        f" seed {settings['study']['seed']}",
        *_limits_note(settings["study"]),
        "",
        f"## Space ({settings['space_source']})",
        "```toml",
        settings["space_text"].strip(),
        "```",
    ])


def _reference_note(study: optuna.Study, settings: dict[str, Any], in_study: str) -> list[str]:
    """The note's baseline lines: the published 99.15% only on MNIST (by the data's sha256), never elsewhere."""
    from cnnsearch.ground import provenance

    sp = space_mod.parse(settings["space_text"], stored=True)
    if sp.baseline == "none":
        return ["- none ([baseline] model = \"none\" in the space file)"]
    if isinstance(sp.baseline, dict):
        return [f"- the space file's [baseline] point, at this study's fidelity: {in_study}"]
    if provenance.stored(study) is not None and provenance.is_mnist(study):
        return [f"- the reference Keras MNIST CNN: test accuracy {REFERENCE.test_accuracy:.2%} ({REFERENCE.epochs}"
                " epochs, all data)",
                f"- the in-study baseline (the same model at this study's fidelity): {in_study}"]
    return [f"- the reference architecture trained on your data, at this study's fidelity: {in_study}"]


def _limits_note(study_settings: dict[str, Any]) -> list[str]:
    """The note's line on size limits: what an infeasible trial's value 0 in the dashboard's plots means."""
    limits_set = [f"max_{k} {study_settings[f'max_{k}']:,}" for k in ("params", "flops")
                  if study_settings.get(f"max_{k}")]  # absent in studies created before size limits
    if not limits_set:
        return []
    return [f"- size limits {', '.join(limits_set)}: a point over them is an infeasible trial (user attribute"
            " infeasible), never trained; its value 0 is not an accuracy, and the importance panel counts it"]


def param_count(user_attrs: dict[str, Any]) -> int | None:
    """A trial's parameter count; studies made before the rename stored it as ``params``."""
    value = user_attrs.get("param_count", user_attrs.get("params"))
    return value if isinstance(value, int) else None


def readable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The study's settings as short user attributes: one line each on optuna-dashboard's study page."""
    t, st = settings["training"], settings["study"]
    images = f"{t['train_limit']:,}" if t["train_limit"] else "all"
    described = {"description": st["description"]} if st.get("description") else {}
    return {
        **described,
        "space": settings["space_source"],
        "training": f"{t['epochs']} epochs on {images} images, batch {t['batch_size']}, {t['optimizer']}"
                    f" lr {t['learning_rate']}",
        "sampler": st["sampler"],
        "pruner": st["pruner"],
        "seed": st["seed"],
        "objectives": ", ".join(st["objectives"]),
        "created": settings["created"],
        "cnnsearch_version": settings["version"],
    }


__all__ = ["note_text", "param_count", "readable_settings"]
