"""Checkpoints: one file that rebuilds the models, their training config and where a run stood.

A checkpoint holds, per named model, its class name, its ``.config`` dict (the constructor's
keyword arguments) and its state_dict; the :class:`~segreg_lite.config.TrainConfig` as a dict;
``extra`` (plain JSON-like values: round number, history, seed, split); and optimizer states. Like
nanoGPT's ``ckpt.pt``, which stores ``model_args`` beside the weights, so ``load_checkpoint``
needs no code from the run that wrote it. After Li et al., "A Unified Framework for
Semi-Supervised Image Segmentation and Registration" (arXiv 2502.03229, ISBI 2025), whose rounds
this lets us resume.

Safety: files are read with ``torch.load(..., weights_only=True)`` only, which never unpickles
arbitrary Python objects, so a checkpoint holds tensors, dicts, lists, tuples, str, int, float,
bool and None, nothing else. A file that asks the unpickler for anything else (a class, a
function such as ``os.system``) is refused with a message naming what it asked for; it is a file
that carries code, never "corrupt", and the message never suggests loading it unsafely; so is
a bare ``pickle.dump`` file, named as a pickle (which could run code), not as a damaged file. Files are written atomically (:func:`segreg_lite.io.atomic_path`):
a save killed mid-way leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .io import atomic_path

FORMAT = "segreg-lite-checkpoint"
VERSION = 1

# The package's model classes, by the name stored in a file. Modules are imported only when a
# class is needed, so loading a U-Net checkpoint imports nothing else.
_MODEL_CLASSES = {"UNet": ("segreg_lite.unet", "UNet"), "RegNet": ("segreg_lite.regnet", "RegNet")}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns. Models are rebuilt as freshly constructed (training
    mode, on CPU unless ``map_location`` says otherwise): call ``.eval()`` for inference."""

    models: dict[str, nn.Module]
    config: TrainConfig | None
    extra: dict[str, Any] = field(default_factory=dict)
    optimizer_states: dict[str, dict[str, Any]] = field(default_factory=dict)


def _model_class(name: str, where: str) -> type[nn.Module]:
    if name not in _MODEL_CLASSES:
        raise ValueError(f"{where}: unknown model class {name!r}; known: {', '.join(_MODEL_CLASSES)}")
    module, attr = _MODEL_CLASSES[name]
    return getattr(importlib.import_module(module), attr)


def _check_plain(value: Any, where: str, *, tensors: bool = False) -> None:
    """Raise unless ``value`` holds only what weights_only loading accepts: str, int, float, bool,
    None, lists, tuples and dicts with str keys; with ``tensors``, also tensors and int keys (the
    shape of an optimizer's state_dict). Exact types: a NumPy float would save but not load."""
    if value is None or type(value) in (str, bool, int, float) or (tensors and isinstance(value, torch.Tensor)):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", tensors=tensors)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not (tensors and type(key) is int):
                raise ValueError(f"{where}: keys must be str, got {key!r} ({type(key).__name__})")
            _check_plain(item, f"{where}[{key!r}]", tensors=tensors)
        return
    hint = " (convert with int(), float() or .tolist())" if hasattr(value, "item") else ""
    raise ValueError(f"{where} must hold only str, int, float, bool, None, lists and dicts; got {type(value).__name__}{hint}")


def _state_of(obj: Any, where: str) -> dict[str, Any]:
    """An optimizer's (or scheduler's, scaler's) state dict, from the object or as given."""
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state, dict):
        raise ValueError(f"{where} must be an object with .state_dict() or a dict, got {type(obj).__name__}")
    _check_plain(state, where, tensors=True)
    return state


