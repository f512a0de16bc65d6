"""Stereo bags without ROS: writing from arrays and folders, reading back with rosbags, and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from stereo_depth_ros import cli
from stereo_depth_ros.data import bag_io, stereo_bag
from stereo_depth_ros.evaluation import readers
from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA, load_skimage_motorcycle
from stereo_depth_ros.evaluation.readers import write_pfm

START_NS = 1_700_000_000_000_000_000
CALIBRATION = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)  # the calibration of the motorcycle_small pair


def read_all(path: Path) -> dict[str, list]:
    """topic -> [(log time, rosbags message)] read with rosbags' own Reader and the bag's own definitions."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        for connection in reader.connections:
            store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        for connection, timestamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(
                (timestamp, store.deserialize_cdr(raw, connection.msgtype)))
    return messages


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def small_pair(motorcycle_small):
    left, right, disparity = motorcycle_small
    depth = np.full(disparity.shape, np.nan, np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    depth[valid] = CALIBRATION.fx * CALIBRATION.baseline_m / (disparity[valid] + CALIBRATION.disparity_offset_px)
    return left, right, depth


def test_round_trip_from_arrays(tmp_path, small_pair):
    left, right, depth = small_pair
    frames = 3
    lefts = [np.roll(left, i, axis=1) for i in range(frames)]  # distinct frames, to check the order
    summary = stereo_bag.write_stereo_bag(tmp_path / "bag", lefts, [right] * frames, CALIBRATION,
                                    gt_depths=[depth] * frames, rate_hz=4.0, start_stamp_ns=START_NS)
    assert summary.frames == frames and summary.has_gt_depth
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and list((tmp_path / "bag").glob("*.mcap"))

    messages = read_all(tmp_path / "bag")
    assert set(messages) == set(stereo_bag.INPUT_TOPICS) | {stereo_bag.GT_DEPTH_TOPIC}
    expected_stamps = [START_NS + i * 250_000_000 for i in range(frames)]
    for topic, items in messages.items():
        assert [stamp(m) for _, m in items] == expected_stamps, topic
        assert [t for t, _ in items] == expected_stamps, f"{topic}: log time must equal the header stamp"

    h, w = left.shape[:2]
    for (_, left_info), (_, right_info) in zip(messages[stereo_bag.LEFT_INFO_TOPIC],
                                               messages[stereo_bag.RIGHT_INFO_TOPIC]):
        assert (left_info.width, left_info.height) == (w, h)
        np.testing.assert_allclose(left_info.k, [CALIBRATION.fx, 0, CALIBRATION.cx, 0, CALIBRATION.fy,
                                                 CALIBRATION.cy, 0, 0, 1])
        assert left_info.p[3] == 0.0
        np.testing.assert_allclose(right_info.p[3], -CALIBRATION.fx * CALIBRATION.baseline_m, rtol=1e-12)
        np.testing.assert_allclose(right_info.p[[0, 5, 6]], left_info.p[[0, 5, 6]])
        # each camera keeps its own principal point (image_geometry's cx_left - cx_right offset)
        assert right_info.p[2] == pytest.approx(CALIBRATION.cx_right) and right_info.k[2] == right_info.p[2]
        assert right_info.p[2] - left_info.p[2] == pytest.approx(31.086 / 4)
        assert left_info.header.frame_id == "stereo_left_optical_frame"
        assert right_info.header.frame_id == "stereo_right_optical_frame"

    for i, (_, image) in enumerate(messages[stereo_bag.LEFT_IMAGE_TOPIC]):
        assert image.encoding == "bgr8" and image.step == 3 * w
        np.testing.assert_array_equal(np.asarray(image.data).reshape(h, w, 3), lefts[i])
    for _, gt in messages[stereo_bag.GT_DEPTH_TOPIC]:
        assert gt.encoding == "32FC1"
        values = np.frombuffer(bytes(gt.data), dtype="<f4").reshape(h, w)
        np.testing.assert_array_equal(np.isnan(values), np.isnan(depth))
        np.testing.assert_allclose(values[np.isfinite(values)], depth[np.isfinite(depth)], rtol=1e-6)

    inspected = stereo_bag.inspect_stereo_bag(tmp_path / "bag")
    assert inspected.frames == frames and inspected.rate_hz == pytest.approx(4.0)
    assert inspected.calibration.baseline_m == pytest.approx(CALIBRATION.baseline_m, rel=1e-12)
    assert inspected.calibration == CALIBRATION, "camera_info -> StereoCameraModel gives the model back"


def write_folder(folder: Path, names: list[str], images: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images):
        cv2.imwrite(str(folder / name), image)


@pytest.mark.parametrize("gt_format", ["npy", "png16", "pfm"])
def test_make_bag_from_folders_with_gt_disparity(tmp_path, gt_format):
    rng = np.random.default_rng(0)
    names = ["10.png", "2.png", "1.png"]  # natural order: 1, 2, 10
    order = [2, 1, 0]
    images = [np.full((24, 32, 3), 40 * (i + 1), np.uint8) for i in range(3)]
    write_folder(tmp_path / "left", names, images)
    write_folder(tmp_path / "right", names, images)
    disparities = [np.round(rng.uniform(4, 20, (24, 32)) * 256) / 256 for _ in range(3)]
    for d in disparities:
        d[0, :5] = 0.0  # unknown
    (tmp_path / "gt").mkdir()
    for name, d in zip(names, disparities):
        stem = Path(name).stem
        if gt_format == "npy":
            np.save(tmp_path / "gt" / f"{stem}.npy", d.astype(np.float32))
        elif gt_format == "png16":
            cv2.imwrite(str(tmp_path / "gt" / f"{stem}.png"), (d * 256).astype(np.uint16))
        else:
            write_pfm(tmp_path / "gt" / f"{stem}.pfm", d.astype(np.float32))
    # the right camera's principal point is 4 px right of the left one: doffs = 4 px, Z = f B / (d + doffs)
    summary = stereo_bag.make_bag_from_folders(tmp_path / "left", tmp_path / "right", tmp_path / "bag",
                                               focal_px=100.0, baseline_m=0.005, cx_right=20.0,
                                               gt_disparity_dir=tmp_path / "gt", rate_hz=2.0,
                                               start_stamp_ns=START_NS, progress=False)
    assert summary.frames == 3 and summary.calibration.cx == 16.0 and summary.calibration.cy == 12.0
    assert summary.calibration.disparity_offset_px == 4.0
    messages = read_all(tmp_path / "bag")
    for k, ((_, image), (_, gt)) in enumerate(zip(messages[stereo_bag.LEFT_IMAGE_TOPIC],
                                                  messages[stereo_bag.GT_DEPTH_TOPIC])):
        source = order[k]
        assert np.asarray(image.data)[0] == 40 * (source + 1), "images must follow natural file-name order"
        depth = np.frombuffer(bytes(gt.data), dtype="<f4").reshape(24, 32)
        with np.errstate(divide="ignore"):
            expected = 100.0 * 0.005 / (disparities[source] + 4.0)
        assert np.isnan(depth[0, :5]).all()
        np.testing.assert_allclose(depth[:, 5:][np.isfinite(depth[:, 5:])], expected[:, 5:].ravel(), rtol=1e-5)
        assert stamp(gt) == START_NS + k * 500_000_000


def test_make_bag_with_camera_info_yaml(tmp_path):
    images = [np.zeros((20, 30, 3), np.uint8)] * 2
    write_folder(tmp_path / "l", ["a.png", "b.png"], images)
    write_folder(tmp_path / "r", ["a.png", "b.png"], images)

    def write_yaml(path, tx):
        path.write_text(yaml.safe_dump({
            "image_width": 30, "image_height": 20, "camera_name": "x", "distortion_model": "plumb_bob",
            "camera_matrix": {"rows": 3, "cols": 3, "data": [500, 0, 14.5, 0, 501, 9.5, 0, 0, 1]},
            "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0, 0, 0, 0, 0]},
            "rectification_matrix": {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
            "projection_matrix": {"rows": 3, "cols": 4, "data": [500, 0, 14.5, tx, 0, 501, 9.5, 0, 0, 0, 1, 0]}}))

    write_yaml(tmp_path / "left.yaml", 0.0)
    write_yaml(tmp_path / "right.yaml", -500 * 0.0043)
    summary = stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "bag",
                                         camera_info_yamls=(tmp_path / "left.yaml", tmp_path / "right.yaml"),
                                         progress=False, start_stamp_ns=START_NS)
    assert summary.calibration.baseline_m == pytest.approx(0.0043)
    assert summary.calibration.fy == 501
    right_info = read_all(tmp_path / "bag")[stereo_bag.RIGHT_INFO_TOPIC][0][1]
    assert right_info.p[3] == pytest.approx(-2.15) and right_info.k[4] == 501

    with pytest.raises(ValueError, match="P\\[3\\]"):  # swapped files: the "right" one has no baseline
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "bag2",
                                   camera_info_yamls=(tmp_path / "right.yaml", tmp_path / "left.yaml"),
                                   progress=False)
    write_yaml(tmp_path / "left.yaml", 0.0)
    (tmp_path / "small.yaml").write_text((tmp_path / "left.yaml").read_text().replace("image_width: 30",
                                                                                     "image_width: 64"))
    with pytest.raises(ValueError, match="'width' x 'height' differ: left 64 x 20, right 30 x 20"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "bag3",
                                         camera_info_yamls=(tmp_path / "small.yaml", tmp_path / "right.yaml"),
                                         progress=False)
    (tmp_path / "small_right.yaml").write_text((tmp_path / "right.yaml").read_text().replace("image_width: 30",
                                                                                             "image_width: 64"))
    with pytest.raises(ValueError, match="64x20"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "bag3",
                                         camera_info_yamls=(tmp_path / "small.yaml", tmp_path / "small_right.yaml"),
                                         progress=False)


