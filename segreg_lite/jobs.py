"""Where a sweep's runs run: this machine's process pool, or submitit's jobs (local processes, a Slurm array).

:func:`segreg_lite.sweep.run_sweep` plans a sweep (one :class:`SweepRun` per run folder), skips
the finished runs and reads every run back at the end; :func:`run_jobs` runs the others on one
of :data:`EXECUTORS`:

- ``pool`` (the default): worker processes of this Python process, ``jobs`` at a time, each with
  an equal share of torch's CPU threads (the data is pickled to them);
- ``local``: each run a submitit job of its own on this machine (a process that outlives a
  crash of the command), ``jobs`` at a time, one GPU each where there are GPUs;
- ``slurm``: one Slurm job array through submitit, a GPU per job (:data:`SLURM_OPTIONS`: the
  partition, time limit, GPUs, CPUs, memory, how many at once), logs per job under
  ``<root>/.submitit``. The sweep root must be on a filesystem that every node sees and whose
  ``flock`` locks are shared between nodes (the run folders' one-writer lock);
- ``debug``: submitit's in-process executor: what a job does, in this process (tests, pdb).

A submitit job is a :class:`SweepJob`: it carries the data's recipe (``Data.recipe``: source,
subjects, seed, size), not its arrays, and makes the data again where it runs, refusing data
that came out different (by its digest); it runs
:func:`~segreg_lite.experiment.run_experiment` on its run folder on the device it is given
(``auto``: the GPU Slurm gave it). It is a :class:`submitit.helpers.Checkpointable`: at its time
limit or on preemption submitit calls :meth:`SweepJob.checkpoint`, which requeues the same job,
and the requeued job resumes its run folder (finished methods read back, a joint run from its
last round). submitit is the optional extra ``pip install segreg-lite[cluster]``, imported only
here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from segreg_lite import __version__
from segreg_lite.config import TrainConfig
from segreg_lite.container import Data, DataRecipe
from segreg_lite.data import from_recipe
from segreg_lite.experiment import finished, run_experiment
from segreg_lite.runfolder import METHODS_DIR, OVERWRITE, RunFolderError, code_digest, data_digest
from segreg_lite.train import check_device

try:  # the optional extra: segreg-lite[cluster]
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - exercised by the missing-extra test through sys.modules
    submitit = None
    Checkpointable = object

#: How a sweep's runs can be run (:func:`run_jobs`); ``pool`` needs nothing, the others submitit.
EXECUTORS: tuple[str, ...] = ("pool", "local", "slurm", "debug")
#: What a missing submitit says to install.
INSTALL = "pip install segreg-lite[cluster]"
#: What a sweep's refusal of a run folder holding another run suggests instead of ``--overwrite``.
SWEEP_REMEDY = "move that folder away (segreg-lite sweep has no --overwrite and never removes a run)"
#: Where submitit keeps its jobs' pickles and logs, under the sweep root (``%j``: the job id).
LOGS = ".submitit"
#: A local job's time limit: none worth the name (submitit's own default is 2 minutes).
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
#: ``--slurm key=value`` keys: key -> (submitit ``SlurmExecutor`` parameter, type, what it is).
#: ``requeues`` is the executor's ``max_num_timeout``.
SLURM_OPTIONS: dict[str, tuple[str, type, str]] = {
    "partition": ("partition", str, "the partition (queue)"),
    "time": ("time", int, "minutes per job; at the limit a job is requeued and resumes"),
    "gpus": ("gpus_per_node", int, "GPUs per job"),
    "cpus": ("cpus_per_task", int, "CPU cores per job (torch uses as many threads)"),
    "mem": ("mem", int, "GB of memory per job"),
    "array_parallelism": ("array_parallelism", int, "jobs of the array running at once"),
    "account": ("account", str, "the account charged"),
    "qos": ("qos", str, "the quality of service"),
    "constraint": ("constraint", str, "node features (a GPU model, say)"),
    "requeues": ("max_num_timeout", int, "times a job may reach its time limit and be requeued"),
}
#: What ``--executor slurm`` asks for unless told otherwise: 4 hours, one GPU and 4 cores a job.
SLURM_DEFAULTS: dict[str, Any] = {"time": 240, "gpus": 1, "cpus": 4, "requeues": 3}


class SweepJobError(ValueError):
    """A job of a sweep failed (its run folder keeps what it finished: run the sweep again to resume)."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its fraction, seed, methods and folder."""

    fraction: float
    seed: int
    methods: tuple[str, ...]
    folder: Path

    def done(self, data: Data | None = None, *, preset: str = "sweep", config: TrainConfig | None = None,
             smoke: bool = False) -> bool:
        """Every method's results file is there; given ``data`` (and the sweep's ``preset`` or
        ``config``), each also carries this run's fingerprint, so it would be read back as done."""
        if data is None:
            return all((self.folder / METHODS_DIR / f"{m}.json").exists() for m in self.methods)
        return finished(data, self.folder, methods=self.methods, fraction=self.fraction, seed=self.seed,
                        preset=preset, config=config, smoke=smoke)


