"""Make the shipped pre-trained registration network, ``segreg_lite/data/regnet_cohort.pt``.

    python scripts/make_pretrained.py [--steps 6000] [--lr 1e-3] [--seeds 0,1,2] [--device auto] [--out FILE]
    python scripts/make_pretrained.py --init segreg_lite/data/regnet_cohort.pt --steps 3000 --lr 3e-4  # train on

Unsupervised pre-training (NCC + smoothness, no labels) of the ``cpu`` preset's RegNet, by the
package's own ``train_registration`` (Adam, the learning rate decayed to zero along a cosine), on the default cohort (300 subjects, data seed 0, 128x128):
on the subjects that are training subjects under every split seed in ``--seeds``, so that the
network never sees a validation or test image of those splits. The file stores the fingerprint
that :mod:`segreg_lite.pretrained` checks before a run may use it, and the steps, minutes and
device it took (the cost of regenerating it). ``--init`` continues from an earlier file of this
script (same settings and subjects), with a fresh cosine schedule; the file then records every
phase and their totals. The shipped file was made by the two commands above. Weights are stored in float16 (half the size;
the network's fields change by far less than a hundredth of a pixel) and loaded back as float32.

The package refuses a shipped file whose SHA-256 is not ``SHIPPED_SHA256`` in
``segreg_lite/pretrained.py``: the script prints the new file's checksum, to be set there (the
tests fail until it is).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from segreg_lite import __version__
from segreg_lite.checkpoint import save_checkpoint
from segreg_lite.config import get_preset
from segreg_lite.data import load_data
from segreg_lite.train import new_models, phase_seed, pick_device, seed_everything
from segreg_lite.pretrained import SHIPPED, SHIPPED_SHA256, fingerprint, sha256
from segreg_lite.registration import train_registration
from segreg_lite.splits import make_split


def shared_train(n_subjects: int, seeds: list[int], subjects: list[str]) -> list[int]:
    """Indices that are training subjects under the default split of every seed in ``seeds``."""
    sets = [set(make_split(n_subjects, seed=s, subjects=subjects).train) for s in seeds]
    return sorted(set.intersection(*sets))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--init", type=Path, default=None, help="continue from this pre-trained file")
    p.add_argument("--lr", type=float, default=None, help="default: the cpu preset's reg_lr")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=SHIPPED)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    device = pick_device(args.device)
    data = load_data("cohort")  # the default cohort: 300 subjects, seed 0, 128x128
    train = shared_train(len(data.images), seeds, data.subjects)
    config = get_preset("cpu")
    if args.lr is not None:
        config = replace(config, reg_lr=args.lr)
    config = replace(config, reg_steps=args.steps)
    print(f"{data.description}: {len(train)} subjects are training subjects under split seeds {seeds}; "
          f"{args.steps} steps on {device}", flush=True)
    reg = new_models(config, len(data.label_names), 0)[1]
    phases = []
    if args.init is not None:
        from segreg_lite.pretrained import load_pretrained

        init, init_extra = load_pretrained(args.init)
        if init_extra["fingerprint"] != fingerprint(data.images, data.subjects, train, config):
            raise SystemExit(f"--init {args.init}: made with other settings or subjects; start from scratch instead")
        reg.load_state_dict(init.state_dict())
        phases = list(init_extra["training"]["phases"])
    seed = phase_seed(0, len(phases), "shipped-reg")
    seed_everything(seed)
    start = time.perf_counter()
    history = train_registration(reg, data.images, train, config, device=device, seed=seed, progress=True, cosine=True)
    minutes = (time.perf_counter() - start) / 60
    fp = fingerprint(data.images, data.subjects, train, config)
    tail = history["loss"][-100:]
    phases.append({"steps": args.steps, "lr": config.reg_lr, "schedule": "cosine", "batch_size": config.batch_size,
                   "minutes": round(minutes, 2), "device": str(device), "threads": torch.get_num_threads(),
                   "final_loss": sum(tail) / max(len(tail), 1)})
    extra = {"fingerprint": fp, "data": data.description, "split_seeds": seeds, "version": __version__,
             "training": {"steps": sum(p["steps"] for p in phases), "minutes": round(sum(p["minutes"] for p in phases), 2),
                          "device": ", ".join(sorted({p["device"] for p in phases})), "phases": phases}}
    save_checkpoint(args.out, models={"regnet": reg.cpu().half()}, config=config, extra=extra)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min")
    digest = sha256(args.out)
    print(f"SHA-256 {digest}")
    if args.out.resolve() == SHIPPED.resolve() and digest != SHIPPED_SHA256:
        print(f"set SHIPPED_SHA256 = \"{digest}\" in segreg_lite/pretrained.py: the package refuses the shipped "
              "file until its checksum there matches (tests/test_pretrained.py checks it)")


if __name__ == "__main__":
    sys.exit(main())
