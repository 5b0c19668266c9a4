"""Every table, CSV and statistic made of finished runs: one run's, several seeds', a sweep's.

After Li et al. (arXiv 2502.03229, ISBI 2025). A run's ``results.json`` (written by
:func:`segreg_lite.experiment.run_experiment`) becomes rows (:func:`results_rows`), CSV
(:func:`results_csv`) and the fixed-width table the CLI prints (:func:`format_table`). Several
runs of one setting (seeds) are read and checked comparable by :func:`load_results` and
summarised as mean +- population std per method (:func:`summarize_runs`,
:func:`format_summary`). A sweep's runs grouped by fraction (:func:`segreg_lite.sweep.collect_sweep`)
become one row per (fraction, method) (:func:`sweep_table`), text (:func:`format_sweep`) and a
Markdown table (:func:`markdown_sweep`, the README's), with its total compute
(:func:`compute_minutes`).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segreg_lite.io import read_json
from segreg_lite.methods import METHODS
from segreg_lite.resultfiles import check_method_result, check_results  # noqa: F401 (re-exported: their home before)


def results_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Headers and one row per method: mean Dice, per-class Dice, HD, HD95, folding, seconds."""
    classes = summary["label_names"][1:]
    headers = ["method", "dice", *[f"dice {c}" for c in classes], "hd", "hd95", "folding", "seconds"]
    rows = []
    for name, r in summary["methods"].items():
        m = r["metrics"]
        rows.append([name, m["dice"], *m["dice_per_class"], m["hd"], m["hd95"], m.get("folding", float("nan")), m["seconds"]])
    return headers, rows


def results_csv(summary: dict[str, Any]) -> str:
    headers, rows = results_rows(summary)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(headers)
    writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows])
    return buf.getvalue()


def format_table(summary: dict[str, Any]) -> str:
    """The comparison table as fixed-width text (what the CLI prints)."""
    headers, rows = results_rows(summary)
    short = [h.replace("dice ", "") for h in headers]
    widths = [max(14, len(short[0]))] + [max(7, len(h)) for h in short[1:]]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(short, widths)))]
    for row in rows:
        cells = []
        for i, (v, w) in enumerate(zip(row, widths)):
            if i == 0:
                cells.append(str(v).ljust(w))
            elif short[i] == "folding":
                cells.append(("-" if np.isnan(v) else f"{100 * v:.3f}%").rjust(w))
            elif short[i] == "seconds":
                cells.append(f"{v:.0f}".rjust(w))
            elif short[i] in ("hd", "hd95"):
                cells.append(f"{v:.1f}".rjust(w))
            else:
                cells.append(f"{v:.3f}".rjust(w))
        lines.append("  ".join(cells))
    return "\n".join(lines)


#: What the runs summarised together must share besides their config: seeds aside, they must
#: be one experiment (a mean over other data or another fraction is a mean of nothing).
SAME = ("data", "data_sha256", "label_names", "preset", "fraction")


def _smoke(config: Any) -> bool | None:
    """Whether a results file's config is a ``--smoke`` one (None if it cannot be told): a smoke
    config is its own :meth:`~segreg_lite.config.TrainConfig.smoke` version."""
    from segreg_lite.config import TrainConfig

    try:
        held = TrainConfig.from_dict(config)
    except (TypeError, ValueError):
        return None
    return held.smoke() == held


def run_differences(summary: dict[str, Any], first: dict[str, Any], shown: int = 4) -> list[str]:
    """How the run ``summary`` differs from ``first`` other than in its seed, as ``field: value
    vs value`` (``summary``'s first): data, fraction, preset, whether it is a smoke run, and each
    config field (the rounds, the steps, ...); the first ``shown`` config fields, then a count."""
    out = [f"{key}: {summary.get(key)!r} vs {first.get(key)!r}" for key in SAME if summary.get(key) != first.get(key)]
    a, b = summary.get("config"), first.get("config")
    if a != b:
        smoke = _smoke(a), _smoke(b)
        if None not in smoke and smoke[0] != smoke[1]:
            out.append(f"smoke: {smoke[0]} vs {smoke[1]}")
        if isinstance(a, dict) and isinstance(b, dict):
            fields = [f"config.{k}: {a.get(k, 'absent')!r} vs {b.get(k, 'absent')!r}"
                      for k in [*a, *(k for k in b if k not in a)] if a.get(k, "absent") != b.get(k, "absent")]
            out += fields[:shown] + ([f"and {len(fields) - shown} more config fields"] if len(fields) > shown else [])
        else:
            out.append(f"config: {'recorded' if a is not None else 'absent'} vs {'recorded' if b is not None else 'absent'}")
    return out


