"""The methods of the comparison, one registry entry each, in the order of the results table.

Every method is a function ``run(data, split, config, folder)`` in the module of its idea
(:mod:`segreg_lite.supervised`, :mod:`segreg_lite.meanteacher`, :mod:`segreg_lite.unimatch`, :mod:`segreg_lite.registration`,
:mod:`segreg_lite.joint`) that returns its test metrics (``dice``, ``hd``, ``hd95``, per-class
lists; a joint method adds its round ``history``). ``folder`` is the run
(:class:`segreg_lite.context.Run`): its seed, device, log, the pre-trained models that
methods share and the checkpoint files of the run folder. A new method is one such function and
one line in :data:`METHODS`; :func:`segreg_lite.experiment.run_experiment`, the CLI, the sweep
and the chapters take their method lists from here.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

from segreg_lite.joint import run_joint, run_joint_reg, run_joint_seg
from segreg_lite.meanteacher import run_mean_teacher
from segreg_lite.registration import run_reg_only
from segreg_lite.supervised import run_supervised, run_supervised_aug, run_upper_bound
from segreg_lite.unimatch import run_unimatch


class Method(NamedTuple):
    """One method: what it is, the function that runs it, and what it needs of the data."""

    description: str
    run: Callable[..., dict[str, Any]]
    registers: bool = False  # uses the registration network (slices of at least 32 pixels)
    pseudo_labels: bool = False  # trains on pseudo-labels: needs unannotated training images


#: Method name -> :class:`Method` (the order of the results table).
METHODS: dict[str, Method] = {
    "supervised": Method("U-Net, annotated images only, no augmentation", run_supervised),
    "supervised_aug": Method("U-Net, annotated images only, with augmentation", run_supervised_aug),
    "mean_teacher": Method("Mean Teacher (EMA teacher, softmax consistency)", run_mean_teacher),
    "unimatch": Method("UniMatch (weak-to-strong consistency, feature perturbation)", run_unimatch,
                       pseudo_labels=True),
    "reg_only": Method("multi-atlas registration, no segmenter", run_reg_only, registers=True),
    "joint_seg": Method("joint method, segmentation masks only", run_joint_seg, registers=True, pseudo_labels=True),
    "joint_reg": Method("joint method, registration masks only", run_joint_reg, registers=True, pseudo_labels=True),
    "joint": Method("joint method, combined soft masks", run_joint, registers=True, pseudo_labels=True),
    "upper_bound": Method("U-Net, 100% of the labels", run_upper_bound),
}
#: What ``segreg-lite run`` (and the README's main command) runs by default.
DEFAULT_METHODS: tuple[str, ...] = ("supervised_aug", "unimatch", "reg_only", "joint")
#: The joint method's ablations (pseudo-labels from one source only): the rounds chapter's.
ABLATIONS: tuple[str, ...] = ("joint_seg", "joint_reg")


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` in the table's order without repeats; an unknown name is a ValueError."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or '(none given)'}: choose from {', '.join(METHODS)}")
    return [m for m in METHODS if m in methods]
