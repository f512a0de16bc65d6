"""Pluggable scorers (numpy in, metrics out): the disparity/depth scorer with the camera model, and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from stereo_depth_ros.evaluation import scorers
from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA
from stereo_depth_ros.geometry import StereoCameraModel

CAMERA = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)  # doffs 7.77 px


@pytest.fixture(scope="module")
def frame(motorcycle_small):
    """The real Motorcycle GT at 1/4 size as a perfect prediction: image disparity and depth f B / (d + doffs)."""
    _, _, disparity = motorcycle_small
    depth = CAMERA.depth_from_disparity(disparity)
    return disparity, depth


def test_a_perfect_prediction_scores_zero_error(frame):
    disparity, depth = frame
    scorer = scorers.create_scorer("disparity-depth")
    result = scorer.score({"disparity": disparity, "depth": depth}, {"depth": depth}, CAMERA)
    assert result["epe_px"] == pytest.approx(0.0, abs=1e-3) and result["mae_mm"] == pytest.approx(0.0, abs=1e-3)
    assert result["depth_median_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert result["density_pct"] == pytest.approx(100.0) and result["depth_density_pct"] == pytest.approx(100.0)
    # the same from ground-truth disparity instead of depth
    from_disparity = scorer.score({"disparity": disparity, "depth": depth}, {"disparity": disparity}, CAMERA)
    assert from_disparity["epe_px"] == pytest.approx(0.0, abs=1e-3)
    assert from_disparity["mae_mm"] == pytest.approx(0.0, abs=1e-2)


def test_known_errors_are_measured_in_the_right_units(frame):
    disparity, depth = frame
    scorer = scorers.create_scorer("disparity-depth")
    result = scorer.score({"disparity": disparity + 1.0, "depth": depth + 0.01}, {"depth": depth}, CAMERA)
    assert result["epe_px"] == pytest.approx(1.0, abs=1e-3)
    assert result["mae_mm"] == pytest.approx(10.0, rel=1e-3) and result["rmse_mm"] == pytest.approx(10.0, rel=1e-3)
    assert result["bad2_pct"] == 0.0


def test_a_depth_in_the_wrong_unit_is_caught(frame):
    disparity, depth = frame
    result = scorers.create_scorer("disparity-depth").score({"depth": depth * 1000.0}, {"depth": depth}, CAMERA)
    assert result["depth_median_ratio"] == pytest.approx(1000.0)
    assert result["mae_mm"] > 1e6, "a depth in millimetres must give an enormous error, never a small one"


def test_a_swapped_camera_is_caught(frame):
    """cx and cx_right exchanged (left and right camera_info swapped in the principal points): doffs changes sign,
    so the ground-truth disparity of the GT depth is off by 2 doffs and the scores say so."""
    disparity, depth = frame
    swapped = StereoCameraModel(fx=CAMERA.fx, cx=CAMERA.cx_right, cy=CAMERA.cy, baseline_m=CAMERA.baseline_m,
                                cx_right=CAMERA.cx)
    scorer = scorers.create_scorer("disparity-depth")
    right = scorer.score({"disparity": disparity}, {"depth": depth}, CAMERA)
    wrong = scorer.score({"disparity": disparity}, {"depth": depth}, swapped)
    assert right["epe_px"] < 1e-3
    assert wrong["epe_px"] == pytest.approx(2 * CAMERA.disparity_offset_px, rel=1e-3)


def test_invalid_depths_follow_rep_117_and_are_not_scored(frame):
    disparity, depth = frame
    predicted = depth.copy()
    predicted[:, :10] = np.inf
    predicted[:, 10:20] = -np.inf
    predicted[:, 20:30] = np.nan
    result = scorers.depth_errors(predicted, depth)
    assert result["mae_mm"] == pytest.approx(0.0, abs=1e-6)
    gt_valid = np.isfinite(depth)
    expected = 100.0 * np.count_nonzero(gt_valid[:, 30:]) / np.count_nonzero(gt_valid)
    assert result["depth_density_pct"] == pytest.approx(expected)


def test_scorer_errors_name_what_is_missing(frame):
    disparity, depth = frame
    scorer = scorers.create_scorer("disparity-depth")
    with pytest.raises(ValueError, match="ground-truth 'depth'"):
        scorer.score({"depth": depth}, {}, CAMERA)
    with pytest.raises(ValueError, match="camera model"):
        scorer.score({"disparity": disparity}, {"depth": depth}, None)
    with pytest.raises(ValueError, match="same size"):
        scorer.score({"depth": depth[:10]}, {"depth": depth}, CAMERA)


def test_registry_takes_new_scorers_without_touching_the_replay():
    class ConstantScorer(scorers.Scorer):
        name = "test-constant"
        output_kinds = ("mask",)
        ground_truth_kinds = ("mask",)
        metric_labels = {"iou": "IoU"}

        def score(self, outputs, ground_truth, camera):
            return {"iou": float(np.mean(outputs["mask"] == ground_truth["mask"]))}

    scorers.register_scorer("test-constant", ConstantScorer)
    try:
        assert "test-constant" in scorers.scorer_names()
        scorer = scorers.create_scorer("test-constant")
        rows = [scorer.score({"mask": np.ones((2, 2))}, {"mask": np.ones((2, 2))}, None), {"iou": 0.5}]
        assert scorer.summarise(rows) == {"iou": 0.75}
        with pytest.raises(ValueError, match="already registered"):
            scorers.register_scorer("test-constant", ConstantScorer)
    finally:
        scorers.SCORERS.pop("test-constant", None)
    with pytest.raises(ValueError, match="disparity-depth"):
        scorers.create_scorer("no-such-scorer")
