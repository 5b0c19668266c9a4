"""The experiment API behind ``segreg-lite run``: data, split, methods, results files.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025). :func:`run_experiment` takes the :class:`~segreg_lite.data.Data`
of :func:`segreg_lite.data.load_data`, trains and evaluates the chosen methods
(:data:`segreg_lite.methods.METHODS`) on one seeded split and writes, atomically, into its
output folder (a :class:`segreg_lite.runfolder.RunFolder`, locked while the run writes):

- ``run.json``: what the run is (data and its digest, fraction and how many images that
  annotates, seed, preset, config, split, package version); a folder holding another run is
  refused unless ``overwrite=True``, which removes only the files segreg-lite wrote there;
- ``methods/<method>.json``: each finished method's metrics with the fingerprint of what made
  them, so a killed run skips them when started again (and recomputes any made by another run);
  ``checkpoints/``: pre-trained models and one file per joint run (per round), fingerprinted too;
- ``results.json`` and ``results.csv``: every method's mean and per-class Dice, maximum Hausdorff
  distance and HD95 on the test set, folding for registration, seconds, with config and split.
  Seconds are a method's own wall time; shared pre-training counts for the first method that
  needed it (``supervised_aug`` for the segmenter, ``reg_only`` for the registration network).

Methods share work through the run context they are given (:class:`segreg_lite.context.Run`,
below the methods; also importable as ``segreg_lite.experiment.Run``), which this module makes
and hands the pre-training (:func:`pretrain`): the augmented supervised baseline *is* the joint
method's pre-trained segmenter and registration-only uses its pre-trained registration network,
as in the paper. The tables, CSV and statistics of finished runs are :mod:`segreg_lite.report`'s.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from segreg_lite import __version__
from segreg_lite.checks import check_data
from segreg_lite.config import TrainConfig, get_preset
from segreg_lite.container import Data
from segreg_lite.context import Run  # also segreg_lite.experiment.Run, its name before it moved below the methods
from segreg_lite.limits import REG_MIN_SIZE, SIZE_MULTIPLE, check_seed
from segreg_lite.methods import DEFAULT_METHODS, METHODS, check_methods
from segreg_lite.registration import pretrain_regnet
from segreg_lite.report import results_csv
from segreg_lite.runfolder import RunFolder, check_out, data_digest, fingerprint
from segreg_lite.splits import Split, make_split
from segreg_lite.supervised import pretrain_segmenter
from segreg_lite.train import check_device, new_models

__all__ = ["Run", "check_slice_size", "check_unannotated", "finished", "min_size", "pretrain", "resolve_run",
           "run_experiment", "run_method"]


def min_size(methods: Sequence[str]) -> tuple[int, str]:
    """The smallest side the networks of ``methods`` take (:data:`~segreg_lite.limits.SIZE_MULTIPLE`,
    or :data:`~segreg_lite.limits.REG_MIN_SIZE` when one registers) and, then, which need it."""
    registers = [m for m in methods if METHODS[m].registers]
    return (REG_MIN_SIZE, f" (for {', '.join(registers)})") if registers else (SIZE_MULTIPLE, "")


def check_unannotated(methods: Sequence[str], fraction: float, n_subjects: int | None = None, *, seed: int = 0,
                      name: str = "fraction", remedy: str = "leave them out of methods") -> None:
    """Refuse, before any work, ``methods`` that train on pseudo-labels (the joint methods,
    UniMatch) at a ``fraction`` that annotates every training image: 1 always, and with
    ``n_subjects`` known (a generated cohort, before it is made), any fraction that rounds up to
    all of them. ``name`` and ``remedy`` are the argument and the way out, as the caller names them."""
    needs = [m for m in methods if METHODS[m].pseudo_labels]
    if not needs:
        return
    of = ""
    if fraction < 1 and n_subjects is not None:
        import warnings

        with warnings.catch_warnings():  # a small split warns once, when the run makes it
            warnings.simplefilter("ignore")
            split = make_split(n_subjects, seed=seed, fraction=fraction)
        if split.unannotated:
            return
        of = f" (all {len(split.train)} of {n_subjects} subjects)"
    elif fraction < 1:
        return
    raise ValueError(f"{name} {fraction:g} annotates every training image{of}, so {', '.join(needs)} would have nothing to "
                     f"pseudo-label: choose a smaller {name}, or {remedy} (upper_bound is the every-image baseline)")


def check_slice_size(shape: Sequence[int], methods: Sequence[str]) -> None:
    """Refuse slices the networks cannot take: H and W multiples of :data:`SIZE_MULTIPLE`, and at
    least :data:`REG_MIN_SIZE` for the methods that use the registration network."""
    h, w = (int(v) for v in shape[-2:])
    low, who = min_size(methods)
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or min(h, w) < low:
        need = f"multiples of {SIZE_MULTIPLE} and at least {low}{who}"
        raise ValueError(f"slices of {h}x{w} pixels: the networks halve the image 4 times, so H and W must be {need}; "
                         "crop or pad your slices (e.g. to the next multiple of 16)")


def pretrain(run: Run, which: str):
    """Train the model that methods of ``run`` share: the segmenter ("seg", with the config's
    augmentation; the augmented supervised baseline) or the registration network ("reg"), from
    the run's seeded fresh models. What :meth:`Run.pretrained <segreg_lite.context.Run.pretrained>`
    calls once per run when its checkpoint is not there."""
    seg, reg = new_models(run.config, run.data.num_classes, run.seed)
    d = run.data
    if which == "seg":
        pretrain_segmenter(seg, d.images, d.labels, run.split, run.config, seed=run.seed, device=run.device,
                           progress=run.progress)
        return seg
    pretrain_regnet(reg, d.images, run.split, run.config, seed=run.seed, device=run.device, progress=run.progress,
                    log=run.log)
    return reg


def run_method(run: Run, name: str) -> dict[str, Any]:
    """Run method ``name`` (:data:`segreg_lite.methods.METHODS`): its results entry, with its
    own wall ``seconds`` and, for a joint method, the round ``history``."""
    timer = time.perf_counter()
    metrics = METHODS[name].run(run.data, run.split, run.config, run)
    extra = {"history": metrics.pop("history")} if "history" in metrics else {}
    metrics["seconds"] = time.perf_counter() - timer
    return {"method": name, "description": METHODS[name].description, "metrics": metrics, **extra}


def annotation(split: Split) -> dict[str, Any]:
    """How many training images the split's fraction annotates, and whether that count was
    rounded up (never fewer than one image): ``fraction``, ``n_train``, ``n_annotated``,
    ``annotated_fraction`` and ``rounded_up``."""
    n_train, n_annotated = len(split.train), len(split.annotated)
    return {"fraction": split.fraction, "n_train": n_train, "n_annotated": n_annotated,
            "annotated_fraction": n_annotated / n_train, "rounded_up": n_annotated > split.fraction * n_train + 1e-9}


def _spec(data: Data, split: Split, config: TrainConfig, seed: int, preset: str, data_sha256: str) -> dict[str, Any]:
    return {"data": data.description, "data_sha256": data_sha256, "label_names": list(data.label_names), "seed": seed,
            "preset": preset, "fraction": split.fraction, "annotation": annotation(split), "config": config.to_dict(),
            "split": split.to_dict(), "segreg_lite": __version__}


def resolve_run(data: Data, *, fraction: float, seed: int, preset: str, config: TrainConfig | None,
                smoke: bool = False) -> tuple[Split, TrainConfig]:
    """The split and training config :func:`run_experiment` uses for these settings: ``config``,
    or else the ``preset`` for this split's sizes; with ``smoke``, its tiny-schedule version
    (:meth:`~segreg_lite.config.TrainConfig.smoke`)."""
    seed = check_seed(seed)
    split = make_split(len(data.images), seed=seed, fraction=fraction, subjects=data.subjects)
    if config is None:
        config = get_preset(preset, n_annotated=len(split.annotated), n_train=len(split.train))
    return split, config.smoke() if smoke else config


def finished(data: Data, out: str | Path, *, methods: Sequence[str], fraction: float, seed: int = 0, preset: str = "cpu",
             config: TrainConfig | None = None, smoke: bool = False) -> bool:
    """Whether ``out`` holds a result of each of ``methods`` that :func:`run_experiment` would read
    back for these settings (the same fingerprint), without taking the folder's lock."""
    split, config = resolve_run(data, fraction=fraction, seed=seed, preset=preset, config=config, smoke=smoke)
    folder, digest_ = RunFolder(out), data_digest(data.images, data.labels, data.label_names, data.subjects)
    fp = dict(data=digest_, split=split.to_dict(), config=config.to_dict(), seed=seed)
    return all(folder.read_result(m, fingerprint(**fp, method=m))[0] is not None for m in check_methods(methods))