def save_checkpoint(
    path: str | os.PathLike,
    *,
    models: dict[str, nn.Module],
    config: TrainConfig | dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    optimizers: dict[str, Any] | None = None,
) -> Path:
    """Write ``models`` (name -> UNet or RegNet), the training ``config``, ``extra`` (plain
    JSON-like values) and ``optimizers`` (name -> optimizer or its state_dict) to ``path``,
    atomically. Bad inputs raise ValueError before anything is written. Returns the path."""
    path = Path(path)
    entries: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        if type(name) is not str:
            raise ValueError(f"save_checkpoint: model names must be str, got {name!r}")
        where = f"save_checkpoint({str(path)!r}): model {name!r}"
        cls_name = type(model).__name__
        if cls_name not in _MODEL_CLASSES or _model_class(cls_name, where) is not type(model):
            raise ValueError(f"{where}: cannot save a {type(model).__module__}.{cls_name}; known: {', '.join(_MODEL_CLASSES)}")
        model_config = getattr(model, "config", None)
        if not isinstance(model_config, dict):
            raise ValueError(f"{where}: the model has no .config dict to rebuild it from")
        _check_plain(model_config, f"{where}: .config")
        entries[name] = {"class": cls_name, "config": dict(model_config), "state_dict": model.state_dict()}
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)  # validates the keys and values
    if config is not None and not isinstance(config, TrainConfig):
        raise ValueError(f"save_checkpoint: config must be a TrainConfig, a dict or None, got {type(config).__name__}")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise ValueError(f"save_checkpoint: extra must be a dict, got {type(extra).__name__}")
    _check_plain(extra, "save_checkpoint: extra")
    if any(type(k) is not str for k in optimizers or {}):
        raise ValueError(f"save_checkpoint: optimizer names must be str, got {list(optimizers or {})}")
    states = {k: _state_of(v, f"save_checkpoint: optimizers[{k!r}]") for k, v in (optimizers or {}).items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "models": entries,
        "config": None if config is None else config.to_dict(),
        "extra": extra,
        "optimizers": states,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: str | os.PathLike, map_location: Any) -> dict[str, Any]:
    """The checked payload of a checkpoint file; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    try:
        with warnings.catch_warnings():
            # Random bytes can look like a pickle of another protocol; the error below says enough.
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError...
        refused = _refused(err)
        if refused is not None:
            # "from None": torch's own text suggests weights_only=False, which would run the code.
            raise ValueError(
                f"{str(path)!r} was refused: it asks to load {refused}, which is code, not data. A "
                "segreg-lite checkpoint holds only tensors and plain values, so this file is not one "
                "(or it was altered); nothing in it was run. Delete it, or get the file again from its source"
            ) from None
        if _is_pickle(path):
            raise ValueError(
                f"{str(path)!r} was refused: it is a pickle, which could run code; segreg-lite only reads "
                "torch.save files with weights_only, and nothing in it was run. Save the models with "
                "segreg_lite.checkpoint.save_checkpoint"
            ) from None
        raise ValueError(
            f"{str(path)!r} is not a readable checkpoint: the file is truncated, corrupt or not a "
            f"torch file ({_reason(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = f"a dict with keys {sorted(map(str, payload))[:8]}" if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{str(path)!r} is a torch file but not a segreg-lite checkpoint (no format marker {FORMAT!r}; it holds {what})")
    if not isinstance(payload.get("version"), int) or payload["version"] > VERSION:
        raise ValueError(f"{str(path)!r} is checkpoint version {payload.get('version')!r}; this segreg-lite reads up to {VERSION}")
    models = payload.get("models")
    if not isinstance(models, dict) or not all(
        isinstance(e, dict) and {"class", "config", "state_dict"} <= set(e) for e in models.values()
    ):
        raise ValueError(f"{str(path)!r}: malformed checkpoint, 'models' must map names to class, config and state_dict")
    return payload


#: How torch's weights-only unpickler names what it refused: "Unsupported global: GLOBAL x.y was
#: not an allowed global" (a class or function outside its allowlist) and, in torch 2.13, "Trying
#: to load unsupported GLOBAL posix.system whose module posix is blocked".
_REFUSED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


def _refused(err: Exception) -> str | None:
    """The global (class or function) torch's weights-only unpickler refused, or None."""
    found = _REFUSED_GLOBAL.search(str(err))
    return f"the global {found.group(1)}" if found else None


