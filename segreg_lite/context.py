"""The run context the methods are given: one run of :func:`segreg_lite.experiment.run_experiment` as they see it.

Every method is a function ``run(data, split, config, folder)`` (:mod:`segreg_lite.methods`)
whose ``folder`` is a :class:`Run`: the seed, device, progress setting and log of the run, the
pre-trained models that methods share (made once per run by the ``pretrain`` the experiment
hands it, kept in the run folder) and the checkpoint files of its
:class:`~segreg_lite.runfolder.RunFolder`. It stands below the methods (they import it, for
their type hints) and above the run folder and checkpoints; the experiment, above the methods,
makes it. ``segreg_lite.experiment.Run`` is this class too, its name before it moved here.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from segreg_lite.checkpoint import load_checkpoint, save_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.container import Data
from segreg_lite.runfolder import RunFolder, differences, fingerprint
from segreg_lite.splits import Split


class Run:
    """One run of :func:`~segreg_lite.experiment.run_experiment`, as the methods see it (their ``folder`` argument): the
    seed, device, progress setting and log of the run, the models methods share, and the
    checkpoint files of its :class:`~segreg_lite.runfolder.RunFolder`."""

    def __init__(self, data: Data, split: Split, config: TrainConfig, folder: RunFolder, seed: int, device, progress, log,
                 data_sha256: str, *, pretrain: Callable[[Run, str], Any] | None = None):
        self.data, self.split, self.config, self.folder = data, split, config, folder
        self.seed, self.device, self.progress, self.log = seed, device, progress, log
        self._pretrain = pretrain
        self._pretrained: dict[str, Any] = {}
        self._fp = dict(data=data_sha256, split=split.to_dict(), config=config.to_dict(), seed=seed)

    def fingerprint(self, method: str) -> dict[str, Any]:
        """What a result or checkpoint of ``method`` in this run must carry to be read back."""
        return fingerprint(**self._fp, method=method)

    def checkpoint(self, name: str) -> Path:
        """The path of checkpoint ``name`` in the run folder, claimed for this run: a stale file
        of ours is removed (and said so), a foreign one refused. The file's own contents are
        checked by whoever reads it (``train_joint`` checks config, split, mode and seed)."""
        path, fp = self._checkpoint_path(name)
        self.folder.claim(path, fp)
        return path

    def saved(self, name: str) -> None:
        """Record the digest of checkpoint ``name``, just saved (after each save: a checkpoint whose
        digest is not the manifest's is not resumed from)."""
        self.folder.seal(self.folder.checkpoint_path(name))

    def _checkpoint_path(self, name: str) -> tuple[Path, dict[str, Any]]:
        """Checkpoint ``name``'s path and fingerprint, a stale file of ours removed (and said so)."""
        path, fp = self.folder.checkpoint_path(name), self.fingerprint(name)
        stale = self.folder.stale_checkpoint(name, fp)
        if stale:
            self.log(stale)
        return path, fp

    def pretrained(self, which: str):
        """A copy of the pre-trained segmenter ("seg", with the config's augmentation) or regnet
        ("reg"), trained once per run (by the ``pretrain`` the run was given) and kept in
        ``checkpoints/pretrained_<which>.pt`` with its fingerprint."""
        if which not in self._pretrained:
            path, fp = self._checkpoint_path(f"pretrained_{which}")
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
                if self._pretrain is None:
                    raise ValueError(f"this run was given no pre-training, so it has no pre-trained {which!r} model")
                model = self._pretrain(self, which)
                self.folder.claim(path, fp)
                save_checkpoint(path, models={which: model}, config=self.config, extra={"fingerprint": fp})
                self.folder.seal(path)
            self._pretrained[which] = model.eval()
        return copy.deepcopy(self._pretrained[which])
