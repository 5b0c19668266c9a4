"""The ``segreg-lite`` command (also ``python -m segreg_lite``).

    segreg-lite cohort [--subjects 200] [--seed 0] [--size 128 128] [--out results/cohort]

    segreg-lite run [--data cohort|oasis|FOLDER] [--fraction 0.01] [--methods ...] [--preset cpu]
                    [--seed 0] [--out results/run] [--overwrite] [--smoke]

    segreg-lite summary FOLDER [FOLDER ...]

    segreg-lite sweep [--fractions 0.01,0.05,0.1,0.25,0.5] [--seeds 0,1,2] [--methods ...]
                      [--preset sweep] [--size 64 64] [--jobs 1] [--out results/sweep] [--smoke]
                      [--executor pool|local|slurm] [--slurm partition=gpu,time=240,gpus=1,array_parallelism=8]

Every expected failure (a bad argument, a damaged or foreign file, an output folder that cannot
be written or is in use by another run) prints one line, ``segreg-lite: error: ...``, writes
nothing and exits with status 2; ``--debug`` (before or after the command) shows the traceback
instead. Arguments and the output folder are checked before any data is generated or loaded,
by the checks the API applies (:mod:`segreg_lite.limits`), each error naming its flag.

``cohort`` generates the default embedded cohort, prints a summary (subjects, the seg4 label
table, class frequencies) and writes an overview figure and ``summary.json``. ``run`` trains and
evaluates methods on one seeded split (:mod:`segreg_lite.experiment`), writes ``results.json``
and ``results.csv`` into ``--out`` and prints the comparison table; run again, it resumes.
``summary`` reads the results of several runs (one per seed) and prints mean +- std per method
and the joint method's test Dice per round. ``sweep`` runs every method at every fraction and
seed (:mod:`segreg_lite.sweep`), one run folder each, skipping finished ones, and prints Dice
against fraction.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
import traceback
import warnings
from pathlib import Path

from segreg_lite import __version__


def _check_cohort(subjects: int, seed: int, size: list[int], seed_flag: str, low: int | None = None, who: str = "") -> None:
    """The generated cohort's arguments (``--subjects``, the seed of flag ``seed_flag``, ``--size``
    of at least ``low`` pixels a side, ``who`` saying which methods need that), each refused
    naming its flag before the cohort is made, by the checks its API applies (:mod:`segreg_lite.limits`)."""
    from segreg_lite.limits import SIZE_MULTIPLE, check_seed, check_size, check_subjects

    check_subjects(subjects, "--subjects")
    check_seed(seed, seed_flag)
    check_size(size, "--size", low=SIZE_MULTIPLE if low is None else low, why=who)


def _cohort(args: argparse.Namespace) -> int:
    from segreg_lite.limits import check_fraction
    from segreg_lite.runfolder import check_out, make_folder

    out = check_out(args.out, "--out")
    _check_cohort(args.subjects, args.seed, args.size, "--seed")
    check_fraction(args.fraction, "--fraction")
    created = make_folder(out, probe=True)  # an output folder that cannot be written fails before the work
    try:
        return _write_cohort(args, out)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed command leaves nothing behind
        raise


def _write_cohort(args: argparse.Namespace, out: Path) -> int:
    from segreg_lite.cohort import CohortConfig, generate_cohort
    from segreg_lite.io import atomic_path, write_json
    from segreg_lite.labels import SEG4_NAMES
    from segreg_lite.splits import make_split

    start = time.perf_counter()
    cohort = generate_cohort(args.subjects, seed=args.seed, config=CohortConfig(size=tuple(args.size)), progress=True)
    elapsed = time.perf_counter() - start
    summary = cohort.summary()
    split = make_split(len(cohort), seed=args.seed, fraction=args.fraction, subjects=cohort.subjects)
    h, w = cohort.config.size
    print(f"\nsegreg-lite {__version__}: embedded MNI ICBM152 cohort")
    print(f"  {len(cohort)} subjects, {h}x{w} pixels of {cohort.spacing_mm:.2f} mm, seed {args.seed}, made in {elapsed:.1f} s")
    print(
        f"  split: {len(split.train)} train ({len(split.annotated)} annotated at {args.fraction:g}), "
        f"{len(split.val)} validation, {len(split.test)} test"
    )
    print(f"\n  {'label':>5}  {'class':<15} {'pixels':>7}  {'area mm2 (median, 5-95%)':>26}")
    for k, name in enumerate(SEG4_NAMES):
        c = summary["classes"][name]
        print(
            f"  {k:>5}  {name:<15} {100 * c['frequency']:6.2f}%  "
            f"{c['area_mm2_median']:9.0f} ({c['area_mm2_p5']:.0f}-{c['area_mm2_p95']:.0f})"
        )
    summary["split"] = split.to_dict()
    write_json(out / "summary.json", summary)
    import matplotlib

    matplotlib.use("Agg")
    from segreg_lite.plotting import cohort_overview

    fig = cohort_overview(cohort)
    with atomic_path(out / "overview.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"\n  wrote {out / 'overview.png'} and {out / 'summary.json'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from segreg_lite.config import check_preset
    from segreg_lite.data import load_data
    from segreg_lite.experiment import check_unannotated, min_size, resolve_run, run_experiment
    from segreg_lite.limits import check_fraction, check_int, check_seed
    from segreg_lite.methods import check_methods
    from segreg_lite.report import format_table
    from segreg_lite.runfolder import check_out, probe_folder
    from segreg_lite.train import check_device

    # Every argument is checked before the data is made or loaded: a typo should not cost minutes.
    out = check_out(args.out, "--out")
    methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    check_seed(args.seed, "--seed")
    check_fraction(args.fraction, "--fraction")
    check_preset(args.preset, "--preset")
    if args.rounds is not None:
        check_int(args.rounds, "--rounds", low=0)
    check_device(args.device)
    if args.data == "cohort":
        _check_cohort(args.subjects, args.data_seed, args.size, "--data-seed", *min_size(methods))
    check_unannotated(methods, args.fraction, args.subjects if args.data == "cohort" else None, seed=args.seed,
                      name="--fraction", remedy="leave them out of --methods")
    probe_folder(out, "--out")  # a file, a folder that cannot be written, one in use by another run
    start = time.perf_counter()
    data = load_data(args.data, n_subjects=args.subjects, seed=args.data_seed, size=tuple(args.size))
    config = None
    if args.rounds is not None:
        config = resolve_run(data, fraction=args.fraction, seed=args.seed, preset=args.preset, config=None)[1]
        config = replace(config, rounds=args.rounds)
    print(f"segreg-lite {__version__}: {data.description}; {args.fraction:g} annotated, seed {args.seed}, "
          f"preset {args.preset}{' (smoke)' if args.smoke else ''}; methods {', '.join(methods)}", flush=True)
    summary = run_experiment(data, args.out, methods=methods, fraction=args.fraction, preset=args.preset, config=config,
                             seed=args.seed, smoke=args.smoke, device=args.device, overwrite=args.overwrite, progress=not args.quiet,
                             log=lambda msg: print(msg, flush=True))
    print(f"\nmean over {len(summary['split']['test'])} test subjects (Dice; Hausdorff distances in pixels)\n")
    print(format_table(summary))
    print(f"\nwrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'results.csv'} "
          f"({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from segreg_lite.report import format_summary, load_results

    print(format_summary(load_results(args.folders)))
    return 0


def _numbers(text: str, kind: type, flag: str) -> list:
    """The comma-separated numbers of ``flag``; text that is not such a list, or an empty one, is
    an error naming the flag."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated {'numbers' if kind is float else 'integers'}, "
                         f"got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty: give at least one value, comma-separated")
    return values