#: The first pickle of torch's legacy (non-zip) format: its magic number, alone.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` is a whole pickle stream written by ``pickle.dump`` (any protocol) rather
    than a torch file: not a zip archive (torch's format), and its first pickle parses to its end
    without being torch's legacy magic number. ``pickletools.genops`` only reads the opcodes, it
    never builds an object, so nothing in the file runs. A truncated pickle does not parse and
    stays "truncated or corrupt"."""
    import io
    import pickletools

    try:
        data = path.read_bytes()
        if data[:2] == b"PK" or data[:1] != b"\x80":  # a zip (torch.save), or no pickle PROTO opcode
            return False
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(io.BytesIO(data))]
    except Exception:  # genops raises ValueError and others on a stream that does not parse
        return False
    return [name for name, _ in ops] != ["PROTO", "LONG1", "STOP"] or ops[1][1] != _TORCH_MAGIC


def _clip(text: str, limit: int = 120) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary (a message never ends mid-word)."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut} ..."


def _reason(err: Exception) -> str:
    """Why torch could not read a file, in one short line that never repeats torch's advice to
    retry with weights_only=False (a damaged file gives "Unsupported operand 95", say)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        lines = [ln.strip() for ln in after.splitlines() if ln.strip() and "weights_only" not in ln]
        return f"its pickle stream is invalid: {_clip(lines[0])}" if lines else "its pickle stream is invalid"
    first = _clip(text.strip().splitlines()[0]) if text.strip() else "no message"
    return f"{type(err).__name__}: {first}"


def _fit(model: nn.Module, state: dict[str, Any], where: str, first: int = 3) -> None:
    """Load ``state`` into ``model`` strictly, naming the first keys that do not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} saved {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:first])}{', ...' if len(keys) > first else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes))
        if keys
    ]
    if problems:
        raise ValueError(f"{where}: the state_dict does not fit {type(model).__name__}({_config_str(model)}): " + "; ".join(problems))
    model.load_state_dict(state)


def _config_str(model: nn.Module) -> str:
    """``key=value, ...`` of a model's ``.config`` (for messages)."""
    return ", ".join(f"{k}={v!r}" for k, v in getattr(model, "config", {}).items())


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` and rebuild its models from their class
    names and configs. Raises FileNotFoundError for a missing file and ValueError, naming the
    path, for a corrupt file, a file that is not ours, an unknown model class or weights that do
    not fit the rebuilt model."""
    payload = _read(path, map_location)
    models: dict[str, nn.Module] = {}
    for name, entry in payload["models"].items():
        where = f"{str(path)!r}, model {name!r}"
        cls = _model_class(entry["class"], where)
        try:
            model = cls(**entry["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: cannot rebuild {entry['class']}(**{entry['config']!r}): {err}") from err
        if isinstance(map_location, (str, torch.device)):
            model = model.to(map_location)  # buffers too, where the state_dict has none
        _fit(model, entry["state_dict"], where)
        models[name] = model
    config = payload.get("config")
    try:
        config = None if config is None else TrainConfig.from_dict(config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(path)!r}: its TrainConfig cannot be rebuilt: {err}") from err
    return Checkpoint(models=models, config=config, extra=payload.get("extra") or {}, optimizer_states=payload.get("optimizers") or {})


def load_into(path: str | os.PathLike, name: str, model: nn.Module) -> nn.Module:
    """Load the weights of model ``name`` from a checkpoint into ``model`` (kept on its device).
    The checkpoint's model must have the same class and ``.config`` as ``model``; otherwise a
    ValueError shows both configs. Returns ``model``."""
    payload = _read(path, "cpu")
    where = f"{str(path)!r}, model {name!r}"
    if name not in payload["models"]:
        raise ValueError(f"{str(path)!r} has no model {name!r}; it has {sorted(payload['models'])}")
    entry = payload["models"][name]
    config = getattr(model, "config", None)
    if entry["class"] != type(model).__name__ or entry["config"] != config:
        saved, given = entry["config"], config if isinstance(config, dict) else {}
        differ = [
            f"{k}: {saved.get(k, '<absent>')!r} vs {given.get(k, '<absent>')!r}"
            for k in sorted(set(saved) | set(given))
            if saved.get(k, "<absent>") != given.get(k, "<absent>")
        ]
        if entry["class"] != type(model).__name__:
            differ.insert(0, f"class: {entry['class']} vs {type(model).__name__}")
        raise ValueError(
            f"{where} is a checkpoint from another model: saved {entry['class']}({saved}) but given "
            f"{type(model).__name__}({config}); differing {'; '.join(differ)}"
        )
    _fit(model, entry["state_dict"], where)
    return model
