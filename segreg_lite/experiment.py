"""The experiment API behind ``segreg-lite run``: data, split, methods, results files.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025). :func:`load_data` reads one of the three data paths (the
embedded cohort, neurite-OASIS 2D, a folder of NIfTI slices); :func:`run_experiment` trains and
evaluates the chosen :data:`METHODS` on one seeded split and writes, atomically, into its output
folder (a :class:`segreg_lite.runfolder.RunFolder`, locked while the run writes):

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

Methods share work: the augmented supervised baseline *is* the joint method's pre-trained
segmenter and registration-only uses its pre-trained registration network, as in the paper.
"""
from __future__ import annotations

import copy
import csv
import io
import numbers
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from segreg_lite import __version__
from segreg_lite.config import TrainConfig, get_preset, pick_device, seed_everything
from segreg_lite.io import read_json
from segreg_lite.labels import SEG4_NAMES
from segreg_lite.runfolder import RunFolder, data_digest, differences, fingerprint
from segreg_lite.splits import Split, make_split

#: Method name -> what it is (the order of the results table).
METHODS: dict[str, str] = {
    "supervised": "U-Net, annotated images only, no augmentation",
    "supervised_aug": "U-Net, annotated images only, with augmentation",
    "mean_teacher": "Mean Teacher (EMA teacher, softmax consistency)",
    "reg_only": "multi-atlas registration, no segmenter",
    "joint_seg": "joint method, segmentation masks only",
    "joint_reg": "joint method, registration masks only",
    "joint": "joint method, combined soft masks",
    "upper_bound": "U-Net, 100% of the labels",
}
#: What ``segreg-lite run`` (and the README's main command) runs by default.
DEFAULT_METHODS: tuple[str, ...] = ("supervised_aug", "mean_teacher", "reg_only", "joint")
_JOINT_MODES = {"joint": "combined", "joint_reg": "reg", "joint_seg": "seg"}
#: Both networks halve the image 4 times (5 levels): H and W must be multiples of 16, and the
#: registration network's coarsest level needs at least 2 pixels, so 32 for methods that register.
SIZE_MULTIPLE, REG_MIN_SIZE = 16, 32
_REGISTERS = ("reg_only", "joint_seg", "joint_reg", "joint")


@dataclass
class Data:
    """Images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids, label names."""

    images: torch.Tensor
    labels: torch.Tensor
    subjects: list[str]
    label_names: tuple[str, ...]
    description: str


def load_data(source: str = "cohort", *, n_subjects: int = 300, seed: int = 0,
              size: Sequence[int] = (128, 128), max_subjects: int | None = None) -> Data:
    """``"cohort"``: the embedded generated cohort (``n_subjects``, ``seed``, ``size``); ``"oasis"``:
    neurite-OASIS 2D, downloaded into the cache on first use; any other value: a folder of NIfTI
    ``<case>_image.nii.gz`` / ``<case>_label.nii.gz`` slices."""
    if source == "cohort":
        from segreg_lite.cohort import CohortConfig, generate_cohort

        c = generate_cohort(n_subjects, seed=seed, config=CohortConfig(size=tuple(size)))
        grid = "" if tuple(size) == (128, 128) else f" of {size[0]}x{size[1]}"  # the default grid goes unsaid
        return Data(c.images, c.labels, list(c.subjects), SEG4_NAMES, f"embedded cohort, {n_subjects} subjects{grid}, seed {seed}")
    if source == "oasis":
        from segreg_lite.oasis import download_oasis2d, load_oasis2d

        d = load_oasis2d(download_oasis2d(), max_subjects=max_subjects, progress=True)
        desc = "neurite-OASIS 2D"
    else:
        from segreg_lite.nifti import load_nifti_folder

        if not Path(source).is_dir():
            raise FileNotFoundError(f"data {source!r} is neither 'cohort', 'oasis' nor an existing NIfTI folder")
        d = load_nifti_folder(source)
        desc = f"NIfTI folder {source}"
    images, labels = torch.from_numpy(d["images"]).float(), torch.from_numpy(d["labels"]).long()
    return Data(images, labels, list(d["subjects"]), tuple(d["label_names"]), f"{desc}, {len(images)} subjects")


