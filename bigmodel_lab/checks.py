"""Argument checks of the public functions: a wrong type or size says what to pass instead.

A notebook reader who types `n_train="100"` or `max_length=1024` should get one sentence
naming the fix, not a traceback from deep inside pandas or an embedding lookup.
"""

from __future__ import annotations

from typing import Any


def check_count(name: str, value: Any, minimum: int = 1, allow_none: bool = True) -> int | None:
    """`value` as an int >= `minimum` (None allowed when `allow_none`), else a clear error."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                return check_count(name, int(value), minimum, allow_none)
        except ImportError:  # pragma: no cover
            pass
        hint = f"{name}={int(value)}" if isinstance(value, str) and value.strip().isdigit() \
            else f"{name}=100"
        none = " or None (all)" if allow_none else ""
        raise TypeError(f"{name} must be a whole number{none}, got {type(value).__name__} "
                        f"{value!r}. Pass e.g. {hint}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_name(name: str, value: Any, valid: tuple[str, ...] | None = None) -> str:
    """`value` as a str (one name, not a list of them), else a TypeError naming the fix."""
    if not isinstance(value, str):
        example = f"{name}={valid[0]!r}" if valid else f"{name}='...'"
        many = " Load one at a time, e.g. in a loop." if isinstance(value, (list, tuple)) else ""
        options = f" Valid: {', '.join(valid)}." if valid else ""
        raise TypeError(f"{name} must be a string such as {example}, got "
                        f"{type(value).__name__} {value!r:.60}.{many}{options}")
    return value


def max_positions(model) -> int | None:
    """How many token positions `model` can read (BERT/DistilBERT: 512), None if unknown."""
    config = getattr(getattr(model, "module", model), "config", None)
    for key in ("max_position_embeddings", "n_positions", "context_length"):
        limit = getattr(config, key, None)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


def check_max_length(model, max_length: Any) -> int:
    """`max_length` as an int the model can read, else an error naming the limit and the
    long-text strategies that handle longer texts."""
    max_length = check_count("max_length", max_length, minimum=2, allow_none=False)
    limit = max_positions(model)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} is more than this model can read ({limit} positions). "
            f"Use max_length={limit} or less; for longer texts keep the head and tail "
            "(strategy='head+tail') or average over windows (strategy='chunk', "
            "bigmodel_lab.longtext)."
        )
    return max_length
