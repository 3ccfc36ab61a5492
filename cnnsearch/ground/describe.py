"""A trial's choices in one short, readable line.

``conv 32k3 > 64k3 | pool 2 | drop .25/.50 | dense 128`` is the reference model:
filters and kernel side of each conv layer, the pooling, both dropout rates and
the hidden dense layer; a stride, padding, batch norm (``bn``), global average
pooling head (``gap``), augmentation, optimizer, learning rate or batch size appears only
when it is not the reference's. Reads plain dicts (a trial's stored
``spec`` and ``params``), so old studies and new ArchSpec fields render too.
Imports nothing from cnnsearch.
"""

from __future__ import annotations

from typing import Any, Mapping

#: The spec fields the line renders itself; any other field is appended as ``name value``.
_KNOWN = {"conv_filters", "kernel_sizes", "stride", "padding", "pool", "pool_size", "pool_every", "dropout_conv",
          "dense_units", "dropout_dense", "batch_norm", "head", "augment"}


def rate(v: float) -> str:
    """A dropout rate without its leading zero: 0.25 -> ``.25``, 0 -> ``0``."""
    v = float(v)
    if v == 0:
        return "0"
    return f"{v:.2f}".lstrip("0") if v < 1 else f"{v:g}"


def choices(spec: Mapping[str, Any] | None, params: Mapping[str, Any] | None = None) -> str:
    """One line for a trial: its architecture (``spec``) and any training choice among ``params``.

    Args:
        spec: The trial's ``spec`` user attribute (an ArchSpec as a dict); None when the trial
            never got that far (then the raw ``params`` are shown).
        params: The trial's Optuna parameters (learning_rate and batch_size are shown from here).
    """
    params = dict(params or {})
    if not spec:
        return ", ".join(f"{k} {v}" for k, v in sorted(params.items())) or "-"
    filters = list(spec.get("conv_filters") or [])
    kernels = list(spec.get("kernel_sizes") or [])
    conv = " > ".join(f"{f}k{k}" for f, k in zip(filters, kernels)) or "none"
    if int(spec.get("stride", 1)) != 1:
        conv += f" s{spec['stride']}"
    if spec.get("padding", "valid") != "valid":
        conv += f" {spec['padding']}"
    if spec.get("batch_norm"):
        conv += " bn"
    parts = [f"conv {conv}"]
    pool = spec.get("pool", "max")
    if pool == "none":
        parts.append("no pool")
    else:
        every = int(spec.get("pool_every", 0) or 0)
        parts.append(f"{'' if pool == 'max' else pool}pool {spec.get('pool_size', 2)}"
                     + (f" every {every}" if every else ""))
    if spec.get("head", "flatten") != "flatten":
        parts.append(str(spec["head"]))  # "gap": global average pooling instead of flatten
    dense = int(spec.get("dense_units", 128))
    if dense:
        parts.append(f"drop {rate(spec.get('dropout_conv', 0))}/{rate(spec.get('dropout_dense', 0))}")
        parts.append(f"dense {dense}")
    else:
        parts.append(f"drop {rate(spec.get('dropout_conv', 0))}")
        parts.append("no dense")
    extra = [f"{k} {v}" for k, v in spec.items() if k not in _KNOWN]
    if float(spec.get("augment", 0) or 0):
        extra.insert(0, f"augment {rate(spec['augment'])}")
    if "optimizer" in params:  # a searched optimizer; its learning rate is <name>_learning_rate
        extra.append(str(params["optimizer"]))
    lr = params.get("learning_rate", params.get(f"{params.get('optimizer')}_learning_rate"))
    if lr is not None:
        extra.append(f"lr {float(lr):.3g}")
    if "batch_size" in params:
        extra.append(f"batch {params['batch_size']}")
    if extra:
        parts.append(" ".join(extra))
    return " | ".join(parts)


__all__ = ["choices", "rate"]
