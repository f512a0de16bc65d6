"""Geometry: disparity <-> depth, reprojection, warping (core, no ROS)."""

import numpy as np
import pytest
import torch

from stereo_depth_ros.geometry import (StereoCameraModel, depth_to_disparity, disparity_to_depth,
                                       reproject_disparity_to_points, warp_right_to_left)


def test_disparity_to_depth_follows_f_b_over_d_and_marks_invalid_nan():
    disparity = np.array([[10.0, 20.0], [0.0, np.nan], [np.inf, -3.0]], dtype=np.float32)
    depth = disparity_to_depth(disparity, focal_px=1000.0, baseline_m=0.004)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[0], [0.4, 0.2], rtol=1e-6)
    assert np.isnan(depth[1]).all()


def test_depth_range_limits_become_nan():
    depth = disparity_to_depth(np.array([1.0, 10.0, 100.0]), 100.0, 0.1, min_depth=0.5, max_depth=5.0)
    assert np.isnan(depth[0]) and np.isclose(depth[1], 1.0) and np.isnan(depth[2])


def test_depth_and_disparity_round_trip():
    rng = np.random.default_rng(0)
    disparity = rng.uniform(1, 100, (5, 7)).astype(np.float32)
    back = depth_to_disparity(disparity_to_depth(disparity, 520.0, 0.005), 520.0, 0.005)
    np.testing.assert_allclose(back, disparity, rtol=1e-5)


@pytest.mark.parametrize("focal, baseline", [(0.0, 0.1), (100.0, -1.0), (np.nan, 0.1)])
def test_invalid_calibration_is_rejected(focal, baseline):
    with pytest.raises(ValueError):
        disparity_to_depth(np.ones(3), focal, baseline)


def test_reprojection_matches_pinhole_model():
    calibration = StereoCameraModel(focal_px=500.0, cx=2.0, cy=1.0, baseline_m=0.1)
    disparity = np.full((3, 5), 25.0, dtype=np.float32)
    disparity[0, 0] = -1.0
    points = reproject_disparity_to_points(disparity, calibration)
    assert points.shape == (3, 5, 3) and points.dtype == np.float32
    z = 500.0 * 0.1 / 25.0
    np.testing.assert_allclose(points[2, 4], [(4 - 2.0) * z / 500.0, (2 - 1.0) * z / 500.0, z], rtol=1e-6)
    assert np.isnan(points[0, 0]).all()


def test_reprojection_agrees_with_opencv():
    import cv2

    calibration = StereoCameraModel(focal_px=700.0, cx=30.0, cy=20.0, baseline_m=0.05)
    disparity = np.random.default_rng(1).uniform(5, 40, (40, 60)).astype(np.float32)
    q = np.array([[1, 0, 0, -30.0], [0, 1, 0, -20.0], [0, 0, 0, 700.0], [0, 0, 1 / 0.05, 0]])
    expected = cv2.reprojectImageTo3D(disparity, q)
    np.testing.assert_allclose(reproject_disparity_to_points(disparity, calibration), expected, rtol=1e-4)


def test_warping_reproduces_a_known_shift():
    right = torch.rand(2, 3, 16, 32)
    shift = 5.0
    # A left image that is the right image shifted right by 5 px: left(x) = right(x - 5).
    left = torch.zeros_like(right)
    left[..., 5:] = right[..., :-5]
    warped, in_view = warp_right_to_left(right, torch.full((2, 1, 16, 32), shift))
    torch.testing.assert_close(warped[..., 5:], left[..., 5:])
    assert in_view[..., :5].sum() == 0 and in_view[..., 5:].min() == 1


def test_warping_subpixel_is_linear_interpolation():
    right = torch.arange(10.0).view(1, 1, 1, 10)
    warped, _ = warp_right_to_left(right, torch.full((1, 1, 1, 10), 1.5))
    torch.testing.assert_close(warped[0, 0, 0, 2:], torch.arange(8.0) + 0.5)


def test_warping_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        warp_right_to_left(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 9))


def test_border_warp_equals_grid_sample_bilinear_with_border_padding():
    right = torch.rand(2, 5, 7, 30)
    disparity = torch.rand(2, 1, 7, 30) * 40 - 5  # some samples leave the image on both sides
    warped, in_view = warp_right_to_left(right, disparity, padding_mode="border")
    xs = torch.arange(30.0).view(1, 1, 1, 30) - disparity
    ys = torch.arange(7.0).view(1, 1, 7, 1).expand(2, 1, 7, 30)
    grid = torch.stack((2 * xs[:, 0] / 29 - 1, 2 * ys[:, 0] / 6 - 1), dim=-1)
    expected = torch.nn.functional.grid_sample(right, grid, padding_mode="border", align_corners=True)
    torch.testing.assert_close(warped, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(in_view, ((xs >= 0) & (xs <= 29)).float())