def encode_bdis(depth_units: np.ndarray) -> np.ndarray:
    """The BDIS files' encoding: the integer part n of the depth in green as round(2.55 n), the fraction in red
    as round(255 f), blue 0 (readers.decode_bdis_depth)."""
    integer = np.floor(depth_units)
    green = np.round(2.55 * integer).clip(0, 255)
    red = np.round(255.0 * (depth_units - integer)).clip(0, 255)
    return np.dstack([np.zeros_like(green), green, red]).astype(np.uint8)


def test_bdis_depth_encoding(tmp_path):
    depth_cm = np.linspace(2.0, 15.0, 12 * 16).reshape(12, 16)
    encoded = encode_bdis(depth_cm)
    write_folder(tmp_path / "l", ["1.png", "2.png"], [np.zeros((12, 16, 3), np.uint8)] * 2)
    write_folder(tmp_path / "r", ["1.png", "2.png"], [np.zeros((12, 16, 3), np.uint8)] * 2)
    (tmp_path / "gt").mkdir()
    # BDIS set 32 naming: image k.png <-> depth_{k-1}; paired by natural-sort position
    cv2.imwrite(str(tmp_path / "gt" / "depth_0000000.png"), encoded)
    cv2.imwrite(str(tmp_path / "gt" / "depth_0000001.png"), encode_bdis(depth_cm * 0.5))
    stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "bag", focal_px=520.0, baseline_m=0.005,
                               gt_depth_dir=tmp_path / "gt", depth_scale=0.01, gt_depth_encoding="bdis",
                               progress=False)
    gts = read_all(tmp_path / "bag")[stereo_bag.GT_DEPTH_TOPIC]
    first = np.frombuffer(bytes(gts[0][1].data), dtype="<f4").reshape(12, 16)
    second = np.frombuffer(bytes(gts[1][1].data), dtype="<f4").reshape(12, 16)
    np.testing.assert_allclose(first, depth_cm / 100.0, atol=0.5 / 255 / 100 + 1e-7)  # red holds 1/255 steps
    np.testing.assert_allclose(second, depth_cm * 0.5 / 100.0, atol=0.5 / 255 / 100 + 1e-7)
    with pytest.raises(ValueError, match="8-bit|uint8"):  # without the bdis encoding an 8-bit PNG is refused
        readers.read_depth(tmp_path / "gt" / "depth_0000000.png", 0.01)