def run_one(data: Data, run: SweepRun, kw: dict[str, Any], progress: bool = False,
            log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """One run of the plan, into its folder (also the pool's and the jobs' task). A run folder's
    refusal offers the sweep's remedy, not ``--overwrite``, which ``segreg-lite sweep`` does not
    have (a sweep never removes a run's results)."""
    try:
        return run_experiment(data, run.folder, methods=run.methods, fraction=run.fraction, seed=run.seed,
                              progress=progress, log=log, **kw)
    except RunFolderError as err:
        raise type(err)(str(err).replace(OVERWRITE, SWEEP_REMEDY)) from None


def _submitit(executor: str, flag: str = ""):
    """The submitit module, or a one-line ValueError saying how to install it."""
    if submitit is None:
        raise ValueError(f"{flag}executor {executor} needs submitit, which is not installed: {INSTALL}")
    return submitit


def _check_job_device(name: str, flag: str) -> None:
    """A device name a job elsewhere can be given: valid, but not necessarily present here."""
    try:
        kind = "auto" if name == "auto" else torch.device(name).type
    except RuntimeError:
        kind = None
    if kind not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"unknown {flag}device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def slurm_options(given: str | Mapping[str, Any] | None = None, flag: str = "") -> dict[str, Any]:
    """The Slurm settings of a sweep: :data:`SLURM_DEFAULTS` updated with ``given``, a mapping or
    ``"key=value,key=value"`` text (``partition=gpu,time=240,gpus=1,array_parallelism=8``) of
    :data:`SLURM_OPTIONS` keys. An unknown key, a missing ``=`` or a value of the wrong kind is a
    one-line ValueError naming it (``flag``: ``"--"`` for the command's ``--slurm``)."""
    name = f"{flag}slurm"
    if given is None:
        given = {}
    elif isinstance(given, str):
        pairs = {}
        for item in (i.strip() for i in given.split(",")):
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"{name} takes key=value pairs, comma-separated, got {item!r} "
                                 f"(e.g. partition=gpu,time=240,gpus=1,array_parallelism=8)")
            pairs[key.strip()] = value.strip()
        given = pairs
    unknown = [k for k in given if k not in SLURM_OPTIONS]
    if unknown:
        raise ValueError(f"{name}: unknown option {unknown[0]!r}; the options are {', '.join(SLURM_OPTIONS)}")
    options = dict(SLURM_DEFAULTS)
    for key, value in given.items():
        kind = SLURM_OPTIONS[key][1]
        if kind is int:
            try:
                value = int(value)
                if isinstance(value, bool):
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"{name} {key} must be a whole number, got {value!r}") from None
            low = 0 if key in ("gpus", "requeues") else 1
            if value < low:
                raise ValueError(f"{name} {key} must be at least {low}, got {value}")
        elif not isinstance(value, str) or not value:
            raise ValueError(f"{name} {key} must be a non-empty text, got {value!r}")
        options[key] = value
    return options


