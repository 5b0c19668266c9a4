"""Benchmark: joint round schedules, each from the same pre-trained models of a finished run.

    python benchmarks/bench_joint.py RUN [RUN ...] [--variant KEY=VALUE[,KEY=VALUE...]] ...
        [--subjects 300] [--data-seed 0] [--mode combined] [--device cpu]

Reads the split, seed, config and the two pre-trained models of a ``segreg-lite run`` folder on
the default cohort (``checkpoints/pretrained_seg.pt``, ``pretrained_reg.pt``: the models every
joint method of the run starts from) and runs the joint rounds
(:func:`segreg_lite.joint.train_joint`) with the run's own config, then once per ``--variant``:
the run's config with some of the settings that only the rounds read changed, e.g.
``--variant seg_round_lr=1e-3`` or ``--variant rounds=3,seg_round_steps=300``. For each it
prints, round by round, the segmenter's test Dice and the pseudo-labels' Dice on the unannotated
images (the mask used, and the registration and segmentation masks alone), the registration
network's multi-atlas Dice on the test subjects, then the gain of the last round over round 0
(the pre-trained segmenter, i.e. the ``supervised_aug`` baseline) and the minutes it took. So a
question such as "would longer rounds or a higher learning rate help on this seed?" is answered
from one command, at the cost of the rounds alone. Given several run folders (one per seed), it
ends with one row per variant over the seeds: each seed's last test Dice, the mean +- std of the
gain and of the registration's change from round 0: the ablation table of the "beyond the paper"
chapter. The run's own rounds ("as run") are read from its results file when it holds them (the
rounds are seeded, so a rerun gives the same numbers). After Li et al. (arXiv 2502.03229).
Nothing is asserted. A run made on other data than the cohort these arguments build (its
``run.json`` records the data's SHA-256), a damaged ``run.json`` and files changed since the run
wrote them are each refused in one line.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from segreg_lite.checkpoint import load_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.data import load_data
from segreg_lite.io import read_json, write_json
from segreg_lite.joint import train_joint
from segreg_lite.limits import check_seed
from segreg_lite.pseudo import MODES
from segreg_lite.runfolder import changed_since_written, data_digest
from segreg_lite.splits import Split

#: The settings a variant may change: those the rounds read. Pre-training and the networks' shape
#: are fixed by the run's checkpoints.
ROUND_FIELDS = ("rounds", "seg_round_lr", "seg_round_steps", "reg_round_lr", "reg_round_steps", "batch_size",
                "augment", "soft_ce", "local_ncc", "reg_smoothness", "reg_passes", "reg_io_steps", "reg_io_lr",
                "label_weight", "n_atlas", "n_tta", "tta", "confidence_weight", "annotated_share", "strong_views", "online_share", "pair_share",
                "appearance", "em_iters", "em_prior_power", "em_sigma_px", "amp")

#: Per round: the history key and its column title.
COLUMNS = (("test_dice", "test Dice"), ("pseudo_dice", "pseudo-labels"), ("pseudo_dice_reg", "reg masks"),
           ("pseudo_dice_seg", "seg masks"), ("reg_dice", "registration on test"))


def parse_variant(text: str, base: TrainConfig) -> dict[str, Any]:
    """``"seg_round_lr=1e-3,rounds=3"`` -> ``{"seg_round_lr": 0.001, "rounds": 3}``, each value of
    its field's type; a SystemExit naming the problem otherwise."""
    kinds = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    changes: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise SystemExit(f"--variant {text!r}: expected KEY=VALUE pairs separated by commas, got {item!r}")
        if key not in kinds:
            raise SystemExit(f"--variant {text!r}: {key!r} is not a TrainConfig setting")
        if key not in ROUND_FIELDS:
            raise SystemExit(f"--variant {text!r}: {key!r} is fixed by the run's pre-trained models; "
                             f"a variant may change {', '.join(ROUND_FIELDS)}")
        value = value.strip()
        try:
            if kinds[key] is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                changes[key] = value.lower() in ("true", "1")
            else:
                changes[key] = kinds[key](value)
        except ValueError:
            kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a word"}[kinds[key]]
            raise SystemExit(f"--variant {text!r}: {key} takes {kind}, got {value!r}") from None
    if not changes:
        raise SystemExit(f"--variant {text!r}: name at least one KEY=VALUE")
    try:
        replace(base, **changes)
    except ValueError as err:
        raise SystemExit(f"--variant {text!r}: {err}") from None
    return changes


