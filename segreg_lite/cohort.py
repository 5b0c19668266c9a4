"""A seeded cohort of 2D brain MRI subjects generated from the embedded MNI template.

Every subject is the template (``segreg_lite.template``) seen through its own random anatomy and
scanner, with image and labels always changed together:

1. geometry: an oblique coronal plane (pitch, yaw) with through-plane jitter, so that no 2D warp
   of one subject gives another exactly; a random in-plane affine; a smooth elastic field with
   in-plane and through-plane components;
2. atrophy, driven by one severity per subject (an ageing cohort, 0 = young, 1 = old): the
   lateral ventricles are enlarged (sample points pulled towards them) and the cortex is thinned
   from its pial side into CSF, widening sulci; both move the labels and the image intensities;
3. contrast: per-tissue intensity shifts (grey/white contrast varies with age and scanner),
   gamma, a smooth multiplicative bias field, blur and Gaussian noise.

All the sampling of all subjects is one trilinear ``grid_sample`` into the 3D template per chunk of
subjects, so 500 subjects at 128x128 take seconds on a laptop CPU. Subject ``i`` of seed ``s`` is
the same whatever the cohort size (its random numbers come from ``default_rng([s, i])``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from segreg_lite.labels import NUM_CLASSES, SEG4_NAMES
from segreg_lite.limits import check_seed, check_size, check_subjects
from segreg_lite.template import CENTER_Y_VOXEL, VENTRICLE_DECAY_MM, Template, hard_labels, load_template


@dataclass(frozen=True)
class CohortConfig:
    """How much subjects vary. Angles in degrees, lengths in mm, intensities on the [0, 1] scale."""

    size: tuple[int, int] = (128, 128)  # (H, W); (160, 192) matches OASIS 2D
    fov_mm: float = 180.0  # field of view along the longer side: 128 px -> 1.41 mm pixels
    pitch_deg: float = 6.0  # plane tilt about the left-right axis, uniform in +-
    yaw_deg: float = 5.0  # plane tilt about the vertical axis, uniform in +-
    jitter_mm: float = 8.0  # through-plane offset of the plane centre, uniform in +-
    rotate_deg: float = 10.0  # in-plane rotation, uniform in +-
    log_scale_std: float = 0.07  # per-axis log scale (head size and shape)
    shear_std: float = 0.05  # in-plane shear
    shift_mm: float = 4.0  # in-plane translation std
    elastic_mm: float = 5.0  # std of the in-plane elastic displacement at the control points
    elastic_through_mm: float = 2.0  # std of its through-plane component
    elastic_grid: int = 5  # control points per side (smoothness of the elastic field)
    ventricle_mm: float = 9.0  # ventricle enlargement at full atrophy severity
    thinning_mm: float = 1.5  # cortical thinning at full atrophy severity
    tissue_shift_std: float = 0.07  # per-tissue intensity shift std
    contrast_loss: float = 0.08  # white matter darkens by this much at full severity (GM/WM contrast fades with age)
    gamma_std: float = 0.2  # log-gamma std
    bias_std: float = 0.15  # log bias-field std at its 4x4 control points
    blur_px: float = 0.8  # Gaussian blur sigma, uniform in [0, blur_px]
    noise_max: float = 0.04  # Gaussian noise std, uniform in [0.005, noise_max]

    def __post_init__(self) -> None:
        check_size(self.size, "size")  # multiples of 16, at most MAX_SIZE: before anything is allocated
        bad = {k: v for k, v in asdict(self).items() if k != "size" and not (v >= 0)}
        if bad:
            raise ValueError(f"cohort settings must be >= 0, got {bad}")
        if self.elastic_grid < 2:
            raise ValueError(f"elastic_grid must be >= 2 control points, got {self.elastic_grid}")

    @property
    def spacing_mm(self) -> float:
        return self.fov_mm / max(self.size)


@dataclass
class Cohort:
    """Generated subjects. ``images`` (N, 1, H, W) float32 in [0, 1]; ``labels`` (N, H, W) int64 seg4.

    ``params`` holds each subject's random draws (N,) per name (severity, ventricle_mm, ...).
    """

    images: torch.Tensor
    labels: torch.Tensor
    params: dict[str, np.ndarray]
    subjects: list[str]
    seed: int
    config: CohortConfig
    label_names: tuple[str, ...] = field(default=SEG4_NAMES)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def spacing_mm(self) -> float:
        return self.config.spacing_mm

    def class_frequencies(self) -> np.ndarray:
        """Fraction of all pixels in each class, (K,)."""
        counts = torch.bincount(self.labels.flatten(), minlength=NUM_CLASSES).double()
        return (counts / counts.sum()).numpy()

    def summary(self) -> dict:
        """Plain numbers for printing and JSON: counts, class frequencies and area ranges."""
        area = torch.stack([(self.labels == k).sum(dim=(1, 2)) for k in range(NUM_CLASSES)], 1).double()
        area_mm2 = (area * self.spacing_mm**2).numpy()
        return {
            "subjects": len(self),
            "size": list(self.config.size),
            "spacing_mm": round(self.spacing_mm, 3),
            "seed": self.seed,
            "classes": {
                name: {
                    "frequency": float(freq),
                    "area_mm2_median": float(np.median(area_mm2[:, k])),
                    "area_mm2_p5": float(np.percentile(area_mm2[:, k], 5)),
                    "area_mm2_p95": float(np.percentile(area_mm2[:, k], 95)),
                }
                for k, (name, freq) in enumerate(zip(self.label_names, self.class_frequencies()))
            },
        }


def _draw(rng: np.random.Generator, cfg: CohortConfig) -> dict[str, np.ndarray]:
    """One subject's random numbers; the order of draws is part of the seed contract."""
    u = lambda lim: rng.uniform(-lim, lim)  # noqa: E731
    g = cfg.elastic_grid
    severity = rng.uniform(0.0, 1.0)
    return {
        "pitch_deg": u(cfg.pitch_deg),
        "yaw_deg": u(cfg.yaw_deg),
        "jitter_mm": u(cfg.jitter_mm),
        "rotate_deg": u(cfg.rotate_deg),
        "log_scale": rng.normal(0.0, cfg.log_scale_std, 2),
        "shear": rng.normal(0.0, cfg.shear_std),
        "shift_mm": rng.normal(0.0, cfg.shift_mm, 2),
        "elastic": rng.normal(0.0, 1.0, (3, g, g)) * np.array([cfg.elastic_mm, cfg.elastic_mm, cfg.elastic_through_mm])[:, None, None],
        "severity": severity,
        # Capped below the decay length, where the pull would stop being one-to-one.
        "ventricle_mm": min(cfg.ventricle_mm * severity * rng.uniform(0.6, 1.4), 0.95 * VENTRICLE_DECAY_MM),
        "thinning_mm": cfg.thinning_mm * severity * rng.uniform(0.6, 1.4),
        "tissue_shift": rng.normal(0.0, cfg.tissue_shift_std, NUM_CLASSES - 1),
        "gamma": math.exp(rng.normal(0.0, cfg.gamma_std)),
        "bias": rng.normal(0.0, cfg.bias_std, (4, 4)),
        "blur_px": rng.uniform(0.0, cfg.blur_px),
        "noise": rng.uniform(0.005, max(cfg.noise_max, 0.005)),
        "noise_seed": int(rng.integers(2**31)),
    }


