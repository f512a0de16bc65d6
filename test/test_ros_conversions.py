"""Message conversions of the ROS layer (pure functions, no node, no spinning)."""

from __future__ import annotations

import array

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, sensor_msgs, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from stereo_depth_ros.geometry import StereoCameraModel, disparity_to_depth, reproject_disparity_to_points  # noqa: E402
from stereo_depth_ros.ros import conversions  # noqa: E402
from stereo_depth_ros.ros.conversions import InputError  # noqa: E402

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="left_camera_optical_frame")


def _padded_image(pixels: np.ndarray, encoding: str, padding: int, bigendian: bool = False) -> Image:
    """An Image built by hand (not by numpy_to_image) with ``padding`` garbage bytes at the end of every row."""
    dtype, channels = conversions.ENCODINGS[encoding]
    wire = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(pixels.shape[0], -1).view(np.uint8)
    garbage = np.full((pixels.shape[0], padding), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, garbage], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=bigendian,
                step=data.shape[1])
    msg.data = array.array("B", data.tobytes())
    return msg


@pytest.mark.parametrize("encoding", list(conversions.ENCODINGS))
def test_numpy_image_round_trip_keeps_pixels(encoding, motorcycle_small):
    left = motorcycle_small[0]
    dtype, channels = conversions.ENCODINGS[encoding]
    if channels == 1:
        pixels = left[..., 1].astype(dtype) * (257 if encoding == "mono16" else 1)
    elif channels == 3:
        pixels = left
    else:
        pixels = np.dstack([left, np.arange(left.size // 3, dtype=np.uint8).reshape(left.shape[:2])])
    if encoding == "32FC1":
        pixels = pixels.astype(np.float32) / 7.0
        pixels[3, 5] = np.nan
    msg = conversions.numpy_to_image(pixels, encoding, HEADER)
    assert (msg.height, msg.width, msg.encoding) == (left.shape[0], left.shape[1], encoding)
    assert msg.step == left.shape[1] * channels * dtype.itemsize
    assert msg.header.stamp == HEADER.stamp and msg.header.frame_id == HEADER.frame_id
    decoded = conversions.image_to_numpy(msg)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "mono16", "32FC1", "rgba8"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_to_numpy_honours_step_padding_and_byte_order(encoding, bigendian, motorcycle_small):
    dtype, channels = conversions.ENCODINGS[encoding]
    rng = np.random.default_rng(0)
    shape = (9, 13) if channels == 1 else (9, 13, channels)
    if dtype.kind == "f":
        pixels = rng.normal(size=shape).astype(dtype)
    else:
        pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    msg = _padded_image(pixels, encoding, padding=6, bigendian=bigendian)
    np.testing.assert_array_equal(conversions.image_to_numpy(msg), pixels)


def test_image_to_bgr8_reorders_channels_of_real_images(motorcycle_small):
    bgr = motorcycle_small[0]
    rgb = bgr[..., ::-1]
    np.testing.assert_array_equal(conversions.image_to_bgr8(conversions.numpy_to_image(bgr, "bgr8")), bgr)
    np.testing.assert_array_equal(conversions.image_to_bgr8(conversions.numpy_to_image(rgb, "rgb8")), bgr)
    alpha = np.full(bgr.shape[:2] + (1,), 200, np.uint8)
    np.testing.assert_array_equal(
        conversions.image_to_bgr8(conversions.numpy_to_image(np.concatenate([bgr, alpha], 2), "bgra8")), bgr)
    np.testing.assert_array_equal(
        conversions.image_to_bgr8(conversions.numpy_to_image(np.concatenate([rgb, alpha], 2), "rgba8")), bgr)
    grey = bgr[..., 1]
    mono = conversions.image_to_bgr8(conversions.numpy_to_image(grey, "mono8"))
    assert mono.shape == bgr.shape and all(np.array_equal(mono[..., c], grey) for c in range(3))
    mono16 = conversions.image_to_bgr8(conversions.numpy_to_image(grey.astype(np.uint16) * 256 + 255, "mono16"))
    np.testing.assert_array_equal(mono16[..., 0], grey)


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "16UC3", ""])
def test_unsupported_encoding_is_a_clear_error(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8)
    msg.data = array.array("B", bytes(16))
    with pytest.raises(InputError, match="encoding") as caught:
        conversions.image_to_bgr8(msg, "left/image_rect")
    assert caught.value.kind == "encoding"
    assert "left/image_rect" in str(caught.value) and repr(encoding) in str(caught.value)


def test_float_image_with_nan_is_rejected_as_camera_input():
    depth = np.full((4, 5), np.nan, np.float32)
    msg = conversions.numpy_to_image(depth, "32FC1")
    with pytest.raises(InputError, match="float image") as caught:
        conversions.image_to_bgr8(msg, "right/image_rect")
    assert caught.value.kind == "encoding" and "'encoding'" in str(caught.value)
    assert np.isnan(conversions.image_to_numpy(msg)).all()  # decoding it as a float image still works


@pytest.mark.parametrize("height, width, step, nbytes, kind, field", [
    (0, 0, 0, 0, "empty_image", "'height'"),
    (4, 5, 15, 0, "empty_image", "'data'"),
    (4, 5, 14, 60, "image_layout", "'step'"),
    (4, 5, 15, 59, "image_layout", "'data'"),
])
def test_malformed_images_name_the_field(height, width, step, nbytes, kind, field):
    msg = Image(height=height, width=width, encoding="bgr8", step=step)
    msg.data = array.array("B", bytes(nbytes))
    with pytest.raises(InputError) as caught:
        conversions.image_to_bgr8(msg, "left/image_rect")
    assert caught.value.kind == kind and field in str(caught.value)


def _camera_info(fx=400.0, fy=401.0, cx=92.0, cy=62.0, tx=0.0, width=185, height=125) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_camera_info_calibration_reads_focal_length_baseline_and_principal_points():
    camera = conversions.camera_info_calibration(_camera_info(cx=92.0), _camera_info(cx=90.5, tx=-400.0 * 0.12))
    assert camera.problem is None
    assert camera.focal_px == pytest.approx(400.0) and camera.baseline_m == pytest.approx(0.12)
    assert camera.principal_point_offset_px == pytest.approx(1.5)
    c = camera.calibration
    assert (c.fx, c.cx, c.cy, c.baseline_m, c.fy, c.cx_right) == pytest.approx((400.0, 92.0, 62.0, 0.12, 401.0, 90.5))
    assert c == StereoCameraModel.from_camera_info(_camera_info(cx=92.0), _camera_info(cx=90.5, tx=-48.0))
    # the node's image disparity d = x_l - x_r gives Z = f B / (d - (cx_l - cx_r)), as image_geometry's getZ
    assert c.depth_from_disparity(11.5) == pytest.approx(400.0 * 0.12 / 10.0)


@pytest.mark.parametrize("left, right, field", [
    (CameraInfo(), CameraInfo(), "field 'p'"),
    (_camera_info(), _camera_info(tx=0.0), "P[3]"),
    (_camera_info(), _camera_info(tx=+48.0), "swapped"),
    (_camera_info(fx=0.0), _camera_info(tx=-48.0), "P[0]"),
    (_camera_info(), _camera_info(tx=-48.0, width=640, height=480), "'width' x 'height'"),
])
def test_missing_calibration_names_the_field(left, right, field):
    camera = conversions.camera_info_calibration(left, right)
    assert camera.calibration is None and camera.focal_px == 0.0 and camera.baseline_m == 0.0
    assert field in camera.problem


def test_camera_info_size_mismatch_names_the_fields():
    image = conversions.numpy_to_image(np.zeros((125, 185, 3), np.uint8), "bgr8")
    conversions.check_camera_info_size(_camera_info(), image, "left")
    conversions.check_camera_info_size(CameraInfo(), image, "left")  # size not set: accepted
    with pytest.raises(InputError, match="'width' x 'height' = 640 x 480") as caught:
        conversions.check_camera_info_size(_camera_info(width=640, height=480), image, "right")
    assert caught.value.kind == "camera_info_size" and "right" in str(caught.value)


def test_disparity_image_is_filled_like_stereo_image_proc():
    disparity = np.array([[1.5, np.nan], [3.0, 4.0]], np.float32)
    msg = conversions.make_disparity_image(disparity, HEADER, 400.0, 0.12, 0.0, 63.0, 1 / 16, (1, 0, 1, 2))
    assert msg.header == HEADER and msg.image.header == HEADER
    assert msg.image.encoding == "32FC1" and (msg.image.height, msg.image.width) == (2, 2)
    assert (msg.f, msg.t, msg.min_disparity, msg.max_disparity, msg.delta_d) == pytest.approx(
        (400.0, 0.12, 0.0, 63.0, 0.0625))
    window = msg.valid_window
    assert (window.x_offset, window.y_offset, window.width, window.height) == (1, 0, 1, 2)
    np.testing.assert_array_equal(conversions.image_to_numpy(msg.image), disparity)
    whole = conversions.make_disparity_image(disparity, HEADER, 0.0, 0.0, 0.0, 63.0, 1 / 16).valid_window
    assert (whole.width, whole.height) == (2, 2)


def test_point_cloud2_layout_values_and_colours(motorcycle_small):
    left, _, gt_disparity = motorcycle_small
    calibration = StereoCameraModel(fx=400.0, cx=92.0, cy=62.0, baseline_m=0.12)
    points = reproject_disparity_to_points(gt_disparity, calibration)
    msg = conversions.make_point_cloud2(points, HEADER, left)
    h, w = left.shape[:2]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (h, w, 16, 16 * w)
    assert msg.is_dense is False and msg.header == HEADER
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1)]
    cloud = conversions.point_cloud2_to_array(msg)
    valid = np.isfinite(gt_disparity) & (gt_disparity > 0)
    assert 0 < valid.sum() < valid.size  # the real pair has both valid and invalid pixels
    for i, axis in enumerate("xyz"):
        np.testing.assert_array_equal(cloud[axis][valid], points[..., i][valid])
        assert np.isnan(cloud[axis][~valid]).all()
    rgb = cloud["rgb"].view(np.uint32)
    v, u = np.argwhere(valid)[0]
    b, g, r = (int(c) for c in left[v, u])
    assert rgb[v, u] == (r << 16) | (g << 8) | b
    np.testing.assert_array_equal(rgb[valid], conversions.pack_rgb(left)[valid])
    assert np.isnan(cloud["rgb"][~valid]).all()


