"""The run folder: what ``segreg-lite run`` writes, owned by one class that never misreports it.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025), whose rounds a run folder lets us resume. Layout::

    run.json           what the run is: data, split, config, seed, preset, segreg-lite version
    manifest.json      every file segreg-lite wrote here, with the fingerprint it was written under and its SHA-256
    methods/<m>.json   each finished method's results, carrying its fingerprint
    checkpoints/*.pt   pre-trained models and joint runs (one file each, rewritten per round)
    results.json, results.csv
    .segreg-lite.lock  present while a run writes here, holding its process id

What :class:`RunFolder` guarantees:

- **One writer.** ``with RunFolder(path):`` takes an OS lock (``fcntl.flock``) on the folder
  itself, through a file descriptor of the directory, and one on the lock file; the kernel
  releases both when the process ends, however it ends. A second run into a busy folder fails at
  once with :class:`FolderBusy`, naming the holder's process id. The folder's own lock is what
  makes this hold when the lock file is deleted by hand (``rm .segreg-lite.lock``): a lock on a
  file is lost with its name, and a second run would then take a fresh file and, with
  ``overwrite``, wipe a live run's results. Deleting a file in the folder leaves the folder (and
  its lock) in place, so a live run keeps it. The lock file remains, to name the holder and for
  filesystems that refuse locks on directories (some network filesystems; Windows, where an
  open file cannot be deleted anyway). It is opened without following a symbolic link and must
  be a plain file with one name, so a planted link never makes a run write its pid elsewhere.
- **Nothing stale is read back as done.** A result or checkpoint carries the :func:`fingerprint`
  of what made it (data, split, config, seed, method, the package's code (:func:`code_digest`)
  and version); :meth:`RunFolder.read_result` returns it only when the fingerprint matches, and
  otherwise says what differs. The manifest also records the SHA-256 of every file as written
  (a checkpoint's once it is saved, :meth:`RunFolder.seal`): a result or checkpoint changed
  since (a Dice edited by hand, a damaged copy) is named and computed again, never reused.
- **Only its own files are deleted or overwritten.** ``overwrite`` removes the files listed in
  the manifest (each listed *before* it is written, so a killed write can never leave an
  unlisted file) and refuses, naming them, when the folder holds anything else; a write onto a
  file that exists but is not listed is refused the same way.
- **No torn or orphaned files.** Writes are atomic (:func:`segreg_lite.io.atomic_path`), and the
  temporary files of a write killed mid-way are removed when the next run takes the lock: only
  names that carry atomic_path's marker (``.<name>.<random>.segreg-lite.tmp``) *and* belong to a
  file the manifest lists, so nothing is removed from a folder not proven ours, and a user's
  ``.thesis.autosave.tmp`` is never touched.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from segreg_lite import __version__
from segreg_lite.io import json_bytes, read_json, temp_target, write_bytes
from segreg_lite.resultfiles import check_method_result

try:  # POSIX; on Windows the lock falls back to msvcrt
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

RUN = "run.json"
MANIFEST = "manifest.json"
LOCK = ".segreg-lite.lock"
METHODS_DIR, CHECKPOINTS_DIR = "methods", "checkpoints"
#: What a folder written before manifests existed holds (ours if its run.json is a run's).
_LEGACY = (RUN, "results.json", "results.csv", f"{METHODS_DIR}/*.json", f"{CHECKPOINTS_DIR}/*.pt")
#: The remedy a refusal offers for a folder holding another run. Callers without that option
#: (``segreg-lite sweep`` has no ``--overwrite``) put their own in its place.
OVERWRITE = "pass overwrite=True (--overwrite)"
#: The fingerprint's parts, in the order a difference is reported.
FINGERPRINT_KEYS = ("data", "split", "config", "seed", "method", "code", "segreg_lite")


class RunFolderError(ValueError):
    """A run folder refuses: it holds another run, foreign files, or cannot be written."""


class FolderBusy(RunFolderError):
    """Another process is running into the folder (it holds the lock)."""


def check_out(path: str | os.PathLike, name: str = "out") -> Path:
    """``path`` as a Path; an empty or blank one is a RunFolderError naming the argument ``name``,
    since ``Path("")`` is the current folder, which a run would then take over."""
    if not str(os.fspath(path)).strip():
        raise RunFolderError(f"{name} is empty, which would be the current folder: name the output folder")
    return Path(path)


def digest(obj: Any) -> str:
    """A short SHA-256 of a JSON-ready value (dict keys sorted), for fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def data_digest(images: Any, labels: Any, label_names: Sequence[str], subjects: Sequence[str]) -> str:
    """SHA-256 of the arrays' bytes, shapes and dtypes, the label names and the subject ids: two
    data sets share it only if they hold the same pixels, labels and subjects."""
    h = hashlib.sha256()
    for arr in (images, labels):
        a = np.ascontiguousarray(arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    h.update(json.dumps([list(label_names), list(subjects)]).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """A SHA-256 of this package's Python source (:func:`source_digest` of ``segreg_lite/``),
    computed once per process: the code identity in every :func:`fingerprint`, so results made
    by changed code are computed again rather than read back."""
    return source_digest(Path(__file__).resolve().parent)


def source_digest(root: Path) -> str:
    """A SHA-256 of the Python files below ``root`` (``**/*.py``; not those under ``data/``, the
    shipped data files). Each module counts as its syntax tree (``ast.dump``) without
    docstrings, so comments, docstrings and formatting may change without changing it; a module
    that does not parse counts by its bytes."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("data/"):
            continue
        source = path.read_bytes()
        try:
            tree = ast.parse(source)
        except SyntaxError:
            text = source
        else:
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    node.body = body[1:]
            text = ast.dump(tree).encode()
        h.update(f"{rel}\0{len(text)}\0".encode())
        h.update(text)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 of the file at ``path`` (hex), None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def fingerprint(*, data: str, split: dict[str, Any], config: dict[str, Any], seed: int, method: str) -> dict[str, Any]:
    """What made a result or checkpoint: the data digest, digests of the split and config dicts,
    the seed, the method, the package's code (:func:`code_digest`) and its version."""
    return {"data": data[:16], "split": digest(split), "config": digest(config), "seed": int(seed),
            "method": method, "code": code_digest()[:16], "segreg_lite": __version__}


def differences(saved: Any, expected: dict[str, Any]) -> list[str]:
    """The fingerprint keys in which ``saved`` differs from ``expected`` (all of them when
    ``saved`` is not a fingerprint at all, as in files written before fingerprints existed)."""
    if not isinstance(saved, dict):
        return ["fingerprint (none recorded)"]
    out = []
    for key in FINGERPRINT_KEYS:
        if saved.get(key) != expected.get(key):
            shown = key in ("seed", "method", "segreg_lite")  # the others are digests, meaningless to print
            out.append(f"{key} ({saved.get(key)!r} vs {expected.get(key)!r})" if shown else
                       "code (segreg-lite's source changed since)" if key == "code" else key)
    return out


def _describe(key: str, held: Any, wanted: Any) -> str:
    if isinstance(wanted, (int, float, str)) and not isinstance(wanted, bool) and len(repr(wanted)) < 40:
        return f"{key} ({held!r} vs {wanted!r})"
    return key


class RunFolder:
    """One run folder (see the module docstring). Use it as a context manager, which creates the
    folder, takes the lock and removes leftover temporary files; everything that reads or
    writes the folder's files happens inside it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_out(path, "path")
        self._fd: int | None = None
        self._folder_fd: int | None = None
        self._created = False
        self._files: dict[str, Any] = {}
        self._sha: dict[str, str] = {}  # the SHA-256 of each listed file as written (see seal)
        self._legacy = False  # a run written before manifests: ours by its run.json (see ours)
        #: Temporary files of killed writes removed when the lock was taken (relative paths).
        self.removed_temp: list[str] = []

    # -- layout -------------------------------------------------------------------------------
    def method_path(self, name: str) -> Path:
        return self.path / METHODS_DIR / f"{name}.json"

    def checkpoint_path(self, name: str) -> Path:
        return self.path / CHECKPOINTS_DIR / f"{name}.pt"

    @property
    def run_path(self) -> Path:
        return self.path / RUN

    # -- lock ---------------------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        self._make_folder()
        try:
            self._lock()
            self._files, self._sha = self._read_manifest()
            self._legacy = not self._files and self._legacy_run()
            self.removed_temp = self._remove_temp_files()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        fd, self._fd = self._fd, None
        folder_fd, self._folder_fd = self._folder_fd, None
        if fd is not None:
            try:
                os.unlink(self.path / LOCK)  # before unlocking: a waiter then sees a fresh file (see _lock)
            except OSError:
                pass
            os.close(fd)  # releases the file's lock
        if folder_fd is not None:
            os.close(folder_fd)  # releases the folder's lock, last: until then no other run gets in
        if fd is not None and self._created and not any(self.path.iterdir()):
            self.path.rmdir()  # a run that failed before writing anything leaves nothing behind

    def _make_folder(self) -> None:
        self._created = make_folder(self.path)

    def _lock(self) -> None:
        """Lock the folder itself, then the lock file (see the module docstring for why both)."""
        path = self.path / LOCK
        fd = self._open_lock()
        try:
            self._folder_fd = _lock_folder(self.path)
            free = True
        except BlockingIOError:
            free = False
        while True:
            if not (free and _try_lock(fd)):
                holder = _holder(fd)
                os.close(fd)
                raise FolderBusy(f"{self.path} is in use by another segreg-lite run (process "
                                 f"{holder or 'id unknown'}); wait for it to end or choose another output folder")
            os.ftruncate(fd, 0)  # say who holds it at once: a run refused now names this process
            os.write(fd, f"{os.getpid()}\n".encode())
            # The holder unlinks the file just before releasing it: a lock won on that unlinked
            # file protects nothing, so check that the path still names the file we locked.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = self._open_lock()
        self._fd = fd

    def _open_lock(self) -> int:
        """Open (or create) the lock file for writing, never through a symbolic link and only if
        it is a plain file with no other name: a planted link (``ln -s ../victim.txt``) would
        otherwise have the run write its process id into someone else's file."""
        path = self.path / LOCK
        why = f"{path} is a symbolic link, not segreg-lite's lock file: remove it (segreg-lite never follows it) or choose another output folder"
        not_ours = (f"{path} is not segreg-lite's lock file (not a plain file, or a link to another file): "
                    "remove it or choose another output folder")
        if path.is_symlink():
            raise RunFolderError(why)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except PermissionError:
            raise RunFolderError(f"cannot write in {self.path}: permission denied (choose another output folder)") from None
        except OSError as err:
            if path.is_symlink():  # planted between the check and the open (ELOOP)
                raise RunFolderError(why) from None
            if path.is_dir():  # EISDIR
                raise RunFolderError(not_ours) from None
            raise RunFolderError(f"cannot write in {self.path}: {err.strerror or err}") from None
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode) or held.st_nlink > 1:
            os.close(fd)
            raise RunFolderError(not_ours)
        return fd

    def _require_lock(self) -> None:
        if self._fd is None:
            raise RuntimeError("RunFolder: use it as a context manager (with RunFolder(path) as folder: ...)")

    # -- files --------------------------------------------------------------------------------
    def _files_below(self) -> Iterator[str]:
        """Every file below the folder (relative POSIX paths, lazily), without the lock file."""
        return (p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                if (p.is_file() or p.is_symlink()) and p.name != LOCK)

    def _empty(self) -> bool:
        return not any(p.name != LOCK for p in self.path.iterdir())

    def _remove_temp_files(self) -> list[str]:
        """Remove the temporary files of our own killed writes: names carrying atomic_path's
        marker whose target the manifest lists (so never in a folder without our manifest, and
        never a file of a program that names its own temporary files alike)."""
        removed = []
        listed = (set(self._files) | {MANIFEST}) if self._files else set()
        for d in (self.path, self.path / METHODS_DIR, self.path / CHECKPOINTS_DIR):
            if listed and d.is_dir() and not d.is_symlink():
                for p in sorted(d.iterdir()):
                    target = temp_target(p.name)
                    if target and (p.parent / target).relative_to(self.path).as_posix() in listed \
                            and p.is_file() and not p.is_symlink():
                        p.unlink()
                        removed.append(p.relative_to(self.path).as_posix())
        return removed

    def _read_manifest(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The manifest's files (relative path -> fingerprint) and their SHA-256 digests."""
        path = self.path / MANIFEST
        if not path.exists():
            return {}, {}
        # Without its list, no file here can be told ours: nothing is removed, not even by overwrite.
        remedy = (f"segreg-lite no longer knows which files here it wrote, so it removes none: move away what is "
                  f"yours and delete {self.path}, or choose another output folder")
        try:
            held = read_json(path, "segreg-lite manifest")
        except ValueError as err:
            raise RunFolderError(f"{err}; {remedy}") from None
        if not isinstance(held, dict) or not isinstance(held.get("files"), dict):
            raise RunFolderError(f"{path}: damaged segreg-lite manifest (no 'files' table); {remedy}")
        sha = held.get("sha256", {})
        if not isinstance(sha, dict) or not all(isinstance(v, str) for v in sha.values()):
            raise RunFolderError(f"{path}: damaged segreg-lite manifest ('sha256' is not a table of digests); {remedy}")
        return dict(held["files"]), dict(sha)

    def _record(self, rel: str, fp: Any, sha: str | None = None) -> None:
        """List ``rel`` in the manifest *before* it is written, with ``sha``, the SHA-256 of what
        is about to be written (None when it is not known yet: a checkpoint's is recorded by
        :meth:`seal` once saved). A write killed half-way then leaves a listed file that may not
        exist or may not match its digest, never an unlisted one. A file already there that
        segreg-lite did not write is refused, not overwritten."""
        self._require_lock()
        if rel not in self.ours() and os.path.lexists(self.path / rel):
            raise RunFolderError(f"{self.path / rel} was not written by segreg-lite into this folder (not in {MANIFEST}); "
                                 "move it away or choose another output folder")
        before = (rel in self._files, self._files.get(rel), self._sha.get(rel))
        if rel not in self._files or self._files[rel] != fp:
            self._files[rel] = fp
            self._sha.pop(rel, None)  # a digest of what another fingerprint made vouches for nothing now
        if sha is not None:
            self._sha[rel] = sha
        if (True, fp, self._sha.get(rel)) != before:
            self._write_manifest()

    def _write_manifest(self) -> None:
        write_bytes(self.path / MANIFEST, json_bytes({"format": "segreg-lite-manifest", "files": self._files,
                                                      "sha256": self._sha}))

    def write_json(self, rel: str, obj: Any, fp: Any = None) -> Path:
        """Write ``obj`` to ``rel`` (relative to the folder), atomically and listed in the manifest
        with its SHA-256."""
        return self._write_bytes(rel, json_bytes(obj), fp)

    def write_text(self, rel: str, text: str) -> Path:
        return self._write_bytes(rel, text.encode("utf-8"), None)

    def _write_bytes(self, rel: str, data: bytes, fp: Any) -> Path:
        self._record(rel, fp, hashlib.sha256(data).hexdigest())
        return write_bytes(self.path / rel, data)

    def claim(self, path: Path, fp: Any) -> Path:
        """List a file that another writer is about to write here (a checkpoint) under ``fp``;
        once written, :meth:`seal` records its digest."""
        self._record(path.relative_to(self.path).as_posix(), fp)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def seal(self, path: Path) -> None:
        """Record the SHA-256 of the claimed file ``path`` as it is now, just written (a checkpoint,
        after each save): until then it cannot be vouched for, and is not resumed from."""
        self._require_lock()
        rel = path.relative_to(self.path).as_posix()
        if rel not in self._files:
            raise RuntimeError(f"RunFolder.seal: {rel} was not claimed")
        sha = file_sha256(path)
        if sha is not None and self._sha.get(rel) != sha:
            self._sha[rel] = sha
            self._write_manifest()

    def changed(self, rel: str, sha: dict[str, str] | None = None) -> str:
        """Why the listed file ``rel`` is not, byte for byte, what segreg-lite wrote ("" if it is):
        its SHA-256 differs from the manifest's, or none was recorded (a write killed before its
        digest was, or a folder written before digests existed). ``sha``: the digests to check
        against (default this folder's, as read when the lock was taken)."""
        want = (self._sha if sha is None else sha).get(rel)
        path = self.path / rel
        if want is None:
            return f"{path} has no SHA-256 in {MANIFEST} (its write was cut short, or an older segreg-lite wrote it)"
        if file_sha256(path) != want:
            return (f"{path} was changed after segreg-lite wrote it (its SHA-256 is not the one {MANIFEST} records: "
                    "edited by hand, or damaged)")
        return ""

    def ours(self) -> set[str]:
        """Relative paths of the files segreg-lite wrote here (present or not)."""
        files = set(self._files) | {MANIFEST}
        if self._legacy:
            files |= {p.relative_to(self.path).as_posix() for pat in _LEGACY for p in self.path.glob(pat)}
        return files

    def _legacy_run(self) -> bool:
        try:
            held = read_json(self.run_path)
        except (OSError, ValueError):
            return False
        return isinstance(held, dict) and {"config", "split"} <= set(held)

    def foreign(self, first: int | None = None) -> list[str]:
        """Files here that segreg-lite did not write (relative paths, sorted); only the ``first``
        found when given (an --out pointed at a home folder must not walk all of it)."""
        ours = self.ours()
        return sorted(itertools.islice((f for f in self._files_below() if f not in ours), first))

    def clear(self) -> None:
        """Remove every file segreg-lite wrote here; refuse, naming them, if others are present."""
        self._require_lock()
        foreign = self.foreign(first=9)
        if foreign:
            shown = ", ".join(foreign[:8]) + (" and more" if len(foreign) > 8 else "")
            raise RunFolderError(f"{self.path} holds files that segreg-lite did not write ({shown}); overwrite removes "
                                 "only segreg-lite's own files: move those away first, or choose another output folder")
        for rel in sorted(self.ours() - {MANIFEST}) + [MANIFEST]:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue  # a hand-edited manifest never reaches outside the folder
            (self.path / rel).unlink(missing_ok=True)
        for d in (METHODS_DIR, CHECKPOINTS_DIR):
            if (self.path / d).is_dir() and not any((self.path / d).iterdir()):
                (self.path / d).rmdir()
        self._files, self._sha, self._legacy = {}, {}, False

    # -- the run ------------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        """``run.json``, or None when absent; a damaged file is a RunFolderError naming it."""
        if not self.run_path.exists():
            return None
        try:
            held = read_json(self.run_path, "run description")
        except ValueError as err:
            raise RunFolderError(f"{err}; {OVERWRITE} to start this run afresh") from None
        if not isinstance(held, dict):
            raise RunFolderError(f"{self.run_path}: damaged run description (not a JSON object); "
                                 f"{OVERWRITE} to start this run afresh")
        return held

    def start(self, spec: dict[str, Any], *, overwrite: bool = False) -> None:
        """Make this folder hold the run ``spec`` (written to ``run.json``). A folder holding the
        same run is resumed. One holding another run, segreg-lite files without a ``run.json``,
        or anything else is refused unless ``overwrite``, which removes segreg-lite's files first
        (and refuses if other files are present)."""
        self._require_lock()
        try:
            held = self.read_run()
        except RunFolderError:
            if not overwrite:
                raise
            held = {}
        if held is not None:
            differ = [_describe(k, held.get(k), spec[k]) for k in spec if held.get(k) != spec[k]]
            if not differ:
                return
            if not overwrite:
                if "segreg_lite" in spec and "segreg_lite" not in held:
                    raise RunFolderError(f"{self.path} holds a run written by a segreg-lite without fingerprints, so its "
                                         f"results cannot be checked against this run; {OVERWRITE} "
                                         "to run it again, or choose another output folder")
                raise RunFolderError(f"{self.path} holds another run (differs in {', '.join(differ)}); "
                                     f"choose another output folder or {OVERWRITE}")
            self.clear()
        elif not self._empty():
            if not overwrite:
                if self._files:
                    raise RunFolderError(f"{self.path} holds files of a segreg-lite run but no {RUN}; {OVERWRITE} "
                                         "to replace them, or choose another output folder")
                raise RunFolderError(f"{self.path} exists and is not a segreg-lite run folder (no {RUN}); "
                                     "choose another output folder")
            self.clear()
        self.write_json(RUN, spec)

    def read_result(self, name: str, expected: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """``(result, "")`` when ``methods/<name>.json`` holds a result made under the
        ``expected`` fingerprint, unchanged since it was written (its SHA-256 is the manifest's) and
        the shape of a result (:func:`segreg_lite.report.check_method_result`); ``(None, why)``
        otherwise (``why`` is empty if there is no file)."""
        path = self.method_path(name)
        if not path.exists():
            return None, ""
        try:
            held = read_json(path, "method result")
        except ValueError as err:
            return None, str(err)
        diff = differences(held.get("fingerprint") if isinstance(held, dict) else None, expected)
        if diff:
            return None, f"{path} was made by another run (differs in {', '.join(diff)})"
        try:  # without the lock (experiment.finished), the manifest as it is now
            sha = self._sha if self._fd is not None else self._read_manifest()[1]
        except RunFolderError as err:
            return None, str(err)
        changed = self.changed(path.relative_to(self.path).as_posix(), sha)
        if changed:
            return None, changed
        try:  # a hand-edited result would otherwise be written into results.json, then fail there
            check_method_result(held, f"{path}: damaged method result")
        except ValueError as err:
            return None, str(err)
        return held, ""

    def write_result(self, name: str, result: dict[str, Any], fp: dict[str, Any]) -> dict[str, Any]:
        """Write ``result`` with its fingerprint to ``methods/<name>.json``; returns what was written."""
        result = {**result, "fingerprint": fp}
        self.write_json(f"{METHODS_DIR}/{name}.json", result, fp)
        return result

    def stale_checkpoint(self, name: str, expected: dict[str, Any]) -> str:
        """Why ``checkpoints/<name>.pt`` cannot be resumed under ``expected`` ("" if it can or if
        it is absent). A stale file that segreg-lite wrote (another fingerprint, or changed since
        it was sealed) is removed (it is recomputed); one not in the manifest is a
        RunFolderError, since it is not ours to delete."""
        path = self.checkpoint_path(name)
        rel = path.relative_to(self.path).as_posix()
        if not path.exists():
            return ""
        if rel not in self.ours():
            raise RunFolderError(f"{path} was not written by segreg-lite into this folder (not in {MANIFEST}); "
                                 "move it away or choose another output folder")
        diff = differences(self._files.get(rel), expected)  # none recorded in a folder that lost its manifest
        why = f"{path} was made by another run (differs in {', '.join(diff)})" if diff else self.changed(rel)
        if not why:
            return ""
        path.unlink()
        return f"{why}; removed, computing again"


def changed_since_written(folder: str | os.PathLike, rel: str) -> str:
    """Why the file ``rel`` of the run folder ``folder`` (``results.json``, a checkpoint) is not
    what segreg-lite wrote there, by the folder's manifest, read without taking the lock: its
    SHA-256 differs, or the manifest is damaged; "" when it matches, or when no manifest records
    a digest of it (exported results, folders of an older segreg-lite)."""
    run = RunFolder(folder)
    if not (run.path / MANIFEST).is_file():
        return ""
    try:
        sha = run._read_manifest()[1]
    except RunFolderError as err:
        return str(err)
    return run.changed(rel, sha) if rel in sha else ""


def make_folder(path: str | os.PathLike, *, probe: bool = False) -> bool:
    """Create the output folder ``path`` (and its parents) unless it exists; True if it was made.
    Every way this can fail is a RunFolderError that says why in one line: the path is a file,
    lies below a file, or cannot be written. ``probe`` also checks that a file can be written in
    an existing folder (a read-only one)."""
    p = check_out(path, "path")
    if p.exists() and not p.is_dir():
        raise RunFolderError(f"{p} is a file, not a folder: choose another output folder")
    created = False
    if not p.is_dir():
        blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise RunFolderError(f"cannot create the folder {p}: {blocker} is a file")
        try:
            p.mkdir(parents=True)
            created = True
        except FileExistsError:
            if not p.is_dir():  # made by another process at the same moment: fine if a folder
                raise RunFolderError(f"{p} is a file, not a folder: choose another output folder") from None
        except PermissionError:
            top = next((a for a in p.parents if a.exists()), p.parent)
            raise RunFolderError(f"cannot create the folder {p}: no permission to write in {top}") from None
        except OSError as err:
            raise RunFolderError(f"cannot create the folder {p}: {err.strerror or err}") from None
    if probe:
        import tempfile

        try:
            with tempfile.TemporaryFile(dir=p):
                pass
        except PermissionError:
            raise RunFolderError(f"cannot write in {p}: permission denied (choose another output folder)") from None
        except OSError as err:
            raise RunFolderError(f"cannot write in {p}: {err.strerror or err}") from None
    return created


def probe_folder(path: str | os.PathLike, name: str = "out", *, lock: bool = True) -> Path:
    """Fail now, the way a run into ``path`` would fail once it starts writing, with a one-line
    RunFolderError that begins with ``name`` (the argument, ``--out``): ``path`` is a file or lies
    below one, cannot be created or written, its lock file is not ours, its manifest is damaged,
    or, with ``lock``, another run holds it (:class:`FolderBusy`). The command line calls this
    before it spends seconds to minutes making the data a run needs. It takes the lock and gives
    it back, and leaves nothing behind: the folders it made are removed again (and, as the run
    would, it removes the temporary files of our own killed writes). A run that takes the folder
    in between is still refused when the real run locks it."""
    p = check_out(path, name)
    made = [a for a in (p, *p.parents) if not os.path.lexists(a)]  # deepest first
    try:
        if lock:
            with RunFolder(p):
                pass
        else:
            make_folder(p, probe=True)
    except RunFolderError as err:
        raise type(err)(f"{name}: {err}") from None
    finally:
        for a in made:
            try:
                a.rmdir()
            except FileNotFoundError:
                continue  # RunFolder removes the folder it made itself
            except OSError:
                break  # something was written there meanwhile: not ours to remove
    return p


def _holder(fd: int, wait: float = 0.5) -> str:
    """The process id written in a held lock file; the holder writes it right after locking, so
    a run that arrives in between waits up to ``wait`` seconds for it ("" if it never comes)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode(errors="replace").strip()
        if text.isdigit() or time.monotonic() > deadline:
            return text if text.isdigit() else ""
        time.sleep(0.01)


def _lock_folder(path: Path) -> int | None:
    """Lock the folder ``path`` itself (an exclusive ``flock`` on a descriptor of the directory)
    and return the descriptor that holds the lock; BlockingIOError if another process holds it;
    None where directories cannot be locked (Windows, some network filesystems), which leaves
    the lock file alone to keep runs apart."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if isinstance(err, BlockingIOError):
            raise
        return None
    return fd


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt  # pragma: no cover - Windows

    os.lseek(fd, 1 << 20, os.SEEK_SET)  # lock a byte past the pid, so that it stays readable
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True