def _plane_points(p: dict[str, np.ndarray], cfg: CohortConfig, tpl: Template) -> torch.Tensor:
    """Template voxel coordinates (H, W, 3) in (x, y, z) order sampled by each output pixel."""
    h, w = cfg.size
    s = cfg.spacing_mm
    rows = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) * s
    cols = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) * s
    v, u = torch.meshgrid(-rows, cols, indexing="ij")  # v up (superior), u right (x), in mm
    # In-plane affine (backward: output -> template plane), then the elastic field.
    th = math.radians(p["rotate_deg"])
    scale = np.exp(p["log_scale"])
    a = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) @ np.array(
        [[scale[0], p["shear"]], [0.0, scale[1]]]
    )
    uv = torch.stack([u, v], -1) @ torch.from_numpy(a).T + torch.from_numpy(p["shift_mm"])
    elastic = F.interpolate(torch.from_numpy(p["elastic"])[None], size=(h, w), mode="bicubic", align_corners=True)[0]
    uu, vv, ww = uv[..., 0] + elastic[0], uv[..., 1] + elastic[1], elastic[2] + p["jitter_mm"]
    # Oblique plane: tilt the coronal plane (x, z) about x (pitch) and about z (yaw).
    pitch, yaw = math.radians(p["pitch_deg"]), math.radians(p["yaw_deg"])
    x = uu * math.cos(yaw) - ww * math.sin(yaw)
    y = uu * math.sin(yaw) + ww * math.cos(yaw) * math.cos(pitch) + vv * math.sin(pitch)
    z = vv * math.cos(pitch) - ww * math.sin(pitch)
    cx, cz = PLANE_CENTER_XZ
    return torch.stack([x + cx, y + CENTER_Y_VOXEL - tpl.y_start, z + cz], -1)


