"""Parameter types and checks shared by cnnsearch's commands (kept out of the command modules' length)."""

from __future__ import annotations

import math
from typing import Any

import click


class Workers(click.ParamType):
    """--workers: a whole number >= 1, or "auto" (resolved by the run: runner.auto_workers)."""

    name = "K|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        # Digits only, and few: int() of a 10,000-digit string is slow; the run bounds K at the cores anyway.
        k = (int(text) if len(text) <= 18 else 10**18) if text.isdigit() else 0
        if k < 1:
            self.fail(f"expected a whole number >= 1 or 'auto'; received {value!r}", param, ctx)
        return k


def not_nan(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse NaN: it compares false with every bound, so FloatRange lets it through, and a run read it as no limit."""
    if value is not None and math.isnan(value):
        raise click.BadParameter(f"expected a number of seconds >= 0; received {value}", ctx, param)
    return value
