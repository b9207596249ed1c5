"""The numeric ranges a settings dataclass holds its fields to (its `RANGES`), checked in one place:
shared ground, so settings at any layer (the task data's, every route's) check theirs the same way."""

import math

from tuneforge.errors import SettingError

SEEDS = (0, 2**32 - 1)
"""Seeds every generator takes (numpy's are 32-bit)."""

def check_ranges(config, ranges: dict | None = None) -> None:
    """Refuse any number of `config` (each item of a list) that is not finite or lies outside the
    [low, high] `ranges` (default: its class's `RANGES`) gives its field; None keeps its field's own
    meaning. A setting that could only fail later (a learning rate of inf, a seed of -1, 100,000 shots)
    stops here, in one line."""
    for name, (low, high) in (type(config).RANGES if ranges is None else ranges).items():
        value = getattr(config, name)
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None and not (math.isfinite(v) and low <= v <= high):
                each = " each" if isinstance(value, tuple) else ""
                raise SettingError(name, f"{name} must{each} be between {_number(low)} and {_number(high)}, "
                                         f"got {_number(v)}")


def _number(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"