def check_methods(methods: Sequence[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or '(none given)'}: choose from {', '.join(METHODS)}")
    return [m for m in METHODS if m in methods]  # table order, no repeats


def check_seed(seed: Any) -> int:
    """``seed`` as an int; anything but a non-negative integer is a ValueError saying so."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (0, 1, 2, ...), got {seed!r}")
    return int(seed)


def check_device(name: str) -> torch.device:
    """The torch device for ``name`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``);
    an unknown or unavailable one is a ValueError, raised before anything is written."""
    try:
        device = pick_device(name)
    except RuntimeError:  # torch's "Expected one of cpu, cuda, ... device type at start of device string"
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


def check_slice_size(shape: Sequence[int], methods: Sequence[str]) -> None:
    """Refuse slices the networks cannot take: H and W multiples of :data:`SIZE_MULTIPLE`, and at
    least :data:`REG_MIN_SIZE` for the methods that use the registration network."""
    h, w = (int(v) for v in shape[-2:])
    registers = [m for m in methods if m in _REGISTERS]
    low = REG_MIN_SIZE if registers else SIZE_MULTIPLE
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or min(h, w) < low:
        need = f"multiples of {SIZE_MULTIPLE} and at least {low}" + (f" (for {', '.join(registers)})" if registers else "")
        raise ValueError(f"slices of {h}x{w} pixels: the networks halve the image 4 times, so H and W must be {need}; "
                         "crop or pad your slices (e.g. to the next multiple of 16)")


def _seg_metrics(result: dict) -> dict[str, Any]:
    return {"dice": result["mean_dice"], "hd": result["mean_hd"], "hd95": result["mean_hd95"],
            "dice_per_class": [float(v) for v in result["dice_per_class"]],
            "hd_per_class": [float(v) for v in result["hd_per_class"]],
            "hd95_per_class": [float(v) for v in result["hd95_per_class"]], "n_hd_nan": result["n_hd_nan"]}


class _Run:
    """One output folder: the per-method results it holds and the models methods share."""

    def __init__(self, data: Data, split: Split, config: TrainConfig, folder: RunFolder, seed: int, device, progress, log,
                 data_sha256: str):
        self.data, self.split, self.config, self.folder = data, split, config, folder
        self.seed, self.device, self.progress, self.log = seed, device, progress, log
        self.num_classes = len(data.label_names)
        self._pretrained: dict[str, Any] = {}
        self._fp = dict(data=data_sha256, split=split.to_dict(), config=config.to_dict(), seed=seed)

    def fingerprint(self, method: str) -> dict[str, Any]:
        """What a result or checkpoint of ``method`` in this run must carry to be read back."""
        return fingerprint(**self._fp, method=method)

    def pretrained(self, which: str):
        """The pre-trained segmenter ("seg", with the config's augmentation) or regnet ("reg"),
        trained once per run and kept in ``checkpoints/pretrained_<which>.pt`` with its fingerprint."""
        from segreg_lite.checkpoint import load_checkpoint, save_checkpoint
        from segreg_lite.joint import new_models, pretrain_regnet, pretrain_segmenter

        if which not in self._pretrained:
            name = f"pretrained_{which}"
            path, fp = self.folder.checkpoint_path(name), self.fingerprint(name)
            stale = self.folder.stale_checkpoint(name, fp)
            if stale:
                self.log(stale)
            model = None
            if path.exists():
                try:
                    ckpt = load_checkpoint(path)
                except ValueError as err:  # ours (listed in the manifest) but unreadable: made again
                    path.unlink()
                    self.log(f"{err}; removed, computing again")
                else:
                    diff = differences(ckpt.extra.get("fingerprint"), fp)
                    if diff:
                        path.unlink()
                        self.log(f"{path} was made by another run (differs in {', '.join(diff)}); removed, computing again")
                    else:
                        model = ckpt.models[which]
            if model is None:
                seg, reg = new_models(self.config, self.num_classes, self.seed)
                d = self.data
                if which == "seg":
                    model = seg
                    pretrain_segmenter(seg, d.images, d.labels, self.split, self.config, seed=self.seed,
                                       device=self.device, progress=self.progress)
                else:
                    model = reg
                    pretrain_regnet(reg, d.images, self.split, self.config, seed=self.seed,
                                    device=self.device, progress=self.progress, log=self.log)
                self.folder.claim(path, fp)
                save_checkpoint(path, models={which: model}, config=self.config, extra={"fingerprint": fp})
            self._pretrained[which] = model.eval()
        return copy.deepcopy(self._pretrained[which])

    def method(self, name: str) -> dict[str, Any]:
        from segreg_lite.joint import evaluate_registration, new_models, phase_seed, pretrain_segmenter, train_joint
        from segreg_lite.segment import evaluate_segmenter

        d, s, cfg = self.data, self.split, self.config
        test = list(s.test)
        timer = time.perf_counter()
        extra: dict[str, Any] = {}
        if name in ("supervised", "upper_bound"):
            model = new_models(cfg, self.num_classes, self.seed)[0]
            if name == "supervised":
                run_cfg, run_split = replace(cfg, augment=False), s
            else:  # every training image labelled: more images need more steps to converge
                run_cfg = replace(cfg, augment=False, seg_steps=3 * cfg.seg_steps)
                run_split = replace(s, annotated=s.train, fraction=1.0)
            pretrain_segmenter(model, d.images, d.labels, run_split, run_cfg, seed=self.seed, device=self.device, progress=self.progress)
            metrics = _seg_metrics(evaluate_segmenter(model, d.images[test], d.labels[test], device=self.device))
        elif name == "supervised_aug":
            metrics = _seg_metrics(evaluate_segmenter(self.pretrained("seg"), d.images[test], d.labels[test], device=self.device))
        elif name == "mean_teacher":
            from segreg_lite.meanteacher import train_mean_teacher

            student = new_models(cfg, self.num_classes, self.seed)[0]
            teacher = copy.deepcopy(student)
            ps = phase_seed(self.seed, 0, "mean_teacher")
            seed_everything(ps)
            train_mean_teacher(student, teacher, d.images, d.labels, s.annotated, s.unannotated, steps=cfg.seg_steps,
                               lr=cfg.seg_lr, batch_size=cfg.batch_size, ema=cfg.mt_ema, consistency=cfg.mt_consistency,
                               rampup=cfg.mt_rampup, noise_std=cfg.mt_noise, augment=cfg.augment, device=self.device,
                               seed=ps, amp=cfg.amp, progress=self.progress)
            metrics = _seg_metrics(evaluate_segmenter(teacher, d.images[test], d.labels[test], device=self.device))
        elif name == "reg_only":
            metrics = evaluate_registration(self.pretrained("reg"), d.images, d.labels, s.annotated, test, n_atlas=cfg.n_atlas,
                                            num_classes=self.num_classes, seed=phase_seed(self.seed, 0, "eval"), device=self.device,
                                            passes=cfg.reg_passes)
        else:
            mode = _JOINT_MODES[name]
            seg, reg = self.pretrained("seg"), self.pretrained("reg")
            # train_joint checks its checkpoint's config, split, mode and seed; the manifest adds
            # the data and the package version (a stale file of ours is removed, a foreign one refused).
            path, fp = self.folder.checkpoint_path(name), self.fingerprint(name)
            stale = self.folder.stale_checkpoint(name, fp)
            if stale:
                self.log(stale)
            self.folder.claim(path, fp)
            result = train_joint(d.images, d.labels, s, cfg, mode=mode, seed=self.seed, num_classes=self.num_classes,
                                 segmenter=seg, regnet=reg, checkpoint=path,
                                 device=self.device, progress=self.progress,
                                 callback=lambda e, _: self.log(f"  {name} round {e['round']}: test Dice {e['test_dice']:.3f}, "
                                                             f"pseudo-label Dice {e['pseudo_dice']:.3f}"))
            metrics = _seg_metrics(evaluate_segmenter(result.segmenter, d.images[test], d.labels[test], device=self.device))
            last = result.history[-1]
            metrics.update(folding=last["folding"], log_jac_std=last["log_jac_std"], reg_dice=last["reg_dice"])
            extra["history"] = result.history
        metrics["seconds"] = time.perf_counter() - timer
        return {"method": name, "description": METHODS[name], "metrics": metrics, **extra}


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


def resolve_run(data: Data, *, fraction: float, seed: int, preset: str, config: TrainConfig | None) -> tuple[Split, TrainConfig]:
    """The split and training config :func:`run_experiment` uses for these settings."""
    seed = check_seed(seed)
    split = make_split(len(data.images), seed=seed, fraction=fraction, subjects=data.subjects)
    if config is None:
        config = get_preset(preset, n_annotated=len(split.annotated), n_train=len(split.train))
    return split, config


def finished(data: Data, out: str | Path, *, methods: Sequence[str], fraction: float, seed: int = 0, preset: str = "cpu",
             config: TrainConfig | None = None) -> bool:
    """Whether ``out`` holds a result of each of ``methods`` that :func:`run_experiment` would read
    back for these settings (the same fingerprint), without taking the folder's lock."""
    split, config = resolve_run(data, fraction=fraction, seed=seed, preset=preset, config=config)
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
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run ``methods`` on ``data`` at annotated ``fraction`` with ``seed``; write and return the results.

    ``config`` overrides the ``preset`` (named presets: :func:`segreg_lite.config.get_preset`).
    Started again on the same folder with the same settings, the run resumes: finished methods
    are read back (only those whose fingerprint matches this run; others are computed again), an
    interrupted joint run continues from its last round. A folder that holds a run with other
    settings, or files that are not a run's, is a ValueError unless ``overwrite``, which removes
    the files segreg-lite wrote there (and refuses if any other file is present). A second run
    into a folder in use fails at once (:class:`segreg_lite.runfolder.FolderBusy`). Settings,
    device and slice size are checked before anything is written.
    """
    methods = check_methods(methods)
    split, config = resolve_run(data, fraction=fraction, seed=seed, preset=preset, config=config)
    seed = int(seed)
    if any(m.startswith("joint") for m in methods) and not split.unannotated:
        raise ValueError(f"fraction {fraction} annotates every training image: the joint method has nothing to pseudo-label")
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
        run = _Run(data, split, config, folder, seed, device, progress, log, data_sha256)
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
            log(f"{name}: {METHODS[name]} ...")
            results[name] = folder.write_result(name, run.method(name), fp)
            m = results[name]["metrics"]
            log(f"{name}: mean Dice {m['dice']:.3f}, HD {m['hd']:.1f} px, HD95 {m['hd95']:.1f} px ({m['seconds']:.0f} s)")
        summary = {**spec, "methods": results}
        folder.write_json("results.json", summary)
        folder.write_text("results.csv", results_csv(summary))
    return summary


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


def load_results(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The ``results.json`` of each run folder, checked to be comparable: the same data, preset and
    fraction (seeds may differ, and a seed twice is an error)."""
    summaries = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {folder} a finished segreg-lite run folder?")
        held = read_json(path, "results file")
        missing = [k for k in ("data", "preset", "fraction", "seed", "label_names", "methods") if not isinstance(held, dict) or k not in held]
        if missing:
            raise ValueError(f"{path}: not a segreg-lite results file (no {', '.join(missing)})")
        summaries.append(held)
    if not summaries:
        raise ValueError("no run folder given")
    first = summaries[0]
    for folder, s in zip(folders, summaries):
        for key in ("data", "preset", "fraction"):
            if s[key] != first[key]:
                raise ValueError(f"{folder} differs from {folders[0]} in {key} ({s[key]!r} vs {first[key]!r}): "
                                 "summarise runs of one setting at a time")
    seeds = [s["seed"] for s in summaries]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the same seed appears twice among the runs (seeds {seeds})")
    return summaries


def summarize(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method, over the runs (seeds) that include it: ``seeds``, the mean and population std
    (ddof 0) of ``dice``, ``hd``, ``hd95`` and each class's Dice, and for joint methods the test
    Dice per round (``rounds_mean``, ``rounds_std``, over the runs with that many rounds)."""
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
        out[name] = entry
    return out


def format_summary(summaries: Sequence[dict[str, Any]]) -> str:
    """:func:`summarize` as text: mean +- std per method, then each joint method's round curve."""
    table = summarize(summaries)
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
    return "\n".join(lines)
