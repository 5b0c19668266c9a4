#!/usr/bin/env python
"""A hostile battery: careless and malicious uses of segreg-lite, each expected to end in a clear
refusal or a correct result.

    python scripts/battery.py [--fast] [-k TEXT] [--list]

Each case runs the command line (in this process, as ``segreg-lite`` does: ``segreg_lite.cli.main``),
a benchmark script's ``main`` or the API, in a fresh temporary folder that is also the working
folder. A *refusal* passes when it exits non-zero without a traceback and its last line of error
output holds the expected text (the argument or file it names, and what to do); a *result* passes
when it exits 0 and the check of what it wrote holds; a *warning* when it exits 0 and warned
with the expected text. Prints a table (case, expected, got, ok) and exits with status 1 if a
case failed. Cases marked ``[24]`` reproduce findings of issue 24; the others go beyond its list.
``--fast`` leaves out the cases that train a model (the rest take a few seconds); the whole
battery takes under a minute on 2 cores. ``tests/test_battery.py`` runs it.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: the cases are tiny
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The smallest run the command line takes: smoke schedules on 12 subjects of 32 x 32 pixels.
RUN = ["run", "--subjects", "12", "--size", "32", "32", "--fraction", "0.2", "--smoke", "--quiet"]
SWEEP = ["sweep", "--subjects", "12", "--size", "32", "32", "--fractions", "0.5", "--seeds", "0", "--smoke", "--quiet",
         "--methods", "supervised"]


# -- running a case -------------------------------------------------------------------------------
@dataclass
class Got:
    """What a case did: its exit status (or "traceback"), its output and its error output."""

    code: int | str
    out: str = ""
    err: str = ""

    @property
    def line(self) -> str:
        """The last line of error output (of output, when there is none): the message a user reads."""
        lines = [s for s in (self.err or self.out).splitlines() if s.strip()]
        return lines[-1].strip() if lines else ""


def _traceback(err: BaseException) -> Got:
    return Got("traceback", err="".join(traceback.format_exception(err)))


def cli(*argv: str) -> Got:
    """``segreg-lite ARGV``: its exit status and what it printed."""
    from segreg_lite.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")  # each case warns afresh, as its own process would
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: a usage error
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - what the battery exists to catch
            return _traceback(exc)
    return Got(code, out.getvalue(), err.getvalue())


_SCRIPTS: dict[str, Any] = {}


def script(rel: str, *argv: str) -> Got:
    """``python ROOT/REL ARGV`` through the script's ``main``: a SystemExit with a message is what
    Python prints as one line, with exit status 1."""
    if rel not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
        _SCRIPTS[rel] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_SCRIPTS[rel])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _SCRIPTS[rel].main(list(argv)) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except BaseException as exc:  # noqa: BLE001
            return _traceback(exc)
    return Got(code, out.getvalue(), err.getvalue())


def api(fn: Callable[[], Any]) -> Got:
    """Call ``fn``: an expected failure (ValueError, OSError) is exit status 2 with its message,
    as the command line prints it; warnings are lines of error output before it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
            code, last = 0, ""
        except (ValueError, OSError) as exc:
            code, last = 2, f"error: {' '.join(str(exc).split())}"
        except BaseException as exc:  # noqa: BLE001
            return _traceback(exc)
    lines = [f"warning: {' '.join(str(w.message).split())}" for w in caught] + ([last] if last else [])
    return Got(code, err="\n".join(lines))


# -- what a case expects --------------------------------------------------------------------------
Check = Callable[[Path, Got], "str | None"]  # the reason a result is wrong, None when it is right


@dataclass
class Expect:
    kind: str  # "refused", "result" or "warned"
    text: str = ""  # what the message must hold
    check: Check | None = None  # and, for any kind, what must hold of the files afterwards

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}" if self.text else self.kind

    def judge(self, tmp: Path, got: Got) -> str | None:
        """Why ``got`` is not what was expected (None when it is)."""
        if got.code == "traceback" or "Traceback (most recent call last)" in got.err:
            return "a traceback"
        if self.kind == "refused":
            if got.code == 0:
                return "it was accepted"
            if self.text not in got.line:
                return "another message"
        else:
            if got.code != 0:
                return f"exit {got.code}"
            if self.kind == "warned" and not any(self.text in s for s in got.err.splitlines() if "warning" in s):
                return "no such warning"
        return self.check(tmp, got) if self.check else None