def run_experiment(
    data: Data,
    out: str | Path,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    fraction: float = 0.01,
    preset: str = "cpu",
    config: TrainConfig | None = None,
    seed: int = 0,
    smoke: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run ``methods`` on ``data`` at annotated ``fraction`` with ``seed``; write and return the results.

    ``config`` overrides the ``preset`` (named presets: :func:`segreg_lite.config.get_preset`);
    ``smoke`` shrinks its schedules to a few steps (:meth:`~segreg_lite.config.TrainConfig.smoke`).
    Started again on the same folder with the same settings, the run resumes: finished methods
    are read back (only those whose fingerprint matches this run; others are computed again), an
    interrupted joint run continues from its last round. A folder that holds a run with other
    settings, or files that are not a run's, is a ValueError unless ``overwrite``, which removes
    the files segreg-lite wrote there (and refuses if any other file is present). A second run
    into a folder in use fails at once (:class:`segreg_lite.runfolder.FolderBusy`). Settings,
    device, slice size and ``out`` (an empty one would be the current folder) are checked before
    anything is written.
    """
    check_out(out, "out")
    methods = check_methods(methods)
    check_data(data)  # data built by hand: NaN, labels past the table, float64 (the loaders check theirs)
    split, config = resolve_run(data, fraction=fraction, seed=seed, preset=preset, config=config, smoke=smoke)
    seed = int(seed)
    check_unannotated(methods, fraction, len(data.images), seed=seed)
    check_slice_size(data.images.shape, methods)
    device = check_device(device)
    data_sha256 = data_digest(data.images, data.labels, data.label_names, data.subjects)
    spec = _spec(data, split, config, seed, preset, data_sha256)
    with RunFolder(out) as folder:
        for rel in folder.removed_temp:
            log(f"removed {rel}, the temporary file of a write that was killed")
        folder.start(spec, overwrite=overwrite)
        a = spec["annotation"]
        if a["rounded_up"]:
            log(f"note: fraction {fraction:g} of {a['n_train']} training images is {fraction * a['n_train']:.2g} images, "
                f"rounded up to {a['n_annotated']} annotated ({a['annotated_fraction']:.2%}); run.json records it")
        run = Run(data, split, config, folder, seed, device, progress, log, data_sha256, pretrain=pretrain)
        results: dict[str, Any] = {}
        for name in methods:
            fp = run.fingerprint(name)
            held, why = folder.read_result(name, fp)
            if held is not None:
                results[name] = held
                log(f"{name}: done in an earlier run, read from {folder.method_path(name)}")
                continue
            if why:
                log(f"{why}; computing {name} again")
            log(f"{name}: {METHODS[name].description} ...")
            results[name] = folder.write_result(name, run_method(run, name), fp)
            m = results[name]["metrics"]
            log(f"{name}: mean Dice {m['dice']:.3f}, HD {m['hd']:.1f} px, HD95 {m['hd95']:.1f} px ({m['seconds']:.0f} s)")
        summary = {**spec, "methods": results}
        csv_text = results_csv(summary)  # before results.json: a failure here must not leave it rewritten
        folder.write_json("results.json", summary)
        folder.write_text("results.csv", csv_text)
    return summary