def load_run(folder: Path) -> tuple[Split, TrainConfig, int, dict[str, Path], dict[str, Any]]:
    """The split, config, seed and pre-trained checkpoint paths of a finished run folder, and
    ``run.json`` itself (what data it ran on); a damaged ``run.json``, or a file changed since the
    run wrote it, is a SystemExit of one line naming it."""
    ckpts = {w: folder / "checkpoints" / f"pretrained_{w}.pt" for w in ("seg", "reg")}
    path = folder / "run.json"
    for p in [path, *ckpts.values()]:
        if not p.is_file():
            raise SystemExit(f"{p} is missing: run `segreg-lite run` with a joint method into {folder} first")
    remedy = f"make the run again (segreg-lite run ... --overwrite --out {folder})"
    try:
        spec = read_json(path, "run file")
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
        run = Split.from_dict(spec["split"]), TrainConfig.from_dict(spec["config"]), check_seed(spec["seed"]), ckpts, spec
    except ValueError as err:
        why = str(err) if str(path) in str(err) else f"{path}: damaged run file ({' '.join(str(err).split())})"
        raise SystemExit(f"{why}; {remedy}") from None
    except (KeyError, TypeError) as err:
        what = f"no {err} entry" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise SystemExit(f"{path}: damaged run file ({what}); {remedy}") from None
    for p in [path, *ckpts.values()]:  # well-formed, but not as the run wrote them (edited, damaged)
        changed = changed_since_written(folder, p.relative_to(folder).as_posix())
        if changed:
            raise SystemExit(f"{changed}; {remedy}")
    return run


def check_data(folder: Path, spec: dict[str, Any], data: Any) -> None:
    """Refuse, in one line, to run the models of the run in ``folder`` (``spec``: its run.json)
    on other data than the run's: the data's SHA-256 (or, for a run.json without one, its
    description) must be the run's. A run's models tested on another cohort would score images
    that may have been their training images."""
    held = spec.get("data_sha256")
    same = (held == data_digest(data.images, data.labels, data.label_names, data.subjects)) if held \
        else spec.get("data") == data.description
    if not same:
        raise SystemExit(f"{folder} was run on other data ({spec.get('data', 'not recorded')}) than these "
                         f"({data.description}): pass the run's --subjects, --data-seed and --size, or another run folder")


