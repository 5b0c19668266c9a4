"""Benchmark: training and inference speed and memory of the two networks at the default preset.

    python benchmarks/bench_models.py [--device auto|cpu|cuda] [--steps 10] [--threads N]

For ``TrainConfig()`` (its U-Net and RegNet, batch 8, 128x128 images) it prints: this machine's
float32 matmul GFLOP/s (measured in the same run, the yardstick); the segmenter's training
throughput (forward + loss + backward + Adam step) and the registration network's (forward +
``registration_loss`` as the preset weighs it + backward + Adam step), each with contiguous and
channels_last tensors; registration inference per pair (batch 4 and 1, no_grad); and peak memory
per section.
FLOPs are those ``torch.utils.flop_counter.FlopCounterMode`` counts for one forward + backward:
convolutions and matmuls only (norms, activations, warping and the optimizer are not counted), so
the achieved GFLOP/s slightly understate the work done. Times are medians over ``--steps`` timed
steps after warm-up; every configuration is primed once before any is measured. Other processes
on a small machine distort every figure, so the run ends by saying how busy the CPU was. Nothing
is asserted: the figures inform the presets (the aim is >= 0.7 of the matmul rate) and the book.
After Li et al. (arXiv 2502.03229).
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from segreg_lite.config import TrainConfig, reg_weights
from segreg_lite.train import autocast, pick_device
from segreg_lite.losses import segmentation_loss
from segreg_lite.losses import registration_loss
from segreg_lite.regnet import RegNet
from segreg_lite.unet import UNet

SIZE = 128  # the default CPU preset's image size (cohort default)
NUM_CLASSES = 5  # background + 4 tissue classes, as the embedded cohort


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, *, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """Median GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs): the machine's attainable rate."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = timed(lambda: torch.mm(a, b), device, warmup=2, steps=repeats)
    return 2 * n**3 / statistics.median(times) / 1e9


class PeakMemory:
    """Peak memory of a block above what was in use when it started, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, reset per block). CPU: torch's CPU
    allocations are invisible to ``tracemalloc``, so this reads the resident set size: on Linux
    the peak (VmHWM) is reset per block through /proc/self/clear_refs and compared with VmRSS at
    the start; elsewhere ``ru_maxrss``, a process-wide high-water mark that is never reset (a
    block shows an increase only if it raised the process peak).
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib, self.how = device, float("nan"), ""

    @staticmethod
    def _status(key: str) -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) / 1024  # kB -> MiB
        raise KeyError(key)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
            self.how = "CUDA max_memory_allocated"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.base = self._status("VmRSS")
            self.how = "CPU resident set: VmHWM reset per section, minus VmRSS at its start"
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
            self.how = "CPU ru_maxrss (process-wide peak, not reset): increase over the previous peak"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.how.startswith("CPU resident"):
            peak = self._status("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.mib = peak - self.base


def other_cpu_seconds() -> float | None:
    """CPU seconds used so far by the whole machine minus this process (Linux; None elsewhere):
    other processes on a 2-core machine slow every multi-threaded step, so the run reports them."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK") - usage.ru_utime - usage.ru_stime


def train_flops(step_forward_backward: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step_forward_backward()
    return counter.get_total_flops()


def bench_segmenter(cfg: TrainConfig, device: torch.device, args: argparse.Namespace, channels_last: bool) -> dict:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with PeakMemory(device) as mem:
        model = UNet(num_classes=NUM_CLASSES, features=cfg.features, dropout=cfg.dropout, residual=cfg.residual)
        model = model.to(device, memory_format=fmt).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.seg_lr)
        x = torch.rand(cfg.batch_size, 1, SIZE, SIZE, device=device).contiguous(memory_format=fmt)  # (B, 1, H, W)
        y = torch.randint(0, NUM_CLASSES, (cfg.batch_size, SIZE, SIZE), device=device)  # (B, H, W)

        def forward_backward() -> None:
            with autocast(device, cfg.amp):
                logits = model(x)  # (B, K, H, W)
            segmentation_loss(logits.float(), y, soft_ce=cfg.soft_ce).total.backward()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            forward_backward()
            opt.step()

        flops = train_flops(forward_backward)
        times = timed(step, device, warmup=args.warmup, steps=args.steps)
    name = f"U-Net train, {'channels_last' if channels_last else 'contiguous'}"
    return dict(name=name, batch=cfg.batch_size, times=times, flops=flops, mem=mem.mib, how=mem.how)


