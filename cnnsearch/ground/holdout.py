"""Which training images become validation images, and when a validation set cannot be trusted.

Pure functions on label arrays (no Keras): :func:`stratified` draws a seeded,
stratified hold-out (scikit-learn's ``train_test_split``), :func:`warnings_for`
says when the validation set is too small or unlike the training set to rank
trials on.
"""

from __future__ import annotations

import numpy as np

from cnnsearch.ground.errors import DataError

#: Seed of the stratified hold-out: fixed, so every study (and every run of one) on the same data validates on
#: the same images, and a baseline trained in one study can be reused by another.
SPLIT_SEED = 0

#: A validation set where one image moves accuracy by more than this (percentage points) gets a warning:
#: differences between good trials are often a tenth of a point or less (README's MNIST studies), so with fewer
#: than 1,000 validation images one image's worth of accuracy is as large as what is being ranked.
ONE_IMAGE_PP = 0.1

#: Largest total-variation distance between the training and validation class shares without a warning
#: (0.1 = a tenth of the images would have to change class for the two sets to match).
MAX_CLASS_SHIFT = 0.1


def stratified(y: np.ndarray, fraction: float, *, seed: int = SPLIT_SEED, source: str = "data"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of a seeded hold-out of ``fraction`` with each class in proportion.

    The training indices come shuffled (by the same seed), so a ``train_limit``
    that keeps the first N draws from every class, even from a label-sorted file.

    Raises:
        DataError: the fraction is outside (0, 1), or some class has too few images to be in both sets.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction: expected a number between 0 and 1 (e.g. 0.1); received {fraction}")
    idx = np.arange(len(y))
    try:
        train, val = train_test_split(idx, test_size=fraction, random_state=seed, shuffle=True, stratify=y)
    except ValueError as exc:  # a class with one image, or fewer validation images than classes
        counts = np.bincount(y)
        raise DataError(
            f"{source}: a stratified validation split of {fraction:.0%} needs at least 2 images of every class and"
            f" at least {len(counts)} validation images; received {len(y)} images, the rarest class with"
            f" {int(counts[counts > 0].min())}; pass a larger --val-fraction, or --val-data FILE") from exc
    return np.asarray(train), np.sort(np.asarray(val))


def warnings_for(y_train: np.ndarray, y_val: np.ndarray, n_classes: int) -> list[str]:
    """Why a ranking on this validation set may not be trusted (empty when it may).

    Two checks: one validation image moving accuracy by more than
    :data:`ONE_IMAGE_PP` points, and class shares in validation unlike training's
    (total-variation distance over :data:`MAX_CLASS_SHIFT`, or a class missing).
    """
    out = []
    n_val = len(y_val)
    if n_val and 100.0 / n_val > ONE_IMAGE_PP:
        out.append(f"the validation set has {n_val:,} images: one image moves validation accuracy by"
                   f" {100.0 / n_val:.2f} pp, so trials closer than that are not told apart; pass --val-data with"
                   f" more images, or a larger --val-fraction")
    train_share = np.bincount(y_train, minlength=n_classes) / max(1, len(y_train))
    val_share = np.bincount(y_val, minlength=n_classes) / max(1, n_val)
    missing = [c for c in range(n_classes) if val_share[c] == 0 and train_share[c] > 0]
    shift = 0.5 * float(np.abs(train_share - val_share).sum())
    if missing or shift > MAX_CLASS_SHIFT:
        what = f"class(es) {', '.join(map(str, missing[:5]))} never occur" if missing else "its class shares differ"
        out.append(f"the validation set's class balance differs from training's ({what}; total-variation distance"
                   f" {shift:.2f}): validation accuracy then over-weights some classes; use the default stratified"
                   " split, or --val-data with balanced classes")
    return out


__all__ = ["MAX_CLASS_SHIFT", "ONE_IMAGE_PP", "SPLIT_SEED", "stratified", "warnings_for"]