def _held_history(folder: Path, config: TrainConfig, mode: str) -> list[dict] | None:
    """The round history of the run's own joint method when its results hold one made with
    ``config`` (the same numbers a rerun gives: the rounds are seeded), else None."""
    name = {"combined": "joint", "reg": "joint_reg", "seg": "joint_seg"}[mode]
    path = folder / "results.json"
    if not path.is_file() or changed_since_written(folder, "results.json"):  # edited since: recomputed instead
        return None
    try:
        results = read_json(path, "results file")
        held = results["methods"][name]
        # Through from_dict: a field added since the run, at its default, is the run's behaviour.
        same = TrainConfig.from_dict(results["config"]).to_dict() == config.to_dict()
    except (ValueError, KeyError, TypeError):
        return None
    if not same or not isinstance(held, dict) or "history" not in held:
        return None
    return held["history"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="finished segreg-lite run folders on the default cohort (one per seed)")
    p.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE...] of the round settings")
    p.add_argument("--subjects", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    p.add_argument("--mode", default="combined", choices=MODES, help="which masks the pseudo-labels average")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the table over seeds to this JSON file (atomically)")
    args = p.parse_args(argv)
    runs = [(folder, *load_run(folder)) for folder in args.runs]
    names = ["as run"] + list(args.variant)
    changes_of = {text: parse_variant(text, runs[0][2]) for text in args.variant}
    data = load_data("cohort", n_subjects=args.subjects, seed=args.data_seed, size=args.size)
    # variant -> per run: (last test Dice, gain over round 0, registration change, minutes or None)
    ends: dict[str, list[tuple[float, float, float, float | None]]] = {name: [] for name in names}
    curves: dict[str, list[list[float]]] = {name: [] for name in names}  # test Dice per round, per run
    for folder, split, base, seed, ckpts, spec in runs:
        if split.n_subjects != len(data.images):
            raise SystemExit(f"{folder} was run on {split.n_subjects} subjects, not this cohort's {len(data.images)}")
        check_data(folder, spec, data)
        try:
            seg0, reg0 = (load_checkpoint(ckpts[w]).models[w].eval() for w in ("seg", "reg"))
        except (ValueError, KeyError) as err:
            raise SystemExit(f"{' '.join(str(err).split())}; make the run again (segreg-lite run ... --overwrite "
                             f"--out {folder})") from None
        print(f"{folder}: {data.description}; seed {seed}, {len(split.annotated)} annotated, "
              f"{len(split.unannotated)} unannotated, {len(split.test)} test images; {args.mode} pseudo-labels\n"
              "Mean Dice over the foreground classes: the segmenter on the test images; the pseudo-labels, and the "
              "registration and segmentation masks alone, on the unannotated images; multi-atlas registration on "
              "the test images", flush=True)
        for name in names:
            config = replace(base, **changes_of.get(name, {}))
            start = time.perf_counter()
            h = _held_history(folder, config, args.mode) if name == "as run" else None
            minutes = None
            if h is None:
                result = train_joint(data.images, data.labels, split, config, mode=args.mode, seed=seed,
                                     num_classes=data.num_classes, segmenter=copy.deepcopy(seg0),
                                     regnet=copy.deepcopy(reg0), device=args.device)
                h, minutes = result.history, (time.perf_counter() - start) / 60
            print(f"\n{name}{' (the run’s own rounds, read from its results)' if minutes is None else ''}: "
                  f"{config.rounds} round(s) of {config.seg_round_steps} segmenter steps at lr {config.seg_round_lr:g} "
                  f"and {config.reg_round_steps} registration steps at lr {config.reg_round_lr:g}")
            # A refined mask (em_iters) also has the Dice of the mask it was refined from.
            columns = COLUMNS[:2] + (("pseudo_dice_prior", "before refinement"),) * ("pseudo_dice_prior" in h[0]) + COLUMNS[2:]
            print("round | " + " | ".join(title for _, title in columns))
            print(" | ".join(["---"] * (len(columns) + 1)))
            for e in h:
                print(f"{e['round']} | " + " | ".join(f"{e[key]:.4f}" for key, _ in columns))
            gain = h[-1]["test_dice"] - h[0]["test_dice"]
            took = "" if minutes is None else f", in {minutes:.1f} min"
            print(f"gain of the last round's segmenter over round 0: {gain:+.4f} test Dice{took}", flush=True)
            ends[name].append((h[-1]["test_dice"], gain, h[-1]["reg_dice"] - h[0]["reg_dice"], minutes))
            curves[name].append([e["test_dice"] for e in h])
    seeds = ", ".join(str(r[3]) for r in runs)
    print(f"\nOver seeds {seeds}: the last round's test Dice per seed; its gain over round 0 (the supervised_aug "
          "baseline) and the change of the registration's test Dice from round 0, mean +- std over seeds "
          "(population std); minutes per run")
    print("variant | last test Dice | gain over round 0 | registration change | minutes")
    print("--- | --- | --- | --- | ---")
    for name in names:
        rows = ends[name]
        dice = ", ".join(f"{r[0]:.4f}" for r in rows)
        gains, regs = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        mins = [r[3] for r in rows if r[3] is not None]
        took = f"{np.mean(mins):.1f}" if mins else "-"
        print(f"{name} | {dice} | {gains.mean():+.4f} +- {gains.std():.4f} | {regs.mean():+.4f} +- {regs.std():.4f} | {took}")
    if args.json is not None:
        write_json(args.json, {
            "runs": [str(r[0]) for r in runs], "seeds": [r[3] for r in runs], "mode": args.mode,
            "config": runs[0][2].to_dict(),
            "variants": [{"name": name, "changes": changes_of.get(name, {}), "test_dice": [r[0] for r in ends[name]],
                          "gain": [r[1] for r in ends[name]], "reg_change": [r[2] for r in ends[name]],
                          "minutes": [r[3] for r in ends[name]], "test_dice_per_round": curves[name]}
                         for name in names]})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