def test_point_cloud2_without_colour_keeps_the_xyz_layout(motorcycle_small):
    points = np.zeros((3, 4, 3), np.float32)
    points[0, 0] = np.nan
    msg = conversions.make_point_cloud2(points, HEADER, None)
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 16
    cloud = conversions.point_cloud2_to_array(msg)
    assert np.isnan(cloud["z"][0, 0]) and (cloud["z"].ravel()[1:] == 0).all()


def test_output_buffers_are_reused_and_checked(motorcycle_small):
    left, _, gt_disparity = motorcycle_small
    buffers = {}
    depth = np.where(np.isfinite(gt_disparity), 48.0 / gt_disparity, np.nan).astype(np.float32)
    data = conversions.reusable_buffer(buffers, "depth", depth.nbytes)
    first = conversions.numpy_to_image(depth, "32FC1", HEADER, data)
    assert first.data is data  # written in place, no new array
    np.testing.assert_array_equal(conversions.image_to_numpy(first), depth)
    second = conversions.numpy_to_image(depth * 2, "32FC1", HEADER, conversions.reusable_buffer(buffers, "depth",
                                                                                                depth.nbytes))
    assert second.data is data
    np.testing.assert_array_equal(conversions.image_to_numpy(second), depth * 2)
    with pytest.raises(ValueError, match="bytes"):
        conversions.numpy_to_image(depth[:-1], "32FC1", HEADER, data)
    # A cloud built in a reused buffer equals a fresh one, also when the buffer held another cloud before.
    calibration = StereoCameraModel(400.0, 92.0, 62.0, 0.12)
    points = reproject_disparity_to_points(gt_disparity, calibration)
    cloud_data = conversions.reusable_buffer(buffers, "points2", points.shape[0] * points.shape[1] * 16)
    conversions.make_point_cloud2(points * 3, HEADER, left, cloud_data)
    reused = conversions.make_point_cloud2(points, HEADER, left, cloud_data)
    assert reused.data is cloud_data
    assert bytes(reused.data) == bytes(conversions.make_point_cloud2(points, HEADER, left).data)
    with pytest.raises(ValueError, match="point cloud buffer"):
        conversions.make_point_cloud2(points[:-1], HEADER, left[:-1], cloud_data)