PLANE_CENTER_XZ = (98.0, 90.0)  # brain centre of the y = 116 coronal slice (voxels x, z)


def _normalise(points: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(..., 3) voxel (x, y, z) -> grid_sample coordinates for a (X, Y, Z) = (D, H, W) volume."""
    sizes = torch.tensor(shape, dtype=points.dtype)
    g = 2.0 * points / (sizes - 1) - 1.0  # align_corners=True
    return g.flip(-1)  # grid_sample wants (W, H, D) = (z, y, x)


def _sample(volume: torch.Tensor, points: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """volume (1, C, X, Y, Z); points (N, H, W, 3) voxels -> (N, C, H, W), border padding."""
    grid = _normalise(points, shape).float()[None]  # (1, N, H, W, 3)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].transpose(0, 1)  # (N, C, H, W)


def _blur(img: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (px) per image: img (N, 1, H, W)."""
    r = 3
    x = torch.arange(-r, r + 1, dtype=img.dtype)
    k = torch.exp(-(x[None] ** 2) / (2 * sigmas.clamp_min(1e-3)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True))[:, None]  # (N, 1, 2r+1)
    n, _, h, w = img.shape
    out = F.conv2d(F.pad(img.transpose(0, 1), (r, r, 0, 0), mode="replicate"), k[:, :, None, :], groups=n)
    out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k[:, :, :, None], groups=n)
    return out.transpose(0, 1)