def _sweep(args: argparse.Namespace) -> int:
    from segreg_lite.config import check_preset
    from segreg_lite.data import load_data
    from segreg_lite.experiment import check_unannotated, min_size
    from segreg_lite.jobs import check_executor
    from segreg_lite.limits import check_fraction, check_int, check_seed
    from segreg_lite.methods import check_methods
    from segreg_lite.report import format_sweep
    from segreg_lite.runfolder import check_out, probe_folder
    from segreg_lite.sweep import collect_sweep, plan_sweep, run_sweep

    # Every argument is checked before the data is made or loaded: a typo should not cost minutes.
    out = check_out(args.out, "--out")
    start = time.perf_counter()
    fractions, seeds = _numbers(args.fractions, float, "--fractions"), _numbers(args.seeds, int, "--seeds")
    for f in fractions:
        check_fraction(f, "every fraction in --fractions", one=False, why=" (the upper bound covers 1)")
    for s in seeds:
        check_seed(s, "every seed in --seeds")
    methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    check_preset(args.preset, "--preset")
    check_int(args.jobs, "--jobs", low=1)
    slurm = check_executor(args.executor, args.slurm, jobs=args.jobs, device=args.device, flag="--")  # and --device
    if args.data == "cohort":
        _check_cohort(args.subjects, args.data_seed, args.size, "--data-seed", *min_size(methods))
    plan = plan_sweep(out, fractions, seeds, methods)  # repeated fractions or seeds
    for run in plan:  # a fraction that annotates every training image of a small cohort
        check_unannotated(run.methods, run.fraction, args.subjects if args.data == "cohort" else None, seed=run.seed,
                          name="--fractions", remedy="leave them out of --methods")
    probe_folder(out, "--out", lock=False)  # the root: a file, or a folder that cannot be written
    for run in plan:
        if run.folder.is_dir():
            probe_folder(run.folder, "--out")  # a run folder in use by another run
    data = load_data(args.data, n_subjects=args.subjects, seed=args.data_seed, size=tuple(args.size))
    print(f"segreg-lite {__version__}: {data.description}; preset {args.preset}{' (smoke)' if args.smoke else ''}; "
          f"fractions {', '.join(f'{f:g}' for f in fractions)}; seeds {', '.join(map(str, seeds))}", flush=True)
    run_sweep(data, args.out, fractions=fractions, seeds=seeds, methods=methods, preset=args.preset, smoke=args.smoke,
              device=args.device, jobs=args.jobs, executor=args.executor, slurm=slurm, progress=not args.quiet,
              log=lambda msg: print(msg, flush=True))
    print()
    print(format_sweep(collect_sweep(args.out, fractions=fractions, seeds=seeds)))  # this sweep's runs only
    print(f"\nresults under {args.out} ({(time.perf_counter() - start) / 60:.1f} min wall time)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from segreg_lite.limits import MAX_SIZE

    parser = argparse.ArgumentParser(prog="segreg-lite", description="Semi-supervised segmentation with registration-made pseudo-labels.")
    parser.add_argument("--version", action="version", version=f"segreg-lite {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    # --debug is also accepted after the command; SUPPRESS keeps a subcommand from resetting it
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, parents=[debug])
    p = command("cohort", help="generate the embedded cohort, print its summary, write an overview figure")
    p.add_argument("--subjects", type=int, default=200, help="number of subjects (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help=f"image size, multiples of 16 up to {MAX_SIZE} (default 128 128)")
    p.add_argument("--fraction", type=float, default=0.01, help="annotated fraction of the training subjects (default 0.01)")
    p.add_argument("--out", default="results/cohort", help="output folder (default results/cohort)")
    p.set_defaults(func=_cohort)

    from segreg_lite.methods import DEFAULT_METHODS, METHODS

    p = command("run", help="train and compare methods on one split; write results.json/.csv, print the table",
                       epilog="methods: " + "; ".join(f"{k}: {v.description}" for k, v in METHODS.items()))
    p.add_argument("--data", default="cohort", help="'cohort' (embedded, default), 'oasis' (download) or a NIfTI folder")
    p.add_argument("--subjects", type=int, default=300, help="cohort size (default 300)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated cohort (default 0)")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help=f"cohort image size, multiples of 16 up to {MAX_SIZE} (default 128 128)")
    p.add_argument("--fraction", type=float, default=0.01, help="annotated fraction of the training subjects (default 0.01)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated (default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--preset", default="cpu", help="training settings: cpu, quick, sweep, paper or smoke (default cpu)")
    p.add_argument("--rounds", type=int, default=None, help="joint rounds (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--out", default="results/run", help="output folder (default results/run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run with other settings held in --out (removes only the files segreg-lite wrote there)")
    p.add_argument("--smoke", action="store_true", help="tiny schedules: checks every code path in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)

    p = command("summary", help="mean +- std over the seeds of several run folders, and the joint round curve")
    p.add_argument("folders", nargs="+", help="run folders (results.json inside), one per seed, same data/preset/fraction")
    p.set_defaults(func=_summary)

    from segreg_lite.sweep import SWEEP_FRACTIONS, SWEEP_METHODS

    p = command("sweep", help="every method at every annotated fraction and seed; skips finished runs")
    p.add_argument("--data", default="cohort", help="'cohort' (embedded, default), 'oasis' (download) or a NIfTI folder")
    p.add_argument("--subjects", type=int, default=300, help="cohort size (default 300)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated cohort (default 0)")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help=f"cohort image size, multiples of 16 up to {MAX_SIZE} (default 128 128)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in SWEEP_FRACTIONS),
                   help=f"annotated fractions, comma-separated (default {','.join(f'{f:g}' for f in SWEEP_FRACTIONS)}; the paper adds 0.25 and 0.5)")
    p.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (default 0,1,2)")
    p.add_argument("--methods", default=",".join(SWEEP_METHODS), help=f"comma-separated (default {','.join(SWEEP_METHODS)})")
    p.add_argument("--preset", default="sweep", help="training settings: sweep, cpu, quick or paper (default sweep)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--out", default="results/sweep", help="root folder, one run folder per fraction and seed (default results/sweep)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, in worker processes sharing the CPU threads (default 1)")
    p.add_argument("--executor", default="pool", help="where the runs run: pool (worker processes, default), local "
                   "(submitit jobs on this machine), slurm (a Slurm job array); local and slurm need segreg-lite[cluster]")
    p.add_argument("--slurm", default=None, metavar="KEY=VALUE,...",
                   help="with --executor slurm: partition, time (minutes, default 240), gpus (default 1), cpus "
                        "(default 4), mem (GB), array_parallelism, account, qos, constraint, requeues (default 3)")
    p.add_argument("--smoke", action="store_true", help="tiny schedules: checks every code path in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_sweep)
    return parser


def _one_line(err: BaseException) -> str:
    """An expected failure as one line: OS errors as ``<path>: <reason>``, others as their message."""
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        text = f"{where}{err.strerror}" + (f" (and {err.filename2})" if err.filename2 else "")
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:  # a warning is one line too ("the download is unverified"), --debug shows where
                warnings.showwarning = lambda message, category, *rest, **kw: print(
                    f"segreg-lite: warning: {' '.join(str(message).split())}", file=sys.stderr)
            return args.func(args)
    except (ValueError, OSError) as err:  # bad input, damaged or foreign files, folders that cannot be written
        if args.debug:
            traceback.print_exc()
        print(f"segreg-lite: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segreg-lite: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