def load_results(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The ``results.json`` of each run folder, checked (:func:`check_results`) and checked to be
    comparable: the same data, fraction, preset and config (so never a smoke run with a full
    one, nor runs of other round counts); seeds may differ, and a seed twice is an error. A file
    whose SHA-256 is not the one its folder's manifest records (edited since) is refused, named."""
    from segreg_lite.runfolder import changed_since_written

    summaries = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {folder} a finished segreg-lite run folder?")
        summaries.append(check_results(read_json(path, "results file"), path))
        changed = changed_since_written(folder, "results.json")  # well-formed, but not as the run wrote it (a Dice edited by hand)
        if changed:
            raise ValueError(f"{changed}; run the same `segreg-lite run` into {folder} again to write it afresh")
    if not summaries:
        raise ValueError("no run folder given")
    first = summaries[0]
    for folder, s in zip(folders, summaries):
        differ = run_differences(s, first)
        if differ:
            raise ValueError(f"{folder} differs from {folders[0]} in {'; '.join(differ)}: only runs that differ "
                             "in their seed alone are averaged; summarise runs of one setting at a time")
    seeds = [s["seed"] for s in summaries]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the same seed appears twice among the runs (seeds {seeds})")
    return summaries


#: The baseline every semi-supervised method is measured against, seed by seed: the same
#: segmenter, augmentation and schedule as the joint methods' round 0.
BASELINE = "supervised_aug"


def summarize_runs(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method, over the runs (seeds) that include it: ``seeds``, the mean and population std
    (ddof 0) of ``dice``, ``hd``, ``hd95`` and each class's Dice, and for joint methods the test
    Dice per round (``rounds_mean``, ``rounds_std``, over the runs with that many rounds). Methods
    other than :data:`BASELINE` also get ``gain``: their Dice minus the baseline's, per seed
    (``{seed: gain}``, over the runs that hold both), and where a run holds ``upper_bound`` too,
    ``gap_closed``: that gain as a share of the upper bound's lead over the baseline, per seed."""
    out: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(n for s in summaries for n in s["methods"]))
    for name in names:
        runs = [s for s in summaries if name in s["methods"]]
        metrics = [s["methods"][name]["metrics"] for s in runs]
        entry: dict[str, Any] = {"seeds": [s["seed"] for s in runs]}
        for key in ("dice", "hd", "hd95"):
            values = np.array([m[key] for m in metrics], dtype=float)
            entry[key] = (float(values.mean()), float(values.std()))
        per_class = np.array([m["dice_per_class"] for m in metrics], dtype=float)
        entry["dice_per_class"] = (per_class.mean(0).tolist(), per_class.std(0).tolist())
        histories = [s["methods"][name].get("history") for s in runs]
        if all(histories):
            n = min(len(h) for h in histories)
            curves = np.array([[e["test_dice"] for e in h[:n]] for h in histories])
            entry["rounds_mean"], entry["rounds_std"] = curves.mean(0).tolist(), curves.std(0).tolist()
        if name not in (BASELINE, "upper_bound"):
            dice = lambda s, m: s["methods"][m]["metrics"]["dice"]  # noqa: E731
            paired = [s for s in runs if BASELINE in s["methods"]]
            entry["gain"] = {s["seed"]: dice(s, name) - dice(s, BASELINE) for s in paired}
            entry["gap_closed"] = {s["seed"]: (dice(s, name) - dice(s, BASELINE)) / (dice(s, "upper_bound") - dice(s, BASELINE))
                                   for s in paired if "upper_bound" in s["methods"]}
        out[name] = entry
    return out


def format_summary(summaries: Sequence[dict[str, Any]]) -> str:
    """:func:`summarize_runs` as text: mean +- std per method, then each joint method's round curve."""
    table = summarize_runs(summaries)
    classes = summaries[0]["label_names"][1:]
    lines = [f"{summaries[0]['data']}; preset {summaries[0]['preset']}, fraction {summaries[0]['fraction']:g}; "
             "mean +- std over seeds (population std)", ""]
    header = ["method", "seeds", "dice", *classes, "hd", "hd95"]
    pm = lambda m, s, f=".3f": f"{m:{f}} +- {s:{f}}"  # noqa: E731
    rows = []
    for name, e in table.items():
        rows.append([name, ",".join(map(str, e["seeds"])), pm(*e["dice"]),
                     *[pm(m, s) for m, s in zip(*e["dice_per_class"])], pm(*e["hd"], ".1f"), pm(*e["hd95"], ".1f")])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    for name, e in table.items():
        if "rounds_mean" in e:
            curve = ", ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(e["rounds_mean"], e["rounds_std"]))
            lines.append(f"\n{name}, test Dice per round (0 = pre-trained): {curve}")
    gains = [(name, e) for name, e in table.items() if e.get("gain")]
    if gains:
        lines.append(f"\nDice over {BASELINE}, seed by seed (mean +- std over seeds)")
        for name, e in gains:
            per = np.array(list(e["gain"].values()))
            text = ", ".join(f"{g:+.3f} (seed {seed})" for seed, g in e["gain"].items())
            lines.append(f"{name}: {text}; {per.mean():+.3f} +- {per.std():.3f}")
            if e["gap_closed"]:
                closed = np.array(list(e["gap_closed"].values()))
                lines.append(f"  share of the gap to upper_bound closed: {closed.mean():.0%} +- {closed.std():.0%} "
                             f"(seeds {', '.join(map(str, e['gap_closed']))})")
    return "\n".join(lines)


def sweep_table(collected: dict[float, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (fraction, method): the :func:`summarize_runs` entry plus ``fraction`` and ``method``."""
    rows = [{"fraction": fraction, "method": method, **entry}
            for fraction, summaries in collected.items() for method, entry in summarize_runs(summaries).items()]
    order = list(METHODS)
    return sorted(rows, key=lambda r: (order.index(r["method"]), r["fraction"]))


def sweep_cells(collected: dict[float, list[dict[str, Any]]]) -> dict[tuple[str, float], dict[str, Any]]:
    """:func:`sweep_table`'s rows keyed by (method, fraction)."""
    return {(r["method"], r["fraction"]): r for r in sweep_table(collected)}


def sweep_grid(collected: dict[float, list[dict[str, Any]]], key: str = "dice", fmt: str = ".3f",
               pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one metric over a sweep: a row per method (table order), a column per
    fraction, each cell ``mean ± std`` of ``key`` over seeds (empty where the method did not run)."""
    cells = sweep_cells(collected)
    methods = list(dict.fromkeys(m for m, _ in cells))
    rows = [[m, *[f"{cells[m, f][key][0]:{fmt}}{pm}{cells[m, f][key][1]:{fmt}}" if (m, f) in cells else ""
                  for f in collected]] for m in methods]
    return ["method", *[f"{f:.0%}" for f in collected]], rows


def compute_minutes(collected: dict[float, list[dict[str, Any]]]) -> float:
    """The summed wall time of every method of every run, in minutes (what the sweep cost)."""
    return sum(m["metrics"]["seconds"] for runs in collected.values() for s in runs for m in s["methods"].values()) / 60


def format_sweep(collected: dict[float, list[dict[str, Any]]]) -> str:
    """Mean test Dice +- std over seeds, one row per method and one column per fraction."""
    header, body = sweep_grid(collected, pm=" +- ")
    counts = {k: len(r["seeds"]) for k, r in sweep_cells(collected).items()}
    body = [[m, *[f"{v} ({counts[m, f]})" if v else "-" for f, v in zip(collected, values)]] for m, *values in body]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    first = next(iter(collected.values()))[0]
    lines = [f"{first['data']}; preset {first['preset']}; mean test Dice +- std over seeds (number of seeds)", ""]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in [header, *body]]
    lines.append(f"\ncompute: {compute_minutes(collected):.1f} min of training and evaluation in total")
    return "\n".join(lines)


def markdown_sweep(collected: dict[float, list[dict[str, Any]]]) -> str:
    """The sweep as a Markdown table (the README's): mean test Dice +- std over seeds per method
    and fraction, the best method of each fraction (upper bound aside) in bold."""
    cells = sweep_cells(collected)
    fractions = list(collected)
    best = {f: max((r for (m, g), r in cells.items() if g == f and m != "upper_bound"), key=lambda r: r["dice"][0],
                   default=None) for f in fractions}
    methods = list(dict.fromkeys(m for m, _ in cells))
    lines = ["| method | " + " | ".join(f"{f:.0%}" for f in fractions) + " |", "|---" * (len(fractions) + 1) + "|"]
    for m in methods:
        out = []
        for f in fractions:
            r = cells.get((m, f))
            text = f"{r['dice'][0]:.3f} ± {r['dice'][1]:.3f}" if r else ""
            out.append(f"**{text}**" if r is not None and r is best[f] else text)
        lines.append(f"| {m} | " + " | ".join(out) + " |")
    return "\n".join(lines)