def test_bdis_synthetic_set_32_pairs_depth_by_position(tmp_path, shared_data):
    source = shared_data / "endoscopic_stereo" / "bdis_synthetic" / "32"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    for side in ("left", "right"):
        (tmp_path / side).mkdir()
        for k in (1, 2):
            os.symlink(source / "images_rectified" / side / f"{k}.png", tmp_path / side / f"{k}.png")
    (tmp_path / "gt").mkdir()
    for k in (0, 1):
        os.symlink(source / f"depth_{k:07d}.png", tmp_path / "gt" / f"depth_{k:07d}.png")
    stereo_bag.make_bag_from_folders(tmp_path / "left", tmp_path / "right", tmp_path / "bag", focal_px=520.0,
                               cx=320.0, cy=240.0, baseline_m=0.005, gt_depth_dir=tmp_path / "gt",
                               depth_scale=0.01, gt_depth_encoding="bdis", progress=False)
    gts = read_all(tmp_path / "bag")[stereo_bag.GT_DEPTH_TOPIC]
    first = np.frombuffer(bytes(gts[0][1].data), dtype="<f4").reshape(480, 640)
    bgr = cv2.imread(str(source / "depth_0000000.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
    # the integer part of the depth (cm) in green as round(2.55 n), the fraction in red; 50 cm = the far limit
    expected_cm = np.round(bgr[..., 1] / 2.55) + bgr[..., 2] / 255
    expected_cm[expected_cm >= 50] = np.nan
    np.testing.assert_allclose(first, expected_cm / 100, rtol=1e-5)  # NaN where unknown, in both
    assert 0.01 < np.nanmedian(first) < 0.2  # a colon seen from a few centimetres


def test_bad_folders(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    write_folder(tmp_path / "l", ["1.png", "2.png"], [image, image])
    write_folder(tmp_path / "r", ["1.png", "3.png"], [image, image])
    with pytest.raises(FileNotFoundError, match="missing"):
        stereo_bag.make_bag_from_folders(tmp_path / "missing", tmp_path / "r", tmp_path / "b", focal_px=1, baseline_m=1)
    with pytest.raises(ValueError, match=r"only left: \['2.png'\].*only right: \['3.png'\]"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r", tmp_path / "b", focal_px=1, baseline_m=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        stereo_bag.make_bag_from_folders(tmp_path / "empty", tmp_path / "r", tmp_path / "b", focal_px=1, baseline_m=1)
    write_folder(tmp_path / "r2", ["1.png", "2.png"], [image, image])
    with pytest.raises(ValueError, match="calibration"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b")
    (tmp_path / "gt").mkdir()
    np.save(tmp_path / "gt" / "x.npy", np.ones((8, 8)))
    with pytest.raises(ValueError, match="1 files for 2 images"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b", focal_px=1, baseline_m=1,
                                   gt_disparity_dir=tmp_path / "gt")
    np.save(tmp_path / "gt" / "y.npy", np.ones((4, 4)))
    with pytest.raises(ValueError, match="ground-truth depth is 4x4"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b", focal_px=1, baseline_m=1,
                                   gt_disparity_dir=tmp_path / "gt", progress=False)
    assert not (tmp_path / "b").exists(), "a failed write must not leave a half-written bag"
    stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b", focal_px=1, baseline_m=1,
                               progress=False)
    with pytest.raises(ValueError, match="already exists"):
        stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b", focal_px=1, baseline_m=1)
    assert stereo_bag.make_bag_from_folders(tmp_path / "l", tmp_path / "r2", tmp_path / "b", focal_px=1, baseline_m=1,
                                      overwrite=True, progress=False).frames == 2


def test_truncated_and_foreign_bags(tmp_path, small_pair):
    left, right, _ = small_pair
    stereo_bag.write_stereo_bag(tmp_path / "bag", [left] * 2, [right] * 2, CALIBRATION, start_stamp_ns=START_NS)
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        stereo_bag.inspect_stereo_bag(tmp_path / "bag")
    with pytest.raises(FileNotFoundError):
        stereo_bag.inspect_stereo_bag(tmp_path / "nothing")

    recorder = bag_io.RawBagRecorder(tmp_path / "other", {"/chatter": "std_msgs/msg/String"})
    store = bag_io.typestore()
    recorder.write("/chatter", 5, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"),
                                                      "std_msgs/msg/String"))
    recorder.close()
    with pytest.raises(ValueError, match=r"lacks the stereo topics.*'/chatter'"):
        stereo_bag.inspect_stereo_bag(tmp_path / "other")


def test_cli_make_bag_and_errors(tmp_path, capsys):
    image = np.zeros((8, 12, 3), np.uint8)
    write_folder(tmp_path / "l", ["1.png"], [image])
    write_folder(tmp_path / "r", ["1.png"], [image])
    assert cli.main(["make-bag", "--left", str(tmp_path / "l"), "--right", str(tmp_path / "r"), "--focal-px", "50",
                     "--baseline-m", "0.004", "--cx", "5", "--out", str(tmp_path / "bag")]) == 0
    assert "1 stereo pairs" in capsys.readouterr().out
    info = read_all(tmp_path / "bag")[stereo_bag.LEFT_INFO_TOPIC][0][1]
    assert info.k[2] == 5.0 and info.k[5] == 4.0
    assert cli.main(["make-bag", "--left", str(tmp_path / "nope"), "--right", str(tmp_path / "r"), "--focal-px",
                     "50", "--baseline-m", "0.004", "--out", str(tmp_path / "bag2")]) == 2
    error = capsys.readouterr().err
    assert "nope" in error and "Traceback" not in error
    assert cli.main(["make-bag", "--left", str(tmp_path / "l"), "--right", str(tmp_path / "r"), "--focal-px", "50",
                     "--out", str(tmp_path / "bag3")]) == 2
    assert "--baseline-m" in capsys.readouterr().err


def test_motorcycle_loader_and_calibration():
    left, right, disparity = load_skimage_motorcycle(0.5)
    camera = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.5)
    assert left.shape == right.shape == (250, 370, 3) and disparity.shape == (250, 370)
    assert camera.fx == pytest.approx(994.978 * 0.5) and camera.baseline_m == 0.193001
    assert camera.disparity_offset_px == pytest.approx(31.086 * 0.5), "scikit-image's principal point dx"
    depth = camera.depth_from_disparity(disparity)
    # Z = f B / (d + doffs) at that scale: the nearest point has the largest disparity (~60 px at full size)
    assert np.nanmin(depth) == pytest.approx(994.978 * 0.193001 / (60.0 + 31.086), rel=0.1)
    assert np.all(depth[np.isfinite(depth)] > 0), "unknown disparity (NaN or inf) must give NaN depth, not 0"
    assert 0.05 < np.isnan(depth).mean() < 0.15  # about 7 % of the pixels have no ground truth
    with pytest.raises(ValueError, match="scale"):
        load_skimage_motorcycle(1.5)