def refused(text: str, check: Check | None = None) -> Expect:
    return Expect("refused", text, check)


def result(text: str = "", check: Check | None = None) -> Expect:
    """Exit 0; ``text``, when given, must be in the output."""
    def checked(tmp: Path, got: Got) -> str | None:
        if text and text not in got.out + got.err:
            return f"no {text!r} in the output"
        return check(tmp, got) if check else None
    return Expect("result", text, checked)


def warned(text: str, check: Check | None = None) -> Expect:
    return Expect("warned", text, check)


@dataclass
class Case:
    name: str
    expect: Expect
    run: Callable[[Path], Got]
    slow: bool = False  # trains a model (or needs the base run, which does)
    issue: bool = False  # one of issue 24's findings


CASES: list[Case] = []


def case(name: str, expect: Expect, *, slow: bool = False, issue: bool = False):
    def add(fn: Callable[[Path], Got]) -> Callable[[Path], Got]:
        CASES.append(Case(name, expect, fn, slow, issue))
        return fn
    return add


# -- helpers the cases share ----------------------------------------------------------------------
_BASE: dict[str, Path] = {}
_BASE_ROOT: list[Path] = []


def base_run(tmp: Path, name: str = "r") -> Path:
    """A copy, at ``tmp / name``, of a finished smoke run of supervised_aug (its results, its
    pre-trained segmenter's checkpoint), made once per battery."""
    if "run" not in _BASE:
        folder = _BASE_ROOT[0] / "base"
        got = cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))
        if got.code != 0:
            raise RuntimeError(f"the base run failed: {got.line}")
        _BASE["run"] = folder
    shutil.copytree(_BASE["run"], tmp / name, symlinks=True)
    return tmp / name


def dice(folder: Path, method: str = "supervised_aug") -> float:
    return json.loads((folder / "results.json").read_text())["methods"][method]["metrics"]["dice"]


def same_dice(folder: Path, method: str = "supervised_aug") -> Check:
    """The check that ``folder`` holds the base run's Dice for ``method`` (a correct result)."""
    def check(tmp: Path, got: Got) -> str | None:
        want = dice(_BASE["run"], method)
        held = dice(folder, method)
        return None if held == want else f"Dice {held} instead of {want}"
    return check


def nifti_pairs(folder: Path, n: int = 4, shape: tuple[int, ...] = (32, 32), *, image=None, label=None) -> Path:
    """``n`` image/label pairs of random slices; ``image`` / ``label`` (arrays) replace the first pair's."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.random(shape).astype(np.float32)
        lab = rng.integers(0, 5, shape).astype(np.uint8)
        if i == 0:
            img = img if image is None else image
            lab = lab if label is None else label
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(folder / f"c{i}_image.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(folder / f"c{i}_label.nii.gz"))
    return folder


def untouched(path: Path, text: str) -> Check:
    def check(tmp: Path, got: Got) -> str | None:
        return None if path.is_file() and not path.is_symlink() and path.read_text() == text else f"{path.name} was changed"
    return check


def nothing_at(path: Path) -> Check:
    return lambda tmp, got: f"{path.name} was made" if path.exists() else None


def cohort_data():
    """The 12-subject cohort of 32 x 32 pixels, as the API takes it."""
    from segreg_lite.data import load_data

    return load_data("cohort", n_subjects=12, size=(32, 32))


def api_run(tmp: Path, **change) -> Got:
    """run_experiment on the small cohort with some of its fields replaced (data built by hand)."""
    import dataclasses

    from segreg_lite.experiment import run_experiment

    data = dataclasses.replace(cohort_data(), **change)
    return api(lambda: run_experiment(data, tmp / "out", methods=["supervised"], fraction=0.2, preset="smoke",
                                      smoke=True, device="cpu", progress=False))


def tar_of(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A tar at ``path`` of files (bytes) and folders (None)."""
    import tarfile

    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


