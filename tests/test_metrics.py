"""Metrics on hand-made arrays with answers worked out by hand (and SSIM against torchmetrics)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from ff3r_ns.core.metrics import (
    MSE_FLOOR,
    alexnet_weights_path,
    confusion_matrix,
    depth_metrics,
    lpips_available,
    make_lpips,
    psnr,
    SegmentationScores,
    segmentation_scores,
    ssim,
)


# --------------------------------------------------------------------------- PSNR
def test_psnr_identical_images_hits_documented_clamp() -> None:
    x = torch.rand(2, 5, 7, 3)
    assert MSE_FLOOR == 1e-10
    torch.testing.assert_close(psnr(x, x), torch.full((2,), 100.0))
    # the clamp scales with the data range: 10 log10(255^2 / 1e-10)
    assert psnr(x * 255, x * 255, data_range=255.0)[0].item() == pytest.approx(100 + 20 * math.log10(255), abs=1e-4)


def test_psnr_of_known_mse() -> None:
    target = torch.zeros(4, 4, 3)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    # half the pixels off by 0.2 -> MSE 0.02 -> 10 log10(50)
    pred = target.clone()
    pred[:2] = 0.2
    assert psnr(pred, target).item() == pytest.approx(10 * math.log10(50), abs=1e-5)


def test_psnr_is_per_image_over_batch_shape() -> None:
    target = torch.zeros(2, 3, 4, 4, 3)
    pred = target + torch.tensor([0.1, 0.01, 0.001]).view(1, 3, 1, 1, 1)
    out = psnr(pred, target)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out, torch.tensor([[20.0, 40.0, 60.0]] * 2), atol=1e-3, rtol=0)


def test_image_metrics_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="at least 6x6"):
        ssim(torch.zeros(5, 9, 3), torch.zeros(5, 9, 3))


# --------------------------------------------------------------------------- SSIM
def _smooth_image(gen: torch.Generator, b: int, h: int, w: int) -> torch.Tensor:
    coarse = torch.rand(b, 3, h // 4, w // 4, generator=gen)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1)


def test_ssim_matches_torchmetrics() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    gen = torch.Generator().manual_seed(0)
    target = _smooth_image(gen, 3, 24, 32)
    pred = (target + 0.08 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    pred[1] = target[1].flip(1)  # a structurally different pair
    pred[2] = target[2] * 0.7 + 0.1  # contrast/brightness change only
    ours = ssim(pred, target)
    ref = torch.stack(
        [tm_ssim(p.permute(2, 0, 1)[None], t.permute(2, 0, 1)[None], data_range=1.0) for p, t in zip(pred, target)]
    )
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ours[1] < ours[0] < 1.0  # sanity: the ordering means something


def test_ssim_identical_is_one_and_gradient_is_correct() -> None:
    gen = torch.Generator().manual_seed(1)
    x = _smooth_image(gen, 1, 12, 12)[0]
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    a = x.double().requires_grad_(True)
    b = (x.double() * 0.8 + 0.05).flip(0)
    assert torch.autograd.gradcheck(lambda p: ssim(p, b), (a,), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- LPIPS
def test_lpips_unavailable_returns_none_with_message(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # make get_dir() re-read TORCH_HOME
    assert alexnet_weights_path() == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert not lpips_available()
    with caplog.at_level(logging.WARNING, logger="ff3r_ns.core.metrics"):
        assert make_lpips() is None
    assert "LPIPS disabled" in caplog.text and str(alexnet_weights_path()) in caplog.text
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded


@pytest.mark.skipif(not lpips_available(), reason="AlexNet weights not in the local torch hub cache")
def test_lpips_when_weights_are_local() -> None:
    scorer = make_lpips()
    assert scorer is not None
    gen = torch.Generator().manual_seed(2)
    x = _smooth_image(gen, 2, 64, 64)
    same = scorer(x, x)
    assert same.shape == (2,)
    assert same.abs().max().item() < 1e-6
    assert (scorer(x, x.flip(1)) > 0.05).all()


# --------------------------------------------------------------------------- segmentation
def segmentation_metrics(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = 9) -> SegmentationScores:
    """The scores of one prediction, as the evaluation pools them (ignore label 0)."""
    return segmentation_scores(confusion_matrix(pred, gt, num_classes, 0), 0)


def test_miou_hand_case_with_ignore_and_absent_classes() -> None:
    gt = torch.tensor([[1, 1, 2], [2, 0, 3]])
    pred = torch.tensor([[1, 2, 2], [2, 5, 1]])  # the 5 sits on an ignored pixel
    s = segmentation_metrics(pred, gt, num_classes=9)
    # class 1: TP 1, |gt| 2, |pred| 2 -> 1/3; class 2: TP 2, |gt| 2, |pred| 3 -> 2/3; class 3: 0/1
    assert s.miou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s.accuracy == pytest.approx(3 / 5)
    assert s.num_pixels == 5
    assert s.evaluated.tolist() == [False, True, True, True, False, False, False, False, False]
    torch.testing.assert_close(s.iou[1:4], torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert torch.isnan(s.iou[0]) and torch.isnan(s.iou[4:]).all()  # ignore label, absent classes


def test_predictions_on_ignored_pixels_do_not_count() -> None:
    gt = torch.tensor([[0, 0, 1, 2]])
    a = segmentation_metrics(torch.tensor([[7, 8, 1, 2]]), gt)
    b = segmentation_metrics(torch.tensor([[1, 2, 1, 2]]), gt)
    assert a.miou == b.miou == 1.0 and a.accuracy == b.accuracy == 1.0
    # predicting the ignore label on a labelled pixel is a miss
    c = segmentation_metrics(torch.tensor([[0, 0, 0, 2]]), gt)
    assert c.accuracy == 0.5 and c.iou[1].item() == 0.0 and c.miou == pytest.approx(0.5)


def test_perfect_and_inverted_predictions() -> None:
    gt = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2]])
    perfect = segmentation_metrics(gt.clone(), gt)
    assert (perfect.miou, perfect.accuracy) == (1.0, 1.0)
    inverted = segmentation_metrics(3 - gt, gt)
    assert (inverted.miou, inverted.accuracy) == (0.0, 0.0)


def test_confusion_matrices_add_up_over_images() -> None:
    gen = torch.Generator().manual_seed(3)
    gts = [torch.randint(0, 9, (5, 6), generator=gen) for _ in range(3)]
    preds = [torch.randint(1, 9, (5, 6), generator=gen) for _ in range(3)]
    total = sum(confusion_matrix(p, g, 9) for p, g in zip(preds, gts))
    joint = confusion_matrix(torch.stack(preds), torch.stack(gts), 9)
    assert torch.equal(total, joint)
    assert total.sum().item() == sum(int((g != 0).sum()) for g in gts)
    assert total[0].sum().item() == 0  # ignored rows are empty
    assert segmentation_scores(total).accuracy == pytest.approx(total.diagonal().sum().item() / total.sum().item())


def test_segmentation_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 9)
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        confusion_matrix(torch.full((2, 2), 9), torch.ones(2, 2, dtype=torch.long), 9)


# --------------------------------------------------------------------------- depth
def test_scaled_prediction_is_perfect_after_median_scaling() -> None:
    gen = torch.Generator().manual_seed(4)
    gt = 0.5 + 4 * torch.rand(6, 7, generator=gen)
    pred = gt * 2.5
    gt[0, 0], gt[1, 1], gt[2, 2] = 0.0, math.nan, math.inf  # invalid ground truth is skipped
    pred[0, 0] = 100.0
    d = depth_metrics(pred, gt)
    assert d.abs_rel == pytest.approx(0.0, abs=1e-6)  # float32 rounding of gt * 2.5
    assert d.inlier_103 == 1.0 and d.delta_125 == 1.0
    assert d.scale == pytest.approx(0.4)
    assert d.num_valid == 42 - 3
    unscaled = depth_metrics(pred, gt, median_scaling=False)
    assert unscaled.abs_rel == pytest.approx(1.5) and unscaled.inlier_103 == 0.0 and unscaled.scale == 1.0


def test_inlier_ratio_hand_case() -> None:
    gt = torch.ones(5)
    pred = torch.tensor([1.0, 1.029, 0.972, 1.031, 0.96])  # ratios 1, 1.029, 1.0288, 1.031, 1.0417
    d = depth_metrics(pred, gt)  # median(pred) = 1 -> scale 1
    assert d.scale == pytest.approx(1.0)
    assert d.inlier_103 == pytest.approx(3 / 5)
    assert d.delta_125 == 1.0
    assert d.abs_rel == pytest.approx((0 + 0.029 + 0.028 + 0.031 + 0.04) / 5, abs=1e-7)


def test_median_scaling_uses_the_mean_of_the_middle_pair() -> None:
    d = depth_metrics(torch.ones(4), torch.tensor([1.0, 2.0, 4.0, 8.0]))
    assert d.scale == pytest.approx(3.0)  # numpy's median; torch.median would give 2
    # scaled prediction 3 everywhere: ratios 3, 1.5, 1.333, 2.667 -> none below 1.25
    assert d.delta_125 == 0.0
    assert d.abs_rel == pytest.approx((2 + 0.5 + 0.25 + 5 / 8) / 4)


def test_non_positive_predictions_are_outliers() -> None:
    gt = torch.ones(4)
    d = depth_metrics(torch.tensor([1.0, 1.0, 1.0, -1.0]), gt)
    assert d.scale == pytest.approx(1.0)
    assert d.inlier_103 == pytest.approx(0.75) and d.delta_125 == pytest.approx(0.75)
    assert d.abs_rel == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(torch.ones(3), torch.tensor([0.0, -1.0, math.nan]))
