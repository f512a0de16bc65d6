"""Geometry: disparity <-> depth, reprojection, warping (core, no ROS)."""

from types import SimpleNamespace

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
    assert np.isnan(depth[1:]).all(), "no measurement (0, NaN, inf, negative) is NaN, never +-inf (REP-117)"


def test_depth_range_limits_follow_rep_117():
    depth = disparity_to_depth(np.array([1.0, 10.0, 100.0, 0.0]), 100.0, 0.1, min_depth=0.5, max_depth=5.0)
    # d = 1 -> 10 m, beyond max_depth: +inf; d = 100 -> 0.1 m, nearer than min_depth: -inf; d = 0: NaN
    assert depth[0] == np.inf and np.isclose(depth[1], 1.0) and depth[2] == -np.inf and np.isnan(depth[3])
    unlimited = disparity_to_depth(np.array([1e-3]), 100.0, 0.1)
    assert np.isfinite(unlimited).all() and unlimited[0] == pytest.approx(1e4)


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
    calibration = StereoCameraModel(fx=500.0, cx=2.0, cy=1.0, baseline_m=0.1)
    disparity = np.full((3, 5), 25.0, dtype=np.float32)
    disparity[0, 0] = -1.0
    points = reproject_disparity_to_points(disparity, calibration)
    assert points.shape == (3, 5, 3) and points.dtype == np.float32
    z = 500.0 * 0.1 / 25.0
    np.testing.assert_allclose(points[2, 4], [(4 - 2.0) * z / 500.0, (2 - 1.0) * z / 500.0, z], rtol=1e-6)
    assert np.isnan(points[0, 0]).all()


def test_reprojection_makes_out_of_range_points_all_nan():
    calibration = StereoCameraModel(fx=100.0, cx=1.0, cy=1.0, baseline_m=0.1)
    disparity = np.array([[1.0, 10.0, 100.0], [np.nan, 0.0, 10.0]], dtype=np.float32)  # 10 m, 1 m, 0.1 m ...
    points = reproject_disparity_to_points(disparity, calibration, min_depth=0.5, max_depth=5.0)
    invalid = np.array([[True, False, True], [True, True, False]])
    assert np.isnan(points[invalid]).all(), "too far, too near and no measurement: x, y, z all NaN"
    assert np.isfinite(points[~invalid]).all() and not np.isinf(points).any()


def test_reprojection_agrees_with_opencv():
    import cv2

    calibration = StereoCameraModel(fx=700.0, cx=30.0, cy=20.0, baseline_m=0.05)
    disparity = np.random.default_rng(1).uniform(5, 40, (40, 60)).astype(np.float32)
    q = np.array([[1, 0, 0, -30.0], [0, 1, 0, -20.0], [0, 0, 0, 700.0], [0, 0, 1 / 0.05, 0]])
    expected = cv2.reprojectImageTo3D(disparity, q)
    np.testing.assert_allclose(reproject_disparity_to_points(disparity, calibration), expected, rtol=1e-4)


# ------------------------------------------------------------------------------------------- stereo camera model

MOTORCYCLE_Q = dict(fx=999.421, cx=294.182, cy=252.932, baseline_m=0.193001, cx_right=326.96)


def camera_info(fx, cx, cy, tx, width=741, height=497, fy=None):
    """A duck-typed camera_info (fields p, k, width, height) like CameraInfoData or a ROS message."""
    fy = fx if fy is None else fy
    return SimpleNamespace(width=width, height=height, k=[fx, 0, cx, 0, fy, cy, 0, 0, 1],
                           p=[fx, 0, cx, tx, 0, fy, cy, 0, 0, 0, 1, 0])


