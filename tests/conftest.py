"""Helpers that several test modules share, exposed as fixtures: test modules import nothing
from each other."""
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from segreg_lite.config import TrainConfig
from segreg_lite.data import Data
from segreg_lite.regnet import RegNet

#: The smallest config that runs every method: tiny networks and schedules, one joint round.
TINY_CONFIG = replace(TrainConfig().smoke(), features=4, reg_features=4, batch_size=2, n_atlas=2, n_tta=1, rounds=1)


def toy_problem(n: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright squares (class 1) and dark bars (class 2) on a mid-grey background, with noise:
    images (n, 1, size, size) and labels (n, size, size) int64."""
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(4, 14, (2,), generator=g).tolist()
        labels[i, r : r + 10, c : c + 10] = 1
        labels[i, 24:28, 4 + i : 20 + i] = 2
    images = torch.where(labels == 1, 0.9, torch.where(labels == 2, 0.1, 0.5))[:, None].float()
    return images + 0.02 * torch.randn(images.shape, generator=g), labels


def toy_data(n: int = 12, size: int = 32) -> Data:
    """A :class:`~segreg_lite.data.Data` of n noiseless toy subjects (two foreground classes)."""
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        labels[i, 6 + i % 5 : 18 + i % 5, 6:24] = 1
        labels[i, 22:27, 4:28] = 2
    images = torch.where(labels == 1, 0.9, torch.where(labels == 2, 0.4, 0.0))[:, None].float()
    return Data(images, labels, [f"s{i}" for i in range(n)], ("background", "a", "b"), "toy")


def rough_regnet(features: int = 4, levels: int = 3, *, std: float = 0.1, seed: int = 0, **kwargs) -> RegNet:
    """A RegNet made after ``torch.manual_seed(seed)`` whose flow heads are drawn with ``std``
    instead of starting at zero: its fields are not the identity from the start."""
    torch.manual_seed(seed)
    model = RegNet(features=features, levels=levels, **kwargs)
    with torch.no_grad():
        for head in model.heads:
            head.weight.normal_(0, std)
    return model


def flip_weights(src: Path, dst: Path) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with 64 bytes of its largest weight tensor inverted:
    torch reads the copy as it reads the original (it checks no checksum), and builds another
    network from it. What a damaged download or disk does to the shipped weights."""
    raw = bytearray(Path(src).read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    h = info.header_offset  # the local header: 30 bytes, then the name and the extra field
    start = h + 30 + int.from_bytes(raw[h + 26:h + 28], "little") + int.from_bytes(raw[h + 28:h + 30], "little")
    raw[start:start + 64] = bytes(b ^ 0xFF for b in raw[start:start + 64])
    Path(dst).write_bytes(raw)
    return Path(dst)


@pytest.fixture(scope="session")
def make_flipped():
    """:func:`flip_weights`: a copy of a checkpoint with damaged weights that still loads."""
    return flip_weights


@pytest.fixture(scope="session")
def make_regnet():
    """:func:`rough_regnet`: a registration network with random flow heads."""
    return rough_regnet


@pytest.fixture(scope="session")
def make_toy():
    """:func:`toy_problem`: the supervised trainers' toy segmentation problem."""
    return toy_problem


@pytest.fixture(scope="session")
def make_data():
    """:func:`toy_data`: small data for whole runs (experiment, sweep)."""
    return toy_data


@pytest.fixture(scope="session")
def tiny_config() -> TrainConfig:
    """:data:`TINY_CONFIG`."""
    return TINY_CONFIG
