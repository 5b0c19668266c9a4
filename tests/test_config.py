import math
from dataclasses import replace

import pytest

from segreg_lite.config import CPU_PSEUDO, PAPER_REG_WEIGHTS, PRESETS, TrainConfig, check_preset, get_preset, reg_weights

LENGTHS = ("seg_steps", "seg_round_steps", "reg_steps", "reg_round_steps", "rounds", "batch_size", "um_steps")


def test_presets_exist():
    assert set(PRESETS) == {"cpu", "quick", "sweep", "paper", "smoke"}
    assert get_preset("cpu") == TrainConfig(**CPU_PSEUDO)
    quick = get_preset("quick")
    assert all(getattr(quick, k) <= getattr(TrainConfig(), k) for k in LENGTHS)  # shorter, never longer
    paper = get_preset("paper", n_annotated=3, n_train=140)
    assert (paper.n_tta, paper.n_atlas, paper.confidence_weight) == (4, 5, False)  # the paper's pseudo-labels
    assert quick.n_tta == 9 and quick.confidence_weight  # the CPU presets lean on the segmenter
    sweep = get_preset("sweep")
    assert all(getattr(sweep, k) <= getattr(quick, k) for k in LENGTHS) and sweep.n_tta == 9
    # the sweep's joint method is quick's: strong views and no registration phase in the rounds
    assert sweep.strong_views and quick.strong_views and sweep.reg_round_steps == quick.reg_round_steps == 0


def test_paper_preset_needs_sizes():
    with pytest.raises(ValueError, match="n_annotated and n_train"):
        get_preset("paper")
    with pytest.raises(ValueError, match="n_annotated and n_train"):
        get_preset("paper", n_annotated=3)


def test_paper_preset_converts_epochs_to_steps():
    c = get_preset("paper", n_annotated=3, n_train=140)
    assert c.batch_size == 5 and c.rounds == 10
    assert c.seg_steps == 500 * 1  # 3 images at batch 5: one step per epoch
    assert c.seg_round_steps == 100 * 28  # 140 images / 5
    assert c.reg_steps == 200 * 28 and c.reg_round_steps == 50 * 28
    assert (c.seg_lr, c.seg_round_lr, c.reg_lr, c.reg_round_lr) == (1e-4, 1e-5, 1e-3, 1e-4)
    assert get_preset("paper", n_annotated=6, n_train=141).seg_steps == 500 * 2  # partial batch counts


def test_paper_preset_keeps_the_papers_registration_network_and_loss():
    paper = get_preset("paper", n_annotated=3, n_train=140)
    assert (paper.reg_affine, paper.reg_refine, paper.local_ncc, paper.shipped_regnet) == (False, False, False, False)
    assert paper.reg_features == 32 and paper.reg_passes == 1 and get_preset("cpu").reg_passes == 2
    assert reg_weights(paper) == PAPER_REG_WEIGHTS == (128, 64, 32, 16, 8)
    cpu = get_preset("cpu")  # the measured settings of the CPU presets
    assert (cpu.reg_affine, cpu.reg_refine, cpu.local_ncc, cpu.shipped_regnet) == (True, True, True, True)
    assert reg_weights(cpu) == tuple(w * cpu.reg_smoothness for w in PAPER_REG_WEIGHTS)


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match="cpu, quick, sweep, paper, smoke"):
        get_preset("gpu")
    # the command line checks the name before it makes any data, by the same function, naming its flag
    with pytest.raises(ValueError, match=r"^unknown preset 'gpu' \(--preset\): choose one of cpu, quick, sweep, paper, smoke$"):
        check_preset("gpu", "--preset")
    assert all(check_preset(name) == name for name in PRESETS)


def test_smoke_shrinks_lengths_and_keeps_the_rest():
    base = get_preset("paper", n_annotated=30, n_train=300)
    small = base.smoke()
    for name in LENGTHS:
        assert getattr(small, name) <= getattr(base, name), name
    assert small.seg_steps < 10 and small.reg_steps < 10 and small.rounds <= 2
    keep = lambda c: {k: v for k, v in c.to_dict().items() if k not in LENGTHS}  # noqa: E731
    assert keep(small) == keep(base)
    assert get_preset("smoke") == get_preset("cpu").smoke()


@pytest.mark.parametrize("bad", [dict(seg_lr=-1e-3), dict(reg_lr=math.nan), dict(seg_steps=-1), dict(label_weight=math.inf),
                                 dict(mt_ema=-0.5), dict(mt_rampup=-0.1)])
def test_rejects_negative_and_non_finite(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


@pytest.mark.parametrize("dropout", [1.0, 1.5])
def test_rejects_bad_dropout(dropout):
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=dropout)


def test_rejects_empty_batch():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_dict_round_trip_and_unknown_keys():
    c = replace(TrainConfig(), rounds=7, residual=True)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({**c.to_dict(), "learning_rate": 0.1})


@pytest.mark.parametrize("kwargs, match", [
    (dict(appearance="histogram"), "unknown appearance mode 'histogram'"),
    (dict(tta="flip"), r"unknown test-time augmentation tta='flip': choose one of affine, mirror"),
    (dict(annotated_share=0.5, pair_share=0.5), "shares .* sum to one"),
    (dict(um_threshold=1.0), r"um_threshold .* \(0, 1\)"),
    (dict(um_threshold=0.0), r"um_threshold .* \(0, 1\)"),
    (dict(um_feature_dropout=1.0), "um_feature_dropout"),
    (dict(online_share=1.5), r"online_share .* \[0, 1\]"),
    (dict(em_prior_power=0.0), "em_prior_power and em_sigma_px must be > 0"),
    (dict(em_sigma_px=0.0), "em_prior_power and em_sigma_px must be > 0"),
    (dict(em_iters=-1), "em_iters must be a finite number >= 0"),
    (dict(em_iters=2.5), "em_iters counts EM iterations and must be a whole number"),
])
def test_new_options_refuse_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_quick_preset_learns_through_strong_views_without_a_registration_phase():
    quick = get_preset("quick")
    assert quick.strong_views and quick.reg_round_steps == 0 and quick.um_steps > 0
    assert quick.em_iters > 0 and quick.smoke().em_iters == quick.em_iters  # refined pseudo-labels, smoke too
    assert quick.smoke().reg_round_steps == 0  # smoke mode keeps the skipped phase skipped