# -- the cases: arguments ---------------------------------------------------------------------------
P = Path  # the cases' temporary folder is their argument, `t`


@case("--out ''", refused("--out is empty, which would be the current folder"), issue=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--out", "")


@case("--size 100000 100000", refused("--size must be multiples of 16 from 16 to 512, got 100000 100000"), issue=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--size", "100000", "100000", "--out", str(t / "o"))


@case("--data-seed -1", refused("--data-seed must be a non-negative integer"), issue=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--data-seed", "-1", "--out", str(t / "o"))


@case("--fraction 1 with the joint method", refused("--fraction 1 annotates every training image, so joint would have nothing"),
      issue=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "joint", "--fraction", "1", "--out", str(t / "o"))


@case("--fraction -0.5", refused("--fraction must be in (0, 1], got -0.5", nothing_at(P("o"))))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--fraction", "-0.5", "--out", "o")


@case("--fraction inf", refused("--fraction must be in (0, 1], got inf"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--fraction", "inf", "--out", str(t / "o"))


@case("--fraction 0.9 of 5 subjects with UniMatch", refused("--fraction 0.9 annotates every training image (all 3 of 5"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "unimatch", "--subjects", "5", "--fraction", "0.9", "--out", str(t / "o"))


@case("--subjects 3000000", refused("--subjects must be at most 2000 (segreg_lite.limits.MAX_SUBJECTS"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--subjects", "3000000", "--out", str(t / "o"))


@case("--methods supervised,nope", refused("unknown method(s) ['nope']: choose from"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised,nope", "--out", str(t / "o"))


@case("--methods ,", refused("unknown method(s) (none given)"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", ",", "--out", str(t / "o"))


@case("--device quantum", refused("unknown device 'quantum': use auto, cpu"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--device", "quantum", "--out", str(t / "o"))


@case("--rounds 1.5", refused("argument --rounds: invalid int value: '1.5'"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "joint", "--rounds", "1.5", "--out", str(t / "o"))


@case("--size with one number", refused("argument --size: expected 2 arguments"))
def _(t: P) -> Got:
    return cli("run", "--size", "32", "--out", str(t / "o"))


@case("no command at all", refused("the following arguments are required: command"))
def _(t: P) -> Got:
    return cli()


@case("sweep --seeds 0,0", refused("repeated fraction or seed in fractions [0.5], seeds [0, 0]"))
def _(t: P) -> Got:
    return cli(*SWEEP, "--seeds", "0,0", "--out", str(t / "o"))


@case("sweep --jobs -3", refused("--jobs must be a positive integer, got -3"))
def _(t: P) -> Got:
    return cli(*SWEEP, "--jobs", "-3", "--out", str(t / "o"))


# -- the cases: output folders ------------------------------------------------------------------------
@case("--out below a file", refused("cannot create the folder", nothing_at(P("afile") / "x")))
def _(t: P) -> Got:
    (t / "afile").write_text("mine")
    return cli(*RUN, "--methods", "supervised", "--out", str(t / "afile" / "x"))


@case("cohort --out an existing file", refused("afile is a file, not a folder", untouched(P("afile"), "mine")))
def _(t: P) -> Got:
    (t / "afile").write_text("mine")
    return cli("cohort", "--subjects", "12", "--size", "32", "32", "--out", str(t / "afile"))


@case("lock file is a link to a user's file", refused(".segreg-lite.lock is a symbolic link", untouched(P("victim.txt"), "mine")),
      issue=True)
def _(t: P) -> Got:
    (t / "victim.txt").write_text("mine")
    (t / "f").mkdir()
    (t / "f" / ".segreg-lite.lock").symlink_to(t / "victim.txt")
    return cli(*RUN, "--methods", "supervised", "--out", str(t / "f"))


@case("lock file is a folder", refused(".segreg-lite.lock is not segreg-lite's lock file"))
def _(t: P) -> Got:
    (t / "f" / ".segreg-lite.lock").mkdir(parents=True)
    return cli(*RUN, "--methods", "supervised", "--out", str(t / "f"))


@case("a user's .tmp file in --out", refused("is not a segreg-lite run folder", untouched(P("f") / ".thesis.autosave.tmp", "draft")),
      issue=True)
def _(t: P) -> Got:
    (t / "f").mkdir()
    (t / "f" / ".thesis.autosave.tmp").write_text("draft")
    return cli(*RUN, "--methods", "supervised", "--out", str(t / "f"))


# -- the cases: data ------------------------------------------------------------------------------
@case("--data a folder that does not exist", refused("is neither 'cohort', 'oasis' nor an existing NIfTI folder"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--data", str(t / "nowhere"), "--out", str(t / "o"))


@case("--data an empty folder", refused("match the pattern '*_image.nii*'"))
def _(t: P) -> Got:
    (t / "empty").mkdir()
    return cli(*RUN, "--methods", "supervised", "--data", str(t / "empty"), "--out", str(t / "o"))


def _nifti_case(t: P, **kw) -> Got:
    return cli(*RUN, "--methods", "supervised", "--data", str(nifti_pairs(t / "d", **kw)), "--out", str(t / "o"))


@case("NIfTI image holding NaN", refused("c0_image.nii.gz (c0): image contains NaN or inf"))
def _(t: P) -> Got:
    import numpy as np

    img = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    img[3, 3] = np.nan
    return _nifti_case(t, image=img)


@case("NIfTI label 7 in a 5-class table", refused("c0_label.nii.gz: label values [7] are outside the table 0..4"))
def _(t: P) -> Got:
    import numpy as np

    return _nifti_case(t, label=np.full((32, 32), 7, np.uint8))


@case("NIfTI label of 0.5", refused("c0_label.nii.gz: label map has non-integer values"))
def _(t: P) -> Got:
    import numpy as np

    return _nifti_case(t, label=np.full((32, 32), 0.5, np.float32))


@case("NIfTI image of complex numbers", refused("c0_image.nii.gz: the header declares data of type complex64"))
def _(t: P) -> Got:
    import numpy as np

    return _nifti_case(t, image=np.ones((32, 32), np.complex64))


@case("NIfTI image of one value", refused("image is constant"))
def _(t: P) -> Got:
    import numpy as np

    return _nifti_case(t, image=np.full((32, 32), 3.0, np.float32))


@case("a text file named _image.nii.gz", refused("c0_image.nii.gz: not a readable NIfTI file"))
def _(t: P) -> Got:
    folder = nifti_pairs(t / "d")
    (folder / "c0_image.nii.gz").write_bytes(gzip.compress(b"<html>not an image</html>"))
    return cli(*RUN, "--methods", "supervised", "--data", str(folder), "--out", str(t / "o"))


@case("image and label of other shapes", refused("c0_image.nii.gz has shape (32, 32) but its label"))
def _(t: P) -> Got:
    import numpy as np

    return _nifti_case(t, label=np.zeros((32, 48), np.uint8))


@case("slices of 20 x 20 pixels", refused("crop or pad your slices"))
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--data", str(nifti_pairs(t / "d", shape=(20, 20))), "--out", str(t / "o"))


@case("a label without its image", refused("label files without an image"))
def _(t: P) -> Got:
    folder = nifti_pairs(t / "d")
    shutil.copy(folder / "c1_label.nii.gz", folder / "lost_label.nii.gz")
    return cli(*RUN, "--methods", "supervised", "--data", str(folder), "--out", str(t / "o"))


@case("an image whose label is a folder", refused("images without a label file"))
def _(t: P) -> Got:
    folder = nifti_pairs(t / "d")
    (folder / "c1_label.nii.gz").unlink()
    (folder / "c1_label.nii.gz").mkdir()
    return cli(*RUN, "--methods", "supervised", "--data", str(folder), "--out", str(t / "o"))


@case("a 4D NIfTI image", refused("expected a 2D slice or 3D volume"))
def _(t: P) -> Got:
    import numpy as np

    rng = np.random.default_rng(2)
    return _nifti_case(t, image=rng.random((32, 32, 3, 2)).astype(np.float32),
                       label=rng.integers(0, 5, (32, 32, 3, 2)).astype(np.uint8))


@case("a 3D NIfTI folder on the command line", refused("save_nifti_folder(new_folder, data.images, data.labels)"), issue=True)
def _(t: P) -> Got:
    import numpy as np

    rng = np.random.default_rng(3)
    return _nifti_case(t, image=rng.random((32, 32, 4)).astype(np.float32),
                       label=rng.integers(0, 5, (32, 32, 4)).astype(np.uint8))


@case("dangling and looping image/label links", warned("NIfTI file(s) are symbolic links that lead nowhere"), issue=True)
def _(t: P) -> Got:
    from segreg_lite.nifti import load_nifti_folder

    folder = nifti_pairs(t / "d")
    (folder / "x_image.nii.gz").symlink_to(t / "gone.nii.gz")
    (folder / "x_label.nii.gz").symlink_to(t / "gone.nii.gz")
    (folder / "y_image.nii.gz").symlink_to("y_label.nii.gz")
    (folder / "y_label.nii.gz").symlink_to("y_image.nii.gz")
    return api(lambda: load_nifti_folder(folder))


@case("label_suffix of one tag twice", refused("label_suffix must be two different non-empty strings"))
def _(t: P) -> Got:
    from segreg_lite.nifti import load_nifti_folder

    return api(lambda: load_nifti_folder(nifti_pairs(t / "d"), label_suffix=("_image", "_image")))


@case("a 1 MB scaled int8 NIfTI declaring 2.5 GB", refused("int8 image scaled to float64, 2.5 GB in memory, over the limit"),
      issue=True)
def _(t: P) -> Got:
    import nibabel as nib
    import numpy as np

    from segreg_lite.nifti import read_nifti_array

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1100, 1100, 256))
    hdr.set_data_dtype(np.int8)
    hdr.set_slope_inter(2.0, 0.0)
    hdr.set_data_offset(352)
    (t / "s.nii.gz").write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4))
    return api(lambda: read_nifti_array(t / "s.nii.gz"))


@case("an OASIS archive that is an HTML page", refused("not a readable tar archive"))
def _(t: P) -> Got:
    from segreg_lite.oasis import extract_oasis2d

    (t / "oasis.tar").write_text("<html><body>Service unavailable</body></html>")
    return api(lambda: extract_oasis2d(t / "oasis.tar", t / "out"))


@case("an archive with a file and a folder of one name", refused("archive member 'seg4_labels.txt' is both a file and a folder"),
      issue=True)
def _(t: P) -> Got:
    from segreg_lite.oasis import extract_oasis2d

    tar = tar_of(t / "oasis.tar", [("seg4_labels.txt", b"0 Unknown\n"), ("seg4_labels.txt/x", b"y"),
                                   ("OASIS_OAS1_0001_MR1/slice_norm.nii.gz", b"n"), ("OASIS_OAS1_0001_MR1/slice_seg4.nii.gz", b"s")])
    return api(lambda: extract_oasis2d(tar, t / "out"))


@case("API: images scaled 0..255", refused("look scaled 0..255 or raw"), issue=True)
def _(t: P) -> Got:
    data = cohort_data()
    return api_run(t, images=data.images * 255)


@case("API: an image holding NaN", refused("data.images contains NaN or inf", nothing_at(P("out"))))
def _(t: P) -> Got:
    images = cohort_data().images.clone()
    images[0, 0, 5, 5] = float("nan")
    return api_run(t, images=images)


@case("API: a label past the table", refused("data.labels values [9] are outside 0..4"))
def _(t: P) -> Got:
    labels = cohort_data().labels.clone()
    labels[0, 0, 0] = 9
    return api_run(t, labels=labels)


@case("API: float64 images", refused("data.images must be float32, got torch.float64"))
def _(t: P) -> Got:
    return api_run(t, images=cohort_data().images.double())


@case("API: labels as floats", refused("data.labels must be integer labels (12, 32, 32)"))
def _(t: P) -> Got:
    return api_run(t, labels=cohort_data().labels.float())


# -- the cases: finished runs, damaged or edited (these need the base run) -------------------------------
@case("the same command twice", result("supervised_aug: done in an earlier run", lambda t, g: same_dice(t / "r")(t, g)), slow=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(base_run(t)))


@case("another --seed into a finished folder", refused("holds another run (differs in seed (0 vs 1)"), slow=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised_aug", "--seed", "1", "--out", str(base_run(t)))


@case("Dice hand-edited to 0.999 in methods/<m>.json",
      result("was changed after segreg-lite wrote it", lambda t, g: same_dice(t / "r")(t, g)), slow=True, issue=True)
def _(t: P) -> Got:
    folder = base_run(t)
    path = folder / "methods" / "supervised_aug.json"
    held = json.loads(path.read_text())
    held["metrics"]["dice"] = 0.999
    path.write_text(json.dumps(held, indent=2))
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))


@case("results.json hand-edited, then summary", refused("results.json was changed after segreg-lite wrote it"), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    held = json.loads((folder / "results.json").read_text())
    held["methods"]["supervised_aug"]["metrics"]["dice"] = 0.999
    (folder / "results.json").write_text(json.dumps(held))
    return cli("summary", str(folder))


@case("summary of a folder without results", refused("results.json not found: is"))
def _(t: P) -> Got:
    (t / "f").mkdir()
    return cli("summary", str(t / "f"))


@case("summary of one run twice", refused("the same seed appears twice"), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    return cli("summary", str(folder), str(folder))


@case("results.json that is a JSON list", refused("results.json: not a segreg-lite results file (no data, preset"), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "results.json").write_text("[1, 2]")
    return cli("summary", str(folder))


@case("run.json that is a JSON list", refused("run.json: damaged run description (not a JSON object)"), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "run.json").write_text("[]")
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))


@case("manifest.json damaged", refused("no longer knows which files here it wrote, so it removes none"), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "manifest.json").write_text('{"files": 3}')
    return cli(*RUN, "--methods", "supervised_aug", "--overwrite", "--out", str(folder))


@case("manifest.json deleted", result("has no SHA-256 in manifest.json", lambda t, g: same_dice(t / "r")(t, g)), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "manifest.json").unlink()
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))


@case("a checkpoint replaced by text", result("pretrained_seg.pt was changed after segreg-lite wrote it",
                                               lambda t, g: same_dice(t / "r")(t, g)), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "checkpoints" / "pretrained_seg.pt").write_text("not a checkpoint")
    (folder / "methods" / "supervised_aug.json").unlink()
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))


@case("a result that is a link to a user's file", result("damaged method result", untouched(P("mine.json"), "{ my notes")),
      slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (t / "mine.json").write_text("{ my notes")
    (folder / "methods" / "supervised_aug.json").unlink()
    (folder / "methods" / "supervised_aug.json").symlink_to(t / "mine.json")
    return cli(*RUN, "--methods", "supervised_aug", "--out", str(folder))


@case("a manifest listing ../victim.txt, then --overwrite", result("", untouched(P("victim.txt"), "mine")), slow=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (t / "victim.txt").write_text("mine")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["../victim.txt"] = None
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return cli(*RUN, "--methods", "supervised", "--seed", "1", "--overwrite", "--out", str(folder))


@case("--out with spaces and accents", result("", lambda t, g: None if 0 <= dice(t / "résultats v2", "supervised") <= 1
                                               else "no Dice"), slow=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--out", str(t / "résultats v2"))


@case("--subjects 3", warned("too small for its Dice to mean anything"), slow=True, issue=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--subjects", "3", "--out", str(t / "o"))


@case("a folder of 2D NIfTI slices", result("", lambda t, g: None if 0 <= dice(t / "o", "supervised") <= 1 else "no Dice"),
      slow=True)
def _(t: P) -> Got:
    return cli(*RUN, "--methods", "supervised", "--data", str(nifti_pairs(t / "d", n=8)), "--out", str(t / "o"))


@case("bench_joint on a damaged run.json", refused("run.json: damaged run file: not valid JSON"), slow=True, issue=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "checkpoints" / "pretrained_reg.pt").write_bytes((folder / "checkpoints" / "pretrained_seg.pt").read_bytes())
    (folder / "run.json").write_text('{"split": ')
    return script("benchmarks/bench_joint.py", str(folder), "--subjects", "12", "--size", "32", "32")


@case("bench_joint on a run without its registration network", refused("pretrained_reg.pt is missing"), slow=True)
def _(t: P) -> Got:
    return script("benchmarks/bench_joint.py", str(base_run(t)), "--subjects", "12", "--size", "32", "32")


@case("bench_joint on another cohort", refused("was run on other data (embedded cohort, 12 subjects of 32x32, seed 0)"),
      slow=True, issue=True)
def _(t: P) -> Got:
    folder = base_run(t)
    (folder / "checkpoints" / "pretrained_reg.pt").write_bytes(b"")  # present: the cohort is checked first
    return script("benchmarks/bench_joint.py", str(folder), "--subjects", "12", "--size", "32", "32", "--data-seed", "1")


# -- the battery ----------------------------------------------------------------------------------
@dataclass
class Row:
    case: Case
    got: Got
    why: str | None
    line: str = ""  # the message, its case's temporary folder left out of paths
    seconds: float = field(default=0.0)


def run_cases(cases: list[Case]) -> list[Row]:
    rows = []
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="segreg-battery-") as root:
        _BASE_ROOT[:] = [Path(root)]
        _BASE.clear()
        for i, c in enumerate(cases):
            tmp = Path(root) / f"case{i:02d}"
            tmp.mkdir()
            os.chdir(tmp)  # relative paths, and anything written by mistake, land here
            start = time.perf_counter()
            try:
                got = c.run(tmp)
                why = c.expect.judge(tmp, got)
            except BaseException as exc:  # noqa: BLE001 - a case that cannot even be set up fails
                got, why = _traceback(exc), "the case itself failed"
            finally:
                os.chdir(home)
            rows.append(Row(c, got, why, got.line.replace(f"{tmp}{os.sep}", ""), time.perf_counter() - start))
    return rows


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def table(rows: list[Row]) -> str:
    lines = ["case | expected | got | ok", "--- | --- | --- | ---"]
    for r in rows:
        got = "traceback" if r.got.code == "traceback" else f"exit {r.got.code}: {r.line}"
        ok = "ok" if r.why is None else f"FAIL ({r.why})"
        lines.append(f"{'[24] ' if r.case.issue else ''}{r.case.name} | {_cut(str(r.case.expect), 60)} | {_cut(got, 90)} | {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fast", action="store_true", help="leave out the cases that train a model")
    p.add_argument("-k", dest="match", default="", help="only the cases whose name holds this text")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    cases = [c for c in CASES if args.match in c.name and not (args.fast and c.slow)]
    if args.list:
        print("\n".join(f"{'[24] ' if c.issue else ''}{c.name}: {c.expect}" for c in cases))
        return 0
    start = time.perf_counter()
    rows = run_cases(cases)
    print(table(rows))
    failed = [r for r in rows if r.why is not None]
    for r in failed:
        if r.got.code == "traceback":
            print(f"\n{r.case.name}:\n{r.got.err}", file=sys.stderr)
    beyond = sum(not r.case.issue for r in rows)
    print(f"\n{len(rows) - len(failed)} of {len(rows)} cases ok ({len(rows) - beyond} from issue 24, {beyond} beyond it) "
          f"in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