def _reg_loss(model: RegNet, moving: torch.Tensor, fixed: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The registration network's training loss (unsupervised phase), as the preset trains it."""
    return registration_loss(model(moving, fixed), moving, fixed, local=cfg.local_ncc, reg_weights=reg_weights(cfg)).total


def bench_registration(cfg: TrainConfig, device: torch.device, args: argparse.Namespace, channels_last: bool) -> list[dict]:
    """The preset's RegNet: training steps, then inference per pair at batch 4 (as the
    pseudo-labels register) and 1, with contiguous or channels_last weights and inputs."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tag = "channels_last" if channels_last else "contiguous"
    rows = []
    with PeakMemory(device) as mem:
        model = RegNet(features=cfg.reg_features, diffeomorphic=cfg.diffeomorphic, affine=cfg.reg_affine,
                       refine=cfg.reg_refine).to(device=device, memory_format=fmt).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.reg_lr)
        moving = torch.rand(cfg.batch_size, 1, SIZE, SIZE, device=device).contiguous(memory_format=fmt)  # (B, 1, H, W)
        fixed = torch.rand(cfg.batch_size, 1, SIZE, SIZE, device=device).contiguous(memory_format=fmt)  # (B, 1, H, W)

        def forward_backward() -> None:
            with autocast(device, cfg.amp):
                loss = _reg_loss(model, moving, fixed, cfg)
            loss.float().backward()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            forward_backward()
            opt.step()

        flops = train_flops(forward_backward)
        times = timed(step, device, warmup=args.warmup, steps=args.steps)
    rows.append(dict(name=f"RegNet train, {tag}", batch=cfg.batch_size, times=times, flops=flops, mem=mem.mib))

    model.eval()
    for batch in (4, 1):
        with PeakMemory(device) as mem, torch.no_grad():
            moving = torch.rand(batch, 1, SIZE, SIZE, device=device).contiguous(memory_format=fmt)
            fixed = torch.rand(batch, 1, SIZE, SIZE, device=device).contiguous(memory_format=fmt)
            with FlopCounterMode(display=False) as counter:
                model(moving, fixed)

            def infer() -> None:
                with autocast(device, cfg.amp):
                    model(moving, fixed)

            times = timed(infer, device, warmup=args.warmup, steps=max(args.steps, 10 if batch == 1 else 5))
        rows.append(dict(name=f"RegNet infer, {tag}", batch=batch, times=times, flops=counter.get_total_flops(), mem=mem.mib))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cfg = TrainConfig()
    amp = cfg.amp and device.type == "cuda"

    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, mkldnn "
          + ("on" if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled else "off")
          + f", amp {'float16' if amp else 'off'}")
    other_start, wall_start = other_cpu_seconds(), time.perf_counter()
    print(f"TrainConfig(): U-Net features {cfg.features}, RegNet features {cfg.reg_features}, "
          f"batch {cfg.batch_size}, {SIZE}x{SIZE}, {NUM_CLASSES} classes; median of {args.steps} steps after {args.warmup} warm-up "
          "(each configuration primed once beforehand)")

    mm32 = matmul_gflops(device, torch.float32, repeats=max(5, args.steps // 2))
    mm_ref = matmul_gflops(device, torch.float16, repeats=max(5, args.steps // 2)) if amp else mm32
    n = 2048 if device.type == "cpu" else 8192
    print(f"matmul {n}x{n} float32: {mm32:.1f} GFLOP/s" + (f"; float16: {mm_ref:.1f} GFLOP/s (amp yardstick)" if amp else ""))

    # Prime every configuration once, unmeasured: one-time allocations (oneDNN primitives and
    # scratch, the allocator's pools) would otherwise be charged to whichever section runs first.
    prime = argparse.Namespace(steps=1, warmup=0)
    for channels_last in (False, True):
        bench_segmenter(cfg, device, prime, channels_last=channels_last)
        bench_registration(cfg, device, prime, channels_last=channels_last)

    rows = [bench_segmenter(cfg, device, args, channels_last=False), bench_segmenter(cfg, device, args, channels_last=True)]
    rows += bench_registration(cfg, device, args, channels_last=False) + bench_registration(cfg, device, args, channels_last=True)

    header = f"{'':30} {'batch':>5} {'ms/step':>9} {'(min-max)':>15} {'img/s':>8} {'GFLOP':>7} {'GFLOP/s':>8} {'of mm':>6} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        med = statistics.median(r["times"])
        spread = f"({1e3 * min(r['times']):.0f}-{1e3 * max(r['times']):.0f})"
        gflop = r["flops"] / 1e9
        print(f"{r['name']:30} {r['batch']:>5} {1e3 * med:>9.1f} {spread:>15} {r['batch'] / med:>8.1f} "
              f"{gflop:>7.2f} {gflop / med:>8.1f} {gflop / med / mm_ref:>6.2f} {r['mem']:>9.0f}")
    print("img/s: images (pairs for RegNet) per second; GFLOP: conv + matmul FLOPs of one step "
          "(forward + backward when training, FlopCounterMode); of mm: GFLOP/s over the matmul rate.")
    med = {(r["name"], r["batch"]): statistics.median(r["times"]) for r in rows}
    for tag in ("contiguous", "channels_last"):
        print(f"registration inference per pair, {tag}: {1e3 * med[f'RegNet infer, {tag}', 4] / 4:.1f} ms at batch 4, "
              f"{1e3 * med[f'RegNet infer, {tag}', 1]:.1f} ms at batch 1")
    for net, train, batch in (("U-Net", "U-Net train", cfg.batch_size), ("RegNet", "RegNet train", cfg.batch_size),
                              ("RegNet inference", "RegNet infer", 4)):
        ratio = med[f"{train}, contiguous", batch] / med[f"{train}, channels_last", batch]
        print(f"{net} channels_last vs contiguous: {ratio:.2f}x the speed")
    print(f"peak MiB: {rows[0]['how']}")
    other_end = other_cpu_seconds()
    if other_start is not None and other_end is not None:
        cores = (other_end - other_start) / (time.perf_counter() - wall_start)
        note = " (figures are pessimistic: rerun on an idle machine)" if cores > 0.2 else ""
        print(f"other processes used {cores:.2f} CPU cores on average during the run{note}")


if __name__ == "__main__":
    main()