def _render(p_list: list[dict], cfg: CohortConfig, tpl: Template, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, H, W) and labels (n, H, W) for a chunk of subjects' draws."""
    shape = tpl.shape
    points = torch.stack([_plane_points(p, cfg, tpl) for p in p_list])  # (n, H, W, 3) float64
    # Ventricle enlargement: pull each sample point towards the ventricles (backward map).
    vent = _sample(volume[:, 7:10], points, shape).permute(0, 2, 3, 1).double()  # (n, H, W, 3)
    s = torch.tensor([p["ventricle_mm"] for p in p_list], dtype=torch.float64)
    maps = _sample(volume[:, :7], points + s[:, None, None, None] * vent, shape)  # (n, 7, H, W)
    t1, probs, depth = maps[:, :1], maps[:, 1:6], maps[:, 6]
    # Cortical thinning: cortex within `thinning_mm` of CSF/background becomes CSF (1 mm ramp).
    thin = torch.tensor([p["thinning_mm"] for p in p_list], dtype=torch.float32)[:, None, None]
    keep = (depth - thin + 0.5).clamp(0.0, 1.0)
    moved = probs[:, 1] * (1.0 - keep)
    new = probs.clone()
    new[:, 1] = probs[:, 1] - moved
    new[:, 4] = probs[:, 4] + moved
    labels = hard_labels(new)
    # Intensities follow the changed tissue, then each subject's own tissue contrast.
    means = torch.from_numpy(tpl.tissue_means)[None, :, None, None]
    shifts = np.stack([np.concatenate([[0.0], p["tissue_shift"]]) for p in p_list])
    shifts[:, 3] -= cfg.contrast_loss * np.array([p["severity"] for p in p_list])  # WM darkens with age
    shifts = torch.from_numpy(shifts).float()
    img = t1 + ((new - probs) * means).sum(1, keepdim=True) + (new * shifts[:, :, None, None]).sum(1, keepdim=True)
    img = img.clamp(0.0, 1.0) ** torch.tensor([p["gamma"] for p in p_list], dtype=torch.float32)[:, None, None, None]
    bias = torch.from_numpy(np.stack([p["bias"] for p in p_list])).float()[:, None]
    img = img * torch.exp(F.interpolate(bias, size=cfg.size, mode="bicubic", align_corners=True))
    img = img / torch.quantile(img.flatten(1), 0.999, dim=1).clamp_min(1e-6)[:, None, None, None]
    img = _blur(img, torch.tensor([p["blur_px"] for p in p_list], dtype=torch.float32))
    noise = torch.stack([torch.randn(cfg.size, generator=torch.Generator().manual_seed(p["noise_seed"])) for p in p_list])
    img = img + noise[:, None] * torch.tensor([p["noise"] for p in p_list], dtype=torch.float32)[:, None, None, None]
    return img.clamp(0.0, 1.0), labels


def generate_cohort(
    n_subjects: int,
    *,
    seed: int = 0,
    config: CohortConfig | None = None,
    chunk: int = 64,
    progress: bool = False,
) -> Cohort:
    """Generate ``n_subjects`` subjects (see the module docstring for what varies).

    Returns a :class:`Cohort` with images (N, 1, H, W) float32 in [0, 1] and seg4 labels (N, H, W).
    """
    n_subjects, seed = check_subjects(n_subjects, "n_subjects", low=1), check_seed(seed)
    cfg = config or CohortConfig()
    tpl = load_template()
    volume = torch.from_numpy(tpl.maps)[None]  # (1, C, X, Y, Z)
    draws = [_draw(np.random.default_rng([seed, i]), cfg) for i in range(n_subjects)]
    images, labels = [], []
    starts = range(0, n_subjects, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generating subjects", unit="chunk")
    for start in starts:
        img, lab = _render(draws[start : start + chunk], cfg, tpl, volume)
        images.append(img)
        labels.append(lab)
    params = {
        key: np.array([d[key] for d in draws])
        for key in ("severity", "ventricle_mm", "thinning_mm", "pitch_deg", "yaw_deg", "jitter_mm", "rotate_deg", "gamma", "blur_px", "noise")
    }
    return Cohort(
        images=torch.cat(images).contiguous(),
        labels=torch.cat(labels).contiguous(),
        params=params,
        subjects=[f"sub-{i:04d}" for i in range(n_subjects)],
        seed=seed,
        config=cfg,
    )


def template_plane(config: CohortConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The template itself on the output grid (no variation): image (1, H, W), labels (H, W).

    For display only: atlases and test subjects are always generated subjects, never this.
    """
    cfg = config or CohortConfig()
    tpl = load_template()
    zero = {k: np.zeros_like(v) if isinstance(v, np.ndarray) else 0.0 for k, v in _draw(np.random.default_rng(0), cfg).items()}
    zero.update(gamma=1.0, noise=0.0, noise_seed=0, log_scale=np.zeros(2), shift_mm=np.zeros(2))
    volume = torch.from_numpy(tpl.maps)[None]
    img, lab = _render([zero], cfg, tpl, volume)
    return img[0], lab[0]
