"""Sweeps over annotated fractions and seeds, built on :func:`segreg_lite.experiment.run_experiment`.

After Li et al. (arXiv 2502.03229), whose comparison runs every method at 1%, 5%, 10%, 25% and
50% of the labels. A sweep is one run folder per (fraction, seed) under a root folder,
``f<fraction>-s<seed>`` (``f0.05-s1``), each an ordinary ``segreg-lite run`` folder: its
``results.json`` is kept, and started again a sweep reads finished folders back and resumes an
interrupted one (method by method, joint round by round). The 100%-label upper bound does not
depend on the fraction, so it runs once per seed, in ``full-s<seed>`` at fraction 1.

:func:`run_sweep` runs the plan, here, in a process pool or as submitit jobs (local processes or
a Slurm job array: :mod:`segreg_lite.jobs`, ``executor``); :func:`collect_sweep` reads whatever
the root holds (the results chapter and ``segreg-lite sweep``), grouped by fraction; its tables
are :mod:`segreg_lite.report`'s. The finished 128x128 sweep ships with the package under
:data:`SHIPPED_RESULTS`, which the results chapter reads unless told to recompute.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from segreg_lite.config import TrainConfig
from segreg_lite.data import Data
from segreg_lite.io import read_json
from segreg_lite.jobs import LOGS, SWEEP_REMEDY, SweepRun, check_executor, run_jobs, run_one
from segreg_lite.limits import check_fraction, check_int, check_seed
from segreg_lite.methods import check_methods
from segreg_lite.report import load_results
from segreg_lite.resultfiles import check_results
from segreg_lite.splits import FRACTIONS

__all__ = ["SHIPPED_RESULTS", "SWEEP_FRACTIONS", "SWEEP_METHODS", "SWEEP_REMEDY", "SweepRun", "UPPER", "collect_sweep",
           "plan_sweep", "run_sweep"]  # SweepRun and SWEEP_REMEDY live in segreg_lite.jobs

#: What a sweep runs unless told otherwise: the paper's fractions up to 10%. With seven methods a
#: 2-core CPU cannot add 25% (nor 50%) within the sweep's two hours; the few-label fractions are
#: where semi-supervision is meant to pay (``fractions=FRACTIONS`` runs them all).
SWEEP_FRACTIONS: tuple[float, ...] = FRACTIONS[:3]
#: The baselines, the joint method with combined soft masks and the upper bound (the joint
#: method's ablations, ``joint_seg`` and ``joint_reg``, are the rounds chapter's).
SWEEP_METHODS: tuple[str, ...] = ("supervised", "supervised_aug", "mean_teacher", "unimatch", "reg_only", "joint",
                                  "upper_bound")
UPPER = "upper_bound"
#: Results shipped with the package, so that a clone and a pip-installed package (Colab) read the
#: same numbers without training: ``sweep`` (the results chapter's sweep), ``sweep-longer`` (its
#: longer-schedule check) and ``main`` (the README's ``make main`` run), each the ``results.json``
#: and ``results.csv`` of its run folders plus an ``export.json`` saying where they came from and
#: how long they took. ``scripts/export_results.py`` writes them; :func:`collect_sweep` reads them.
SHIPPED_RESULTS = Path(__file__).resolve().parent / "data" / "shipped_results"


def plan_sweep(root: str | Path, fractions: Sequence[float] = SWEEP_FRACTIONS, seeds: Sequence[int] = (0, 1, 2),
               methods: Sequence[str] = SWEEP_METHODS) -> list[SweepRun]:
    """The runs of a sweep, seed-major (all fractions of seed 0 first, so a cut-short sweep has
    whole seeds), the upper bound last within each seed."""
    methods = check_methods(methods)
    if not fractions or not seeds:
        raise ValueError(f"a sweep needs at least one fraction and one seed, got fractions {list(fractions)}, seeds {list(seeds)}")
    for f in fractions:
        check_fraction(f, "sweep fractions", one=False, why=" (the upper bound covers 1)")
    for s in seeds:
        check_seed(s)
    if len(set(fractions)) != len(fractions) or len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated fraction or seed in fractions {list(fractions)}, seeds {list(seeds)}")
    root = Path(root)
    per_fraction = tuple(m for m in methods if m != UPPER)
    runs = []
    for seed in seeds:
        if per_fraction:
            runs += [SweepRun(float(f), int(seed), per_fraction, root / f"f{f:g}-s{seed}") for f in fractions]
        if UPPER in methods:
            runs.append(SweepRun(1.0, int(seed), (UPPER,), root / f"full-s{seed}"))
    return runs


def run_sweep(
    data: Data,
    root: str | Path,
    *,
    fractions: Sequence[float] = SWEEP_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = SWEEP_METHODS,
    preset: str = "sweep",
    config: TrainConfig | None = None,
    smoke: bool = False,
    device: str = "auto",
    jobs: int = 1,
    executor: str = "pool",
    slurm: str | Mapping[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
) -> list[dict[str, Any]]:
    """Run every (fraction, seed) of the plan on ``data`` into ``root``; return their summaries.

    Runs already finished are read back, not trained again; a folder holding a run with other
    settings is an error (from :func:`run_experiment`), never overwritten. ``config`` overrides
    ``preset`` for every run; ``smoke`` shrinks its schedules. ``executor`` says where the runs
    not finished yet run (:mod:`segreg_lite.jobs`): ``pool`` (the default), ``jobs`` > 1 runs
    that many at once in worker processes, each with an equal share of torch's CPU threads (on a
    small CPU, two one-thread workers get more done than one two-thread process; results then
    differ from a one-job sweep in the last digits, as any change of thread count does);
    ``local``, submitit jobs on this machine, ``jobs`` at a time; ``slurm``, a Slurm job array
    (``slurm``: its options, :func:`segreg_lite.jobs.slurm_options`), which this call waits for;
    ``debug``, submitit's in-process executor. A submitit job makes its data again from
    ``data.recipe`` (data from :func:`segreg_lite.data.load_data`), and its logs go to
    ``root/.submitit``.
    """
    plan = plan_sweep(root, fractions, seeds, methods)
    jobs = check_int(jobs, "jobs", low=1)
    slurm = check_executor(executor, slurm, jobs=jobs, device=device)
    finished_runs = {r.folder for r in plan if r.done(data, preset=preset, config=config, smoke=smoke)}
    todo = [r for r in plan if r.folder not in finished_runs]
    how = {"pool": f" in {jobs} worker processes" if jobs > 1 and len(todo) > 1 else "",
           "local": f" as local submitit jobs, {min(jobs, len(todo))} at a time", "slurm": " as a Slurm job array",
           "debug": " through submitit's in-process executor"}[executor]
    log(f"sweep: {len(plan)} runs under {root}, {len(plan) - len(todo)} finished earlier, {len(todo)} to run"
        f"{how if todo else ''}")
    kw = dict(preset=preset, config=config, smoke=smoke, device=device)
    start = time.perf_counter()
    run_jobs(data, todo, kw, executor=executor, jobs=jobs, slurm=slurm, logs=Path(root) / LOGS, log=log)
    if executor != "pool":
        kw["device"] = "cpu"  # the jobs ran them; here they are only read back (on a login node too)
    summaries = []
    for i, run in enumerate(plan, 1):
        label = f"[{i}/{len(plan)}] fraction {run.fraction:g}, seed {run.seed}"
        done = run.folder in finished_runs or run.done(data, preset=preset, config=config, smoke=smoke)  # or by a worker
        if not done and executor != "pool":  # a job ended without finishing it: never trained here instead
            raise ValueError(f"{run.folder}: its job ended, but the folder holds no finished run of this sweep (its code "
                             "or settings changed since it started?); run the sweep again to resume it")
        log(f"{label}: finished, read from {run.folder}" if done else f"{label}: {', '.join(run.methods)} ...")
        t0 = time.perf_counter()
        summaries.append(run_one(data, run, kw, progress=progress,
                                 log=(lambda msg: None) if done else (lambda msg: log(f"  {msg}"))))
        if time.perf_counter() - t0 > 1:
            log(f"{label}: done in {(time.perf_counter() - t0) / 60:.1f} min "
                f"({(time.perf_counter() - start) / 60:.1f} min so far)")
    return summaries


def collect_sweep(root: str | Path, fractions: Sequence[float] | None = None,
                  seeds: Sequence[int] | None = None) -> dict[float, list[dict[str, Any]]]:
    """Every finished run under ``root`` (folders with a ``results.json``), grouped by fraction and
    sorted by it, each group checked comparable by :func:`load_results` (runs of one fraction must
    differ in their seed alone: a smoke run or one of another config is refused, named). ``fractions`` / ``seeds``
    keep only those runs (the upper bound's fraction 1 is always kept)."""
    root = Path(root)
    by_fraction: dict[float, list[Path]] = {}
    for path in sorted(root.glob("*/results.json")):
        held = check_results(read_json(path, "results file"), path)
        fraction = float(held["fraction"])
        if (fractions is None or fraction in fractions or fraction == 1.0) and (seeds is None or held["seed"] in seeds):
            by_fraction.setdefault(fraction, []).append(path.parent)
    if not by_fraction:
        raise FileNotFoundError(f"no finished run (*/results.json) under {root}"
                                f"{' for these fractions and seeds' if fractions or seeds else ''}: run the sweep first")
    return {f: load_results(by_fraction[f]) for f in sorted(by_fraction)}
