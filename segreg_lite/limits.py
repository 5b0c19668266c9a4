"""The checks of plain settings that the API and the command line share: counts, seeds, fractions
and image sizes, with the limits they enforce.

Each check takes the name to report: the API passes its parameter's name (``seed``), the command
line its flag (``--data-seed``), so a bad value is refused in one line that says which argument
it was, by the same function either way. The command line calls them before it makes or loads
any data: a typo must not cost the seconds to minutes of generating a cohort first. Nothing here
imports torch.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

#: Both networks halve the image 4 times (5 levels): H and W must be multiples of 16.
SIZE_MULTIPLE = 16
#: The registration network's coarsest level needs at least 2 pixels, so 32 for methods that register.
REG_MIN_SIZE = 32
#: The largest side of a generated cohort image. The embedded template is sampled at 1 mm over a
#: 180 mm field of view, so beyond 256 pixels a side an image only interpolates it more finely;
#: 512 (0.35 mm pixels) leaves room for that, while the default 300 subjects still fit in about a
#: gigabyte (12 bytes a pixel: a float32 image and int64 labels). The bound is what stops a typo:
#: ``--size 100000 100000`` would otherwise try to allocate 160 GB before failing.
MAX_SIZE = 512
#: The most subjects of a generated cohort: five times neurite-OASIS's 414, about a minute to
#: generate and 400 MB at 128 x 128 (6 GB at MAX_SIZE). The bound is what stops a typo
#: (``--subjects 3000000``) from filling the memory for minutes before anything fails.
MAX_SUBJECTS = 2000
#: The fewest subjects a split takes: one training, one validation and one test subject.
MIN_SUBJECTS = 3
#: Why a count is bounded above: the end of the message that refuses a larger one.
_MAX_SUBJECTS_WHY = (" (segreg_lite.limits.MAX_SUBJECTS: more takes minutes and gigabytes to generate; "
                     "raise it in Python if you mean it)")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python's or NumPy's), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (an integer or a float), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, *, low: int = 0, why: str = "", high: int | None = None, high_why: str = "") -> int:
    """``value`` as an int when it is an integer >= ``low`` (and <= ``high``, when given); anything
    else (a float, a bool, a string, a number out of bounds) is a ValueError naming ``name``, with
    ``why`` (or ``high_why``) after the bound it broke."""
    if not is_int(value) or value < low:
        bound = {0: "a non-negative integer (0, 1, 2, ...)", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        raise ValueError(f"{name} must be {bound}{why}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high}{high_why}, got {value!r}")
    return int(value)


def check_subjects(n: Any, name: str = "n_subjects", *, low: int = MIN_SUBJECTS) -> int:
    """``n`` as an int when it is a count of generated subjects from ``low`` (default: enough for a
    split) to :data:`MAX_SUBJECTS`; otherwise a ValueError naming ``name``."""
    why = " (one training, one validation and one test subject)" if low == MIN_SUBJECTS else ""
    return check_int(n, name, low=low, why=why, high=MAX_SUBJECTS, high_why=_MAX_SUBJECTS_WHY)


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int; anything but a non-negative integer is a ValueError naming ``name``
    (NumPy's generators take no negative seed, and say so without naming it)."""
    return check_int(seed, name, low=0)


def check_fraction(value: Any, name: str = "fraction", *, one: bool = True, why: str = "") -> float:
    """``value`` as a float in (0, 1], or in (0, 1) when ``one`` is False; anything else (NaN,
    infinity, a bool, a string) is a ValueError naming ``name``, with ``why`` after the interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 < value <= 1 if one else 0 < value < 1):
        raise ValueError(f"{name} must be in {'(0, 1]' if one else '(0, 1)'}{why}, got {value!r}")
    return float(value)


def check_size(size: Sequence[Any], name: str = "size", *, low: int = SIZE_MULTIPLE, why: str = "") -> tuple[int, int]:
    """``(H, W)`` of a generated image: integers, multiples of :data:`SIZE_MULTIPLE`, at least
    ``low`` (``why`` says who needs it) and at most :data:`MAX_SIZE`; otherwise a ValueError
    naming ``name``."""
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers, H and W, got {size!r}") from None
    if not (is_int(h) and is_int(w)) or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or min(h, w) < low \
            or max(h, w) > MAX_SIZE:
        raise ValueError(f"{name} must be multiples of {SIZE_MULTIPLE} from {low}{why} to {MAX_SIZE}, got {h!r} {w!r}: "
                         f"the networks halve the image 4 times, and a larger grid only interpolates the 1 mm template")
    return int(h), int(w)