def check_executor(executor: str, slurm: str | Mapping[str, Any] | None = None, *, jobs: int = 1,
                   device: str = "auto", flag: str = "") -> dict[str, Any] | None:
    """Check a sweep's engine before anything is made: ``executor`` one of :data:`EXECUTORS`, with
    submitit installed for all but ``pool``; ``slurm`` options (:func:`slurm_options`) only with
    ``slurm``, which also takes no ``jobs`` (its array's ``array_parallelism`` says how many run at
    once) and a ``device`` that need not be present here, on the submitting machine. Returns the
    Slurm options for ``slurm``, else None. ``flag`` (``"--"``) makes the messages name the
    command's flags."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown {flag}executor {executor!r}: use {', '.join(EXECUTORS)}")
    if executor != "pool":
        _submitit(executor, flag)
    if executor != "slurm":
        if slurm:
            raise ValueError(f"{flag}slurm is for {flag}executor slurm, not {executor}")
        check_device(device)
        return None
    if jobs != 1:
        raise ValueError(f"{flag}jobs is the pool's and the local executor's; with {flag}executor slurm, "
                         f"{flag}slurm array_parallelism=N says how many jobs run at once")
    _check_job_device(device, flag)
    return slurm_options(slurm, flag)


class SweepJob(Checkpointable):
    """One run of a sweep as a submitit job: made again from the data's ``recipe`` (checked
    against the sweep's data by its ``digest``), run into its folder with the sweep's settings
    ``kw`` (preset, config, smoke, device) on ``threads`` CPU threads (default: the cores Slurm
    gave the job, else torch's). Calling it runs (or resumes) the run and returns its summary;
    :meth:`checkpoint` is what submitit calls at a time limit or on preemption."""

    def __init__(self, recipe: DataRecipe, digest: str, run: SweepRun, kw: dict[str, Any], threads: int | None = None):
        self.recipe, self.digest, self.run, self.kw, self.threads = recipe, digest, run, dict(kw), threads
        self.code = code_digest()  # the submitting side's package code: the job's must be the same

    def __call__(self) -> dict[str, Any]:
        threads = self.threads
        if threads is None and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None  # torch would count the node's cores
        if threads:
            torch.set_num_threads(threads)
        if code_digest() != self.code:  # its results would not be read back as this sweep's
            raise ValueError("segreg-lite's code here is not the code that submitted this job (changed since, or another "
                             "install): run the sweep again from the same install")
        data = from_recipe(self.recipe)
        digest = data_digest(data.images, data.labels, data.label_names, data.subjects)
        if digest != self.digest:
            raise ValueError(f"the data made again from its recipe ({self.recipe}) is not the sweep's (SHA-256 "
                             f"{digest[:12]} vs {self.digest[:12]}): another package version, or a changed folder")
        run = self.run

        def say(msg: str) -> None:
            print(msg, flush=True)

        say(f"segreg-lite {__version__}: {data.description}; fraction {run.fraction:g}, seed {run.seed}, "
            f"{', '.join(run.methods)} into {run.folder}, device {self.kw.get('device', 'auto')}, "
            f"{torch.get_num_threads()} CPU threads")
        return run_one(data, run, self.kw, log=say)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Requeue this same job: everything it has done is in its run folder, which the requeued
        job resumes (the default :meth:`submitit.helpers.Checkpointable.checkpoint`, said in the log)."""
        print(f"{self.run.folder}: stopped at the time limit or preempted; requeued, the job resumes this run folder",
              flush=True)
        return super().checkpoint(*args, **kwargs)


def run_jobs(data: Data, runs: Sequence[SweepRun], kw: dict[str, Any], *, executor: str = "pool", jobs: int = 1,
             slurm: str | Mapping[str, Any] | None = None, logs: str | Path | None = None,
             log: Callable[[str], None] = lambda msg: None) -> None:
    """Run ``runs`` (each into its folder) with ``executor`` and return once every one has ended.

    ``pool``: ``jobs`` worker processes (none, and nothing done here, when ``jobs`` is 1 or there
    is one run: the sweep then runs them itself, in order); a failed run stops the others not
    yet started and raises its error. ``local`` / ``slurm`` / ``debug``: one :class:`SweepJob` per
    run, logs under ``logs``; ``data`` must carry its recipe (:func:`~segreg_lite.data.load_data`
    sets it). A failed job leaves the others running; once all have ended, a
    :class:`SweepJobError` names the failures and their logs. ``slurm`` options:
    :func:`slurm_options`.
    """
    if executor == "pool":
        if jobs > 1 and len(runs) > 1:
            _pool(data, runs, kw, jobs, log)
        return
    sub = _submitit(executor)
    if not runs:
        return
    if data.recipe is None:
        raise ValueError(f"executor {executor} makes each job's data again from its recipe, and this data has none: "
                         "give the sweep data from segreg_lite.data.load_data")
    digest = data_digest(data.images, data.labels, data.label_names, data.subjects)
    logs = Path(logs if logs is not None else Path(runs[0].folder).parent / LOGS) / "%j"
    start = time.perf_counter()
    if executor == "debug":
        ex = sub.DebugExecutor(logs)
        submitted = [(run, ex.submit(SweepJob(data.recipe, digest, run, kw))) for run in runs]
        _raise_failures([_ended(run, job, i, len(runs), start, log) for i, (run, job) in enumerate(submitted, 1)])
    elif executor == "local":
        _local(sub, data.recipe, digest, runs, kw, jobs, logs, log, start)
    else:
        options = slurm_options(slurm)
        ex = sub.SlurmExecutor(logs, max_num_timeout=options.pop("requeues"))
        params = {SLURM_OPTIONS[k][0]: f"{v}GB" if k == "mem" else v for k, v in options.items()}
        ex.update_parameters(job_name="segreg-lite", **params)
        with ex.batch():
            submitted = [(run, ex.submit(SweepJob(data.recipe, digest, run, kw))) for run in runs]
        ids = sorted({job.job_id.split("_")[0] for _, job in submitted})
        log(f"submitted {len(submitted)} Slurm job(s) ({', '.join(ids)}); their logs: {logs.parent}; "
            "waiting for them (stopping this command leaves them running: run it again once they end)")
        _wait(submitted, log, start, poll=30.0)


def _pool(data: Data, runs: Sequence[SweepRun], kw: dict[str, Any], jobs: int, log: Callable[[str], None]) -> None:
    """``jobs`` worker processes, each with its share of torch's CPU threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    start = time.perf_counter()
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=ctx, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, data, run, kw): run for run in runs}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                run = futures[future]
                future.result()  # a failed run stops the sweep with its error
                log(f"[{done}/{len(runs)}] fraction {run.fraction:g}, seed {run.seed}: done "
                    f"({(time.perf_counter() - start) / 60:.1f} min so far)")
        except BaseException:
            for future in futures:
                future.cancel()  # runs not started yet; leaving the block waits for the running ones
            raise


def _local(sub, recipe: DataRecipe, digest: str, runs: Sequence[SweepRun], kw: dict[str, Any], jobs: int, logs: Path,
           log: Callable[[str], None], start: float) -> None:
    """Local submitit jobs, ``jobs`` at a time, each with its share of the CPU threads and, when the
    runs go to CUDA and there are GPUs, one GPU each in turn (an explicit ``cuda:N`` sees them all)."""
    width = min(jobs, len(runs))
    threads = max(1, torch.get_num_threads() // width)
    device = str(kw.get("device", "auto"))
    n_gpus = torch.cuda.device_count() if device == "auto" or device.startswith("cuda") else 0
    ex = sub.LocalExecutor(logs)
    waiting, running, ended = list(runs), {}, []
    try:
        while waiting or running:
            free = [slot for slot in range(width) if slot not in running]
            for slot in free[:len(waiting)]:
                run = waiting.pop(0)
                ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, **local_gpus(device, slot, n_gpus))
                running[slot] = (run, ex.submit(SweepJob(recipe, digest, run, kw, threads)))
            time.sleep(0.2)
            for slot, (run, job) in list(running.items()):
                if job.done():
                    del running[slot]
                    ended.append(_ended(run, job, len(ended) + 1, len(runs), start, log))
    except BaseException:
        for _, job in running.values():
            job.cancel(check=False)  # the local processes end with this command
        raise
    _raise_failures(ended)


def local_gpus(device: str, slot: int, n_gpus: int) -> dict[str, Any]:
    """The GPUs the local job in ``slot`` sees (submitit sets ``CUDA_VISIBLE_DEVICES`` from them,
    to none when there are none): one, in turn, for ``auto`` or ``cuda``; all of them for an
    explicit ``cuda:N``, so that its index means what it says."""
    if n_gpus and ":" not in device:
        return {"gpus_per_node": 1, "visible_gpus": (slot % n_gpus,)}
    return {"gpus_per_node": n_gpus, "visible_gpus": tuple(range(n_gpus))}


def _wait(submitted: list, log: Callable[[str], None], start: float, *, poll: float = 0.2) -> None:
    """Wait for every job, saying each as it ends; then raise the failures."""
    todo, ended = list(submitted), []
    while todo:
        for item in list(todo):
            run, job = item
            if job.done():
                todo.remove(item)
                ended.append(_ended(run, job, len(ended) + 1, len(submitted), start, log))
        if todo:
            time.sleep(poll)
    _raise_failures(ended)


def _ended(run: SweepRun, job, done: int, total: int, start: float, log: Callable[[str], None]) -> tuple:
    """Say how job ``done`` of ``total`` ended; return (run, job, its error as one line or None)."""
    err = job.exception()  # the debug executor's job runs here, and says nothing more (no pdb)
    why = None
    if err is not None:
        text = str(err)
        parts = text.split("-" * 22 + "\n")  # submitit's FailedJobError: the job's traceback between two rules
        lines = [line.strip() for line in (parts[1] if len(parts) == 3 else text).splitlines() if line.strip()]
        why = lines[-1] if lines else type(err).__name__  # the last line of the job's traceback: its error
    label = f"[{done}/{total}] fraction {run.fraction:g}, seed {run.seed} (job {job.job_id})"
    log(f"{label}: {'FAILED: ' + why if why else 'done'} ({(time.perf_counter() - start) / 60:.1f} min so far)")
    return run, job, why


def _raise_failures(ended: list) -> None:
    failed = [(run, job, why) for run, job, why in ended if why]
    if failed:
        run, job, why = failed[0]
        raise SweepJobError(f"{len(failed)} of {len(ended)} job(s) failed, first {run.folder.name} (job {job.job_id}): "
                            f"{why}; its log: {job.paths.stderr}; what the runs finished is kept: run the sweep again "
                            "to resume them")