def test_point_cloud2_makes_partly_invalid_points_all_nan():
    points = np.ones((2, 3, 3), np.float32)
    points[0, 1, 0] = np.nan  # only x invalid
    points[1, 2, 1] = np.inf  # only y infinite
    cloud = conversions.point_cloud2_to_array(conversions.make_point_cloud2(
        points, HEADER, np.full((2, 3, 3), 7, np.uint8)))
    for axis in ("x", "y", "z", "rgb"):
        assert np.isnan(cloud[axis][0, 1]) and np.isnan(cloud[axis][1, 2]), axis
    assert (cloud["z"][0, 0], cloud["rgb"].view(np.uint32)[0, 0]) == (1.0, 0x070707)


def test_point_cloud2_from_depth_equals_the_core_reprojection(motorcycle_small):
    left, _, gt_disparity = motorcycle_small
    calibration = StereoCameraModel(400.0, 92.0, 62.0, 0.12, fy=410.0)
    unlimited = disparity_to_depth(gt_disparity, 400.0, 0.12)
    # Limits at the quartiles: the real disparities give finite, -inf, +inf and NaN depths.
    min_depth, max_depth = (float(q) for q in np.nanpercentile(unlimited, [25, 75]))
    depth = disparity_to_depth(gt_disparity, 400.0, 0.12, min_depth, max_depth)
    assert np.isposinf(depth).any() and np.isneginf(depth).any() and np.isnan(depth).any()
    fused = conversions.point_cloud2_to_array(conversions.make_point_cloud2_from_depth(
        depth, calibration, HEADER, left))
    core = conversions.point_cloud2_to_array(conversions.make_point_cloud2(
        reproject_disparity_to_points(gt_disparity, calibration, min_depth, max_depth), HEADER, left))
    finite = np.isfinite(depth)
    for axis in ("x", "y", "z"):
        np.testing.assert_allclose(fused[axis][finite], core[axis][finite], rtol=1e-6)
        assert np.isnan(fused[axis][~finite]).all() and np.isnan(core[axis][~finite]).all()
    np.testing.assert_array_equal(fused["rgb"].view(np.uint32)[finite], conversions.pack_rgb(left)[finite])
    assert np.isnan(fused["rgb"][~finite]).all()
    with pytest.raises(ValueError, match="depth must be"):
        conversions.make_point_cloud2_from_depth(depth[None], calibration, HEADER)
