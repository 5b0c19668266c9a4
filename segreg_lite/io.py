"""Atomic file writing and checked JSON reading: no file is ever left half-written or misread.

Every writer goes through :func:`atomic_path`: the data goes to a temporary file in the same
folder (``.<name>.<random>.segreg-lite.tmp``), flushed to disk, which replaces the target only
once it is complete (``os.replace`` is atomic on POSIX and Windows), so a killed run leaves either
the old file or the new one, never a torn one. A process killed in the middle of a write (SIGKILL,
power cut) can leave the temporary file behind; :func:`temp_target` recognises such leftovers so
that the next run can remove them (:class:`segreg_lite.runfolder.RunFolder` does, for files it
wrote). The ``segreg-lite`` marker is what makes them recognisable: a bare ``.<x>.<y>.tmp`` is
also what editors and other programs name their own files (``.thesis.autosave.tmp``), which are
never ours to delete. :func:`read_json` names the file in every error, so a damaged results file
is never a bare ``Expecting value``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

#: The end of atomic_path's temporary names, the marker that tells them from anyone else's.
TEMP_SUFFIX = ".segreg-lite.tmp"
#: Names of atomic_path's temporary files: ``.<target name>.<mkstemp's random part>.segreg-lite.tmp``.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{6,}" + re.escape(TEMP_SUFFIX) + "$")


def temp_target(name: str) -> str | None:
    """The name of the file that ``name`` was a temporary file of, if ``name`` is one of
    :func:`atomic_path`'s (a killed write's leftover); None for any other name."""
    m = _TEMP_NAME.match(name)
    return m.group("target") if m else None


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_path` (a killed write's leftover)."""
    return temp_target(name) is not None


def _fsync(path: Path) -> None:
    """Flush a finished temporary file to disk before it replaces the target."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


#: How torch says that writing a file failed (its zip writer wraps the OS error in a
#: RuntimeError such as "[enforce fail at inline_container.cc] . unexpected pos 64 vs 0").
_TORCH_WRITE_FAILED = ("unexpected pos", "file write failed", "PytorchStreamWriter failed writing")


def _disk_full(path: Path, err: BaseException) -> OSError | None:
    """A one-line OSError (ENOSPC) naming ``path`` if ``err`` says the disk (or quota) is full,
    or is torch's RuntimeError for a failed write, which a full disk is the usual cause of; None
    for any other error, which is raised as it is."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = "no space left on device"
    elif isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILED):
        why = "no space left on device (or the write failed another way: torch could not write the whole file)"
    else:
        return None
    return OSError(errno.ENOSPC, f"{why}; free some space and try again (the previous file, if any, is kept)", str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds. A
    full disk, in the block (a ``json`` or ``torch.save`` write) or while flushing, is an OSError
    whose one line names ``path`` and "no space left on device" rather than torch's "unexpected
    pos"; as for any failure, the old file is left as it was and the temporary file removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        yield tmp_path
        _fsync(tmp_path)  # without it, a power cut after the rename can leave an empty file
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as err:
        full = _disk_full(path, err)
        if full is None:
            raise
        raise full from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON ending in a newline, as :func:`write_json` writes it (ASCII), in bytes."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file; a file that is not valid JSON is a ValueError naming the file and the
    problem (``what`` says what the file should have been: ``"results file"``, ...)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: damaged {what}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        reason = "it is empty" if not text.strip() else f"{err.msg} at line {err.lineno}, column {err.colno}"
        raise ValueError(f"{path}: damaged {what}: not valid JSON ({reason})") from None