def test_camera_model_from_camera_info_has_image_geometry_semantics():
    left = camera_info(999.421, 294.182, 252.932, 0.0, fy=999.5)
    right = camera_info(999.421, 326.96, 252.932, -999.421 * 0.193001, fy=999.5)
    camera = StereoCameraModel.from_camera_info(left, right)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.cx_right) == pytest.approx(
        (999.421, 999.5, 294.182, 252.932, 326.96))
    assert camera.baseline_m == pytest.approx(0.193001)
    assert camera.principal_point_offset == pytest.approx(294.182 - 326.96)
    assert camera.disparity_offset_px == pytest.approx(32.778), "Middlebury's doffs = cx_right - cx_left"
    # image_geometry: Z = fx B / (d - (cx_l - cx_r)) for an image disparity d = x_l - x_r
    d = np.array([7.0, 30.0, 65.0], np.float32)
    expected = 999.421 * 0.193001 / (d + 32.778)
    np.testing.assert_allclose(camera.depth_from_disparity(d), expected, rtol=1e-5)
    assert not np.allclose(camera.depth_from_disparity(d), 999.421 * 0.193001 / d, rtol=0.05), "doffs matters"
    np.testing.assert_allclose(camera.disparity_from_depth(expected), d, rtol=1e-4)
    assert camera.depth_from_disparity(-32.778) != camera.depth_from_disparity(-32.778)  # NaN: no measurement
    assert camera.depth_from_disparity(60.0, max_depth=1.0) == np.inf


def test_camera_model_reprojection_agrees_with_opencv_q_and_doffs():
    import cv2

    camera = StereoCameraModel(**MOTORCYCLE_Q)
    disparity = np.random.default_rng(2).uniform(7, 65, (30, 40)).astype(np.float32)
    expected = cv2.reprojectImageTo3D(disparity, camera.reprojection_matrix())
    np.testing.assert_allclose(camera.reproject(disparity), expected, rtol=1e-4)
    np.testing.assert_allclose(camera.reproject(disparity)[..., 2], camera.depth_from_disparity(disparity),
                               rtol=1e-6)


@pytest.mark.parametrize("left, right, field", [
    (camera_info(0.0, 0.0, 0.0, 0.0), camera_info(500, 320, 240, -5), "left camera_info field 'p'"),
    (camera_info(500, 320, 240, 0.0), camera_info(500, 320, 240, 0.0), "P[3]"),
    (camera_info(500, 320, 240, -5.0), camera_info(500, 320, 240, 0.0), "P[3]"),  # left and right files swapped
    (camera_info(500, 320, 240, 0.0), camera_info(500, 320, 240, 5.0), "swapped"),
    (camera_info(-500, 320, 240, 0.0), camera_info(500, 320, 240, -5.0), "P[0]"),
    (camera_info(500, 320, 240, 0.0), camera_info(500, 320, 240, -5.0, width=640), "'width' x 'height'"),
    (SimpleNamespace(p=[1.0] * 3, k=[1.0] * 9), camera_info(500, 320, 240, -5.0), "12 numbers"),
])
def test_camera_model_from_bad_camera_info_names_the_field(left, right, field):
    with pytest.raises(ValueError) as caught:
        StereoCameraModel.from_camera_info(left, right)
    assert field in str(caught.value)


@pytest.mark.parametrize("kwargs, name", [(dict(fx=0.0), "fx"), (dict(baseline_m=-0.1), "baseline_m"),
                                          (dict(cx=np.nan), "cx"), (dict(fy=np.inf), "fy")])
def test_camera_model_rejects_bad_values(kwargs, name):
    values = dict(fx=500.0, cx=320.0, cy=240.0, baseline_m=0.005, **{})
    values.update(kwargs)
    with pytest.raises(ValueError, match=name):
        StereoCameraModel(**values)


def test_camera_model_defaults_and_scaling():
    camera = StereoCameraModel(500.0, 320.0, 240.0, 0.005)
    assert camera.fy == 500.0 and camera.cx_right == 320.0 and camera.principal_point_offset == 0.0
    assert camera.focal_px == camera.fx
    half = StereoCameraModel(**MOTORCYCLE_Q).scaled(0.5)
    assert (half.fx, half.cx, half.cx_right, half.baseline_m) == pytest.approx((499.7105, 147.091, 163.48, 0.193001))
    assert half.disparity_offset_px == pytest.approx(32.778 / 2)


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
