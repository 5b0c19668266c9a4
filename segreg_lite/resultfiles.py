"""What a run's results file and a method's results entry must hold: the checks every reader applies.

A results file (``results.json``, written by :func:`segreg_lite.experiment.run_experiment`) and a
method's entry in it (also ``methods/<method>.json`` in the run folder) are read back by the run
folder (:class:`segreg_lite.runfolder.RunFolder`, to resume), by the report and by the sweep's
collection; each reader checks them here first, so that a hand-edited or truncated file is named
as such instead of failing later as a KeyError. Below the run folder and the report, which both
import it (:mod:`segreg_lite.report` re-exports both checks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segreg_lite.limits import is_number


def check_method_result(entry: Any, where: str, n_classes: int | None = None) -> None:
    """Raise a one-line ValueError beginning with ``where`` (the file, and the method) unless
    ``entry`` is a method's results entry: ``metrics`` with numeric ``dice``, ``hd``, ``hd95``,
    ``seconds`` and ``dice_per_class`` (``n_classes`` numbers when given), an optional numeric
    ``folding`` and, for a joint method, a ``history`` of rounds with a numeric ``test_dice``.
    Checked when a file is read, so that a hand-edited or truncated file is named as such
    instead of failing later as a KeyError or a format error that names no file."""
    metrics = entry.get("metrics") if isinstance(entry, dict) else None
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: no 'metrics' table")
    for key in ("dice", "hd", "hd95", "seconds", *(["folding"] if "folding" in metrics else [])):
        if not is_number(metrics.get(key)):
            raise ValueError(f"{where}: metrics {key!r} must be a number, got {metrics.get(key, 'nothing')!r}")
    per_class = metrics.get("dice_per_class")
    if not isinstance(per_class, list) or not all(is_number(v) for v in per_class) \
            or (n_classes is not None and len(per_class) != n_classes):
        need = f"a list of {n_classes} numbers" if n_classes is not None else "a list of numbers"
        raise ValueError(f"{where}: metrics 'dice_per_class' must be {need}, got {per_class!r}")
    history = entry.get("history")
    if history is not None and not (isinstance(history, list)
                                    and all(isinstance(h, dict) and is_number(h.get("test_dice")) for h in history)):
        raise ValueError(f"{where}: 'history' must be a list of rounds, each with a numeric 'test_dice'")


def check_results(held: Any, path: str | Path) -> dict[str, Any]:
    """``held`` (read from the results file ``path``) if it has the shape and types that
    :func:`run_experiment <segreg_lite.experiment.run_experiment>` writes; otherwise a one-line
    ValueError naming the file, what is wrong and the remedy."""
    why = "; run that run again (the same segreg-lite run command) to rewrite it, or leave that folder out"
    missing = [k for k in ("data", "preset", "fraction", "seed", "label_names", "methods") if not isinstance(held, dict) or k not in held]
    if missing:
        raise ValueError(f"{path}: not a segreg-lite results file (no {', '.join(missing)})")
    types = {"data": (str, "a string"), "preset": (str, "a string"), "methods": (dict, "a table of methods")}
    for key, (kind, what) in types.items():
        if not isinstance(held[key], kind):
            raise ValueError(f"{path}: damaged results file: {key!r} must be {what}, got {held[key]!r}{why}")
    if not is_number(held["fraction"]):
        raise ValueError(f"{path}: damaged results file: 'fraction' must be a number, got {held['fraction']!r}{why}")
    if not isinstance(held["seed"], int) or isinstance(held["seed"], bool):
        raise ValueError(f"{path}: damaged results file: 'seed' must be an integer, got {held['seed']!r}{why}")
    names = held["label_names"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: damaged results file: 'label_names' must be a list of class names, got {names!r}{why}")
    for name, entry in held["methods"].items():
        try:
            check_method_result(entry, f"{path}: damaged results file: method {name!r}", len(names) - 1)
        except ValueError as err:
            raise ValueError(f"{err}{why}") from None
    return held
