import numpy as np
import pytest
import torch

from segreg_lite.checks import (as_soft, check_array_image, check_array_labels, check_images, check_indices,
                                check_label_range, check_labels, one_hot)

K = 4


def test_one_hot_values_and_range_check():
    labels = torch.tensor([[[0, 3], [1, 2]]])
    oh = one_hot(labels, K)
    assert oh.shape == (1, K, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh.argmax(1), labels) and torch.equal(oh.sum(1), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match=r"values \[4\] are outside 0..3"):
        one_hot(labels + 1, K)
    with pytest.raises(ValueError, match="integer"):
        one_hot(labels.float(), K)


def test_as_soft_takes_either_kind_of_label():
    labels = torch.randint(0, K, (2, 5, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(as_soft(labels, K), one_hot(labels, K))
    soft = torch.softmax(torch.randn(2, K, 5, 6), dim=1)
    assert torch.equal(as_soft(soft, K), soft)
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\) soft maps, got \(2, 3, 5, 6\)"):
        as_soft(soft[:, :3], K)


def test_tensor_checks_name_what_is_wrong():
    images = torch.rand(3, 1, 8, 8)
    assert check_images(images) is images
    with pytest.raises(ValueError, match=r"moving must be a float tensor of shape \(N, 1, H, W\), got \(3, 8, 8\)"):
        check_images(images[:, 0], "moving")
    labels = torch.zeros(3, 8, 8, dtype=torch.long)
    assert check_labels(labels, images, K) is labels
    with pytest.raises(ValueError, match=r"soft maps \(3, 4, 8, 8\)"):
        check_labels(torch.zeros(3, 2, 8, 8), images, K)
    with pytest.raises(ValueError, match=r"values \[7\] are outside 0..3"):
        check_label_range(labels + 7, K)
    assert check_indices(range(3), 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"pool must be in \[0, 3\), got 0..5"):
        check_indices([0, 5], 3, "pool")
    with pytest.raises(ValueError, match="pool is empty"):
        check_indices([], 3, "pool", empty=False)


def test_array_checks_of_the_loaders():
    assert check_array_image(np.arange(4.0)).dtype == np.float32
    with pytest.raises(ValueError, match="constant"):
        check_array_image(np.ones(4))
    assert check_array_labels(np.array([0.0, 2.0]), 3).dtype == np.int64
    with pytest.raises(ValueError, match="non-integer"):
        check_array_labels(np.array([0.5]), 3)
    with pytest.raises(ValueError, match=r"values \[5\] are outside the table 0..2 \(bg, a, b \)"):
        check_array_labels(np.array([0, 5]), 3, names=("bg", "a", "b"))


def test_images_scaled_0_to_255_are_refused():
    """Images in 0..255 pass every shape check and would train on in silence: refused, naming the
    argument and the remedy; the small overshoot of noise above 1 is fine."""
    from segreg_lite.config import TrainConfig
    from segreg_lite.supervised import train_segmenter

    images = torch.rand(3, 1, 8, 8)
    assert check_images(images * 1.2) is not None
    with pytest.raises(ValueError, match=r"moving reach 255, but segreg-lite takes intensities in \[0, 1\].*divide by"):
        check_images(torch.cat([images, torch.full((1, 1, 8, 8), 255.0)]), "moving")
    with pytest.raises(ValueError, match=r"images reach .*intensities in \[0, 1\]"):
        train_segmenter(None, images * 255, torch.zeros(3, 8, 8, dtype=torch.long), [0], TrainConfig())


def test_a_split_too_small_to_mean_anything_warns():
    from segreg_lite.splits import make_split

    with pytest.warns(UserWarning, match="a split of 3 subjects has 1 training and 1 test subject.*too small"):
        make_split(3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_split(12)
