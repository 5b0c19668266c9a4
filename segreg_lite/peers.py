"""The classical peer of the registration network: ANTs SyN, through ``antspyx`` (optional).

Li et al. (arXiv 2502.03229) train a registration network; the field's classical reference for
the same job is ANTs' symmetric normalisation. ``antsRegistrationSyN[s]`` runs a rigid, then an
affine stage, then SyN with a local cross-correlation metric, and uses no labels. The package
never needs ``antspyx``: it is the optional extra ``pip install segreg-lite[peers]`` (or
``pip install antspyx``), imported only inside :func:`ants_fields`.

ANTs' whole transform (its affine and its SyN field) comes back as one displacement field in the
package's convention (:mod:`segreg_lite.transforms`), so labels are warped, and fields scored,
by the same code as the network's. With unit spacing and zero origin, ANTs' physical axes are the
array axes, and its forward transform maps fixed points to moving ones: the backward convention
of :func:`~segreg_lite.transforms.warp`.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch
from torch import Tensor

#: ANTs' own name of the transform: rigid + affine + SyN, the "s" (quick) variant.
SYN = "antsRegistrationSyN[s]"


def ants_available() -> bool:
    """Whether ``antspyx`` can be imported here."""
    try:
        import ants  # noqa: F401
    except ImportError:
        return False
    return True


def ants_fields(moving: Tensor, fixed: Tensor, *, transform: str = SYN, seed: int = 1) -> tuple[Tensor, float]:
    """Register each ``moving`` image onto the ``fixed`` image of the same index with ANTs.

    moving, fixed: (P, 1, H, W) float. Returns the fields (P, 2, H, W) in pixels, float32, with
    ``warp(moving, flow) ~ fixed``, and the mean seconds per pair of the registration itself. ANTs
    takes its thread count from ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (set it before the first
    call). ImportError with the install command when ``antspyx`` is missing.
    """
    try:
        import ants
    except ImportError as err:
        raise ImportError("ANTs is the optional peer: pip install antspyx (or segreg-lite[peers])") from err
    if moving.ndim != 4 or moving.shape[1] != 1 or moving.shape != fixed.shape:
        raise ValueError(f"moving and fixed must both be (P, 1, H, W), got {tuple(moving.shape)} and {tuple(fixed.shape)}")
    if not bool(torch.isfinite(moving).all() & torch.isfinite(fixed).all()):
        raise ValueError("moving or fixed images contain NaN or inf")
    flows, seconds = [], []
    with tempfile.TemporaryDirectory(prefix="segreg-ants-") as tmp:
        for i, (m, f) in enumerate(zip(moving[:, 0].numpy(), fixed[:, 0].numpy())):
            fixed_img, moving_img = ants.from_numpy(f.astype(np.float32)), ants.from_numpy(m.astype(np.float32))
            start = time.perf_counter()
            reg = ants.registration(fixed_img, moving_img, type_of_transform=transform, random_seed=seed,
                                    outprefix=os.path.join(tmp, f"pair{i}_"))
            seconds.append(time.perf_counter() - start)
            # The whole transform, affine and SyN, composed into one displacement field image.
            composite = ants.apply_transforms(fixed_img, moving_img, reg["fwdtransforms"],
                                              compose=os.path.join(tmp, f"pair{i}_comp"))
            flows.append(np.moveaxis(ants.image_read(composite).numpy(), -1, 0))  # (H, W, 2) -> (2, H, W)
    return torch.from_numpy(np.stack(flows)).float(), float(np.mean(seconds))
