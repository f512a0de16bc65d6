"""Monocular depth metrics (evaluation/depth_metrics.py) on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stereo_depth_ros.evaluation import depth_metrics as dm


def hand_pair():
    """Three scored pixels with GT 1, 2, 4 m and predictions 1.9, 2, 3 m; one NaN GT, one GT of 0, one pred NaN."""
    gt = np.array([[1.0, 2.0, 4.0], [np.nan, 0.0, 3.0]])
    pred = np.array([[1.9, 2.0, 3.0], [5.0, 5.0, np.nan]])
    return pred, gt


def test_protocol_metrics_by_hand():
    pred, gt = hand_pair()
    row = dm.depth_metrics(pred, gt, max_depth_m=10.0)
    g = np.array([1.0, 2.0, 4.0])
    p = np.array([1.9, 2.0, 3.0])
    assert row["abs_rel"] == pytest.approx((0.9 / 1 + 0 + 1 / 4) / 3)
    assert row["sq_rel"] == pytest.approx((0.81 / 1 + 0 + 1 / 4) / 3)
    assert row["rmse_m"] == pytest.approx(math.sqrt((0.81 + 0 + 1) / 3))
    assert row["rmse_log"] == pytest.approx(math.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)))
    # max(g/p, p/g) = 1.9, 1, 1.33: under 1.25 one pixel, under 1.5625 two, under 1.953125 all three
    assert (row["delta1"], row["delta2"], row["delta3"]) == pytest.approx((1 / 3, 2 / 3, 1.0))
    # V = the 4 finite GT > 0 pixels; P = 3 of them (the prediction at GT 3 m is NaN)
    assert row["density_pct"] == pytest.approx(75.0)
    assert row["scale"] == pytest.approx(2.0 / 2.0)  # median GT 2 m, median prediction 2 m
    assert row["median_scaling"] is False and row["max_depth_m"] == 10.0


def test_refinement_paper_six_by_hand():
    pred, gt = hand_pair()
    row = dm.depth_metrics(pred, gt, max_depth_m=10.0)
    g = np.array([1.0, 2.0, 4.0])
    p = np.array([1.9, 2.0, 3.0])
    d = np.log(p) - np.log(g)
    assert row["mse_m2"] == pytest.approx(1.81 / 3)
    assert row["ard"] == pytest.approx(np.mean(np.abs(g - p) / p))  # eq. 4 divides by the reconstruction
    assert row["ard"] != pytest.approx(row["abs_rel"])
    assert row["lrmse"] == pytest.approx(row["rmse_log"])
    assert row["lrmse_si"] == pytest.approx(math.sqrt(np.mean(d ** 2) - np.mean(d) ** 2))
    assert row["srd"] == pytest.approx(np.mean((g - p) ** 2 / p))


def test_lrmse_si_is_scale_invariant_and_lrmse_is_not():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 3.0, (16, 16))
    pred = gt * rng.uniform(0.9, 1.1, gt.shape)
    near = dm.depth_metrics(pred, gt, max_depth_m=100.0)
    far = dm.depth_metrics(3.0 * pred, gt, max_depth_m=100.0)
    assert far["lrmse_si"] == pytest.approx(near["lrmse_si"])
    assert far["lrmse"] > near["lrmse"] + 0.5


def test_median_scaling_removes_a_global_scale_and_reports_it():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.05, 0.15, (20, 20))
    wrong_unit = gt * 1000.0  # millimetres where metres are expected
    unscaled = dm.depth_metrics(wrong_unit, gt, max_depth_m=0.2)
    scaled = dm.depth_metrics(wrong_unit, gt, max_depth_m=0.2, median_scaling=True)
    assert unscaled["scale"] == pytest.approx(1e-3)
    assert scaled["scale"] == pytest.approx(1e-3)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12) and scaled["delta1"] == 1.0
    assert scaled["ssim_normalised"] == pytest.approx(1.0)
    # unscaled, the prediction is clipped to the 0.2 m cap: a wrong unit gives a large error
    assert unscaled["abs_rel"] > 0.3 and unscaled["delta1"] < 0.1


def test_prediction_is_clipped_to_the_stated_range():
    gt = np.full((3, 3), 1.0)
    row = dm.depth_metrics(np.full((3, 3), 50.0), gt, max_depth_m=2.0)
    assert row["abs_rel"] == pytest.approx(1.0)  # 50 m clipped to 2 m
    assert row["max_depth_m"] == 2.0


def test_gt_outside_the_range_is_not_scored():
    gt = np.array([[1.0, 2.0], [30.0, 0.0005]])
    pred = np.array([[1.0, 2.0], [1.0, 1.0]])
    row = dm.depth_metrics(pred, gt, max_depth_m=10.0)
    assert row["abs_rel"] == 0.0 and row["density_pct"] == 100.0


def test_default_cap_is_the_frames_largest_gt():
    gt = np.array([[1.0, 4.0], [2.0, np.inf]])
    row = dm.depth_metrics(np.full((2, 2), 9.0), gt)
    assert row["max_depth_m"] == 4.0
    assert row["abs_rel"] == pytest.approx(np.mean([3 / 1, 0 / 4, 2 / 2]))


def test_unet_paper_normalised_mse_and_ssim():
    gt = np.tile(np.linspace(1.0, 3.0, 12), (12, 1))
    perfect = dm.depth_metrics(gt.copy(), gt, min_depth_m=1.0, max_depth_m=3.0)
    assert perfect["mse_normalised"] == 0.0 and perfect["ssim_normalised"] == pytest.approx(1.0)
    offset = dm.depth_metrics(gt + 0.2, gt, min_depth_m=1.0, max_depth_m=3.0)
    # (0.2 / 2)^2 except where the prediction was clipped at 3 m
    clipped = np.minimum(gt + 0.2, 3.0)
    assert offset["mse_normalised"] == pytest.approx(np.mean(((clipped - gt) / 2.0) ** 2))
    flat = dm.depth_metrics(np.full_like(gt, 2.0), gt, min_depth_m=1.0, max_depth_m=3.0)
    assert flat["ssim_normalised"] < 0.5 < offset["ssim_normalised"]


def test_empty_and_invalid_gt_give_nan_not_errors():
    pred = np.ones((4, 4))
    no_gt = dm.depth_metrics(pred, np.full((4, 4), np.nan), max_depth_m=10.0)
    assert math.isnan(no_gt["abs_rel"]) and math.isnan(no_gt["density_pct"]) and math.isnan(no_gt["scale"])
    zeros = dm.depth_metrics(pred, np.zeros((4, 4)), max_depth_m=10.0)
    assert math.isnan(zeros["rmse_m"])
    no_pred = dm.depth_metrics(np.full((4, 4), np.nan), np.ones((4, 4)), max_depth_m=10.0)
    assert no_pred["density_pct"] == 0.0 and math.isnan(no_pred["abs_rel"])
    negative_pred = dm.depth_metrics(-np.ones((4, 4)), np.ones((4, 4)), max_depth_m=10.0)
    assert negative_pred["density_pct"] == 0.0


def test_mask_limits_the_pixels():
    gt = np.array([[1.0, 2.0]])
    pred = np.array([[1.0, 4.0]])
    mask = np.array([[True, False]])
    assert dm.depth_metrics(pred, gt, max_depth_m=10.0, mask=mask)["abs_rel"] == 0.0
    assert dm.depth_metrics(pred, gt, max_depth_m=10.0)["abs_rel"] == pytest.approx(0.5)


@pytest.mark.parametrize("call, message", [
    (lambda: dm.depth_metrics(np.ones((2, 2)), np.ones((2, 3))), "differs"),
    (lambda: dm.depth_metrics(np.ones(4), np.ones(4)), "(H, W)"),
    (lambda: dm.depth_metrics(np.ones((2, 2)), np.ones((2, 2)), min_depth_m=0.0), "min_depth_m"),
    (lambda: dm.depth_metrics(np.ones((2, 2)), np.ones((2, 2)), min_depth_m=2.0, max_depth_m=1.0), "max_depth_m"),
    (lambda: dm.depth_metrics(np.ones((2, 2)), np.ones((2, 2)), max_depth_m=math.inf), "max_depth_m"),
    (lambda: dm.depth_metrics(np.ones((2, 2)), np.ones((2, 2)), mask=np.ones((3, 3), bool)), "mask"),
    (lambda: dm.depth_metrics(np.array([["a", "b"]]), np.ones((1, 2))), "dtype"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_gt_mean_baseline_and_frame_average():
    gt = np.array([[1.0, 3.0], [np.nan, 0.0]])
    baseline = dm.constant_depth_like(gt)
    assert baseline.dtype == np.float32 and np.all(baseline == 2.0)
    rows = [dm.depth_metrics(baseline, gt, max_depth_m=10.0),
            dm.depth_metrics(np.ones((2, 2)), np.full((2, 2), np.nan), max_depth_m=10.0)]
    average = dm.mean_over_frames(rows)
    assert average["frames"] == 2 and average["frames_scored"] == 1
    assert average["abs_rel"] == pytest.approx((1 / 1 + 1 / 3) / 2)
