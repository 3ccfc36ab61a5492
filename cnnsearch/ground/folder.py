"""An image folder with one subfolder per class, read with Keras's ``image_dataset_from_directory``.

Two layouts:

- ``train/`` and ``test/`` (and optionally ``val/``), each holding one subfolder per class;
- one subfolder per class directly: then a seeded, stratified 10% of the images is held out as the
  test set (:data:`TEST_FRACTION`; said in the data's source name).

Every image must have the same size (they are never resized: a resized digit is a different task);
grayscale images stay one channel, anything else is read as RGB. Class names are the subfolder names,
sorted as Keras sorts them: label k is the k-th name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnsearch.ground.errors import DataError

#: File endings image_dataset_from_directory reads (Keras's ALLOWLIST_FORMATS).
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: Share of a class-folders-only layout held out as the test set (stratified, seed holdout.SPLIT_SEED).
TEST_FRACTION = 0.1


def is_image_folder(folder: Path) -> bool:
    """Does ``folder`` look like an image folder (class subfolders, or train/ and test/ of them)?"""
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def classes_of(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, for a folder of class subfolders.

    Raises:
        DataError: fewer than two classes, or a class without images.
    """
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    classes = {p.name: sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) for p in subs}
    if len(classes) < 2:
        raise DataError(f"{folder}: expected one subfolder per class, at least 2 classes; received"
                        f" {len(classes)} ({', '.join(classes) or 'none'}); add a subfolder of images per class")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise DataError(f"{folder}: class folder(s) {', '.join(empty)} hold no images ({', '.join(IMAGE_SUFFIXES)});"
                        " add images or remove the empty folder")
    return classes


def read(folder: Path) -> dict[str, object]:
    """The arrays (uint8 images, int64 labels) and class names of an image folder (see the module doc)."""
    from cnnsearch.ground import holdout

    parts = {name: folder / name for name in ("train", "val", "test") if (folder / name).is_dir()}
    if "train" in parts and "test" in parts:
        names = tuple(classes_of(parts["train"]))
        out: dict[str, object] = {}
        shape = _common_shape(parts)
        for part, path in parts.items():
            extra = sorted(set(classes_of(path)) - set(names)) if part != "train" else []
            if extra:
                raise DataError(f"{path}: class folder(s) {', '.join(extra)} are not in {parts['train']};"
                                f" every split must use the training classes ({', '.join(names)})")
            out[f"x_{part}"], out[f"y_{part}"] = _load(path, names, shape)
        return {**out, "class_names": names, "source": str(folder)}
    names = tuple(classes_of(folder))
    x, y = _load(folder, names, _common_shape({"all": folder}))
    train, test = holdout.stratified(y, TEST_FRACTION, source=str(folder))
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test], "class_names": names,
            "source": str(folder)}


def read_flat(folder: Path, class_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    """Images ``x`` and labels ``y`` of one folder of class subfolders (``--val-data``), labelled by ``class_names``.

    Without class names (data from an npz), the subfolders must be named 0..K-1.
    """
    found = tuple(classes_of(folder))
    names = class_names or tuple(sorted(found, key=lambda n: int(n) if n.isdigit() else -1))
    extra = sorted(set(found) - set(names))
    if extra:
        raise DataError(f"{folder}: class folder(s) {', '.join(extra)} are not classes of the training data"
                        f" ({', '.join(names)}); name them as the training classes")
    x, y = _load(folder, names, _common_shape({"val": folder}))
    return {"x": x, "y": y}


def _common_shape(parts: dict[str, Path]) -> tuple[int, int, str]:
    """(height, width, Keras color_mode) shared by every image, read from the files' headers only."""
    from PIL import Image

    seen: dict[tuple[int, int], Path] = {}
    modes = set()
    for path in parts.values():
        for files in classes_of(path).values():
            for f in files:
                try:
                    with Image.open(f) as im:
                        seen.setdefault((im.height, im.width), f)
                        modes.add(im.mode)
                except OSError as exc:
                    raise DataError(f"{f}: cannot read this image ({exc}); remove or replace it") from exc
    if len(seen) > 1:
        (s1, f1), (s2, f2) = list(seen.items())[:2]
        raise DataError(f"{f1} is {s1[0]}x{s1[1]} but {f2} is {s2[0]}x{s2[1]}: expected every image of the same"
                        " size (images are never resized); resize them to one size first")
    (h, w), = seen
    return h, w, "grayscale" if modes <= {"L", "1"} else "rgb"


def _load(path: Path, names: tuple[str, ...], shape: tuple[int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    from cnnsearch.ground._tf import keras

    h, w, mode = shape
    # A test or validation folder may lack some classes; Keras labels by position in the names it is given.
    present = [n for n in names if (path / n).is_dir()]
    ds = keras().utils.image_dataset_from_directory(
        str(path), labels="inferred", label_mode="int", class_names=present, color_mode=mode,
        batch_size=None, image_size=(h, w), shuffle=False, verbose=False)
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    # Keras hands back float32 0-255 pixels (unchanged at the images' own size): back to uint8.
    to_label = np.array([names.index(n) for n in present], dtype=np.int64)
    return np.rint(np.stack(xs)).astype(np.uint8), to_label[np.asarray(ys, dtype=np.int64)]


__all__ = ["IMAGE_SUFFIXES", "TEST_FRACTION", "classes_of", "is_image_folder", "read", "read_flat"]
