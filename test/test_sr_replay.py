"""The replay of the super-resolution node (issue 12): a super-resolution bag (LR pair in, HR pair as reference),
the frame spec and the PSNR/SSIM scorer, and a real replay of scikit-image's Motorcycle pair through the node.

The packaged stereo-sr-x2 weights beat bicubic on this (non-endoscopic) pair at 1/4 size (about +0.8 dB offline), so
the replay test asserts the replayed PSNR is above bicubic's on the same frames, and equal (within 0.05 dB) to the
offline estimator's PSNR on the same LR pair.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from stereo_depth_ros.data import bag_io
from stereo_depth_ros.data.stereo_bag import (CameraInfoData, GT_LEFT_IMAGE_TOPIC, GT_RIGHT_IMAGE_TOPIC,
                                              LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, RIGHT_IMAGE_TOPIC, RIGHT_INFO_TOPIC,
                                              camera_info_from_message, inspect_stereo_bag, scale_down_camera_info,
                                              stereo_camera_infos, write_super_resolution_bag)
from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA
from stereo_depth_ros.evaluation.scorers import create_scorer
from stereo_depth_ros.evaluation.sr_metrics import pair_metrics
from stereo_depth_ros.models.stereo_sr import bicubic_downscale, bicubic_upscale

SCALE = 2
MOTORCYCLE_RESIZE = 0.25  # 185 x 125 HR (cropped to 184 x 124), 92 x 62 LR: fast


def read_images(bag, topic):
    return {stamp: bag_io.image_to_array(bag_io.deserialize(raw, bag_io.IMAGE_TYPE))
            for stamp, raw in bag_io.read_topic_by_stamp(bag, topic).items()}


@pytest.fixture(scope="module")
def motorcycle_sr_bag(tmp_path_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    path = tmp_path_factory.mktemp("sr_bag") / "bag"
    summary = write_super_resolution_bag(path, [left, left], [right, right],
                                         SKIMAGE_MOTORCYCLE_CAMERA.scaled(MOTORCYCLE_RESIZE), SCALE,
                                         bicubic_downscale, rate_hz=2.0, start_stamp_ns=1_000_000_000)
    return path, summary, left, right


def test_the_bag_holds_the_bicubic_lr_pair_and_the_hr_reference(motorcycle_sr_bag):
    path, summary, left, right = motorcycle_sr_bag
    hr_left, hr_right = left[:124, :184], right[:124, :184]
    assert (summary.width, summary.height, summary.frames) == (92, 62, 2)
    lr_left, lr_right = read_images(path, LEFT_IMAGE_TOPIC), read_images(path, RIGHT_IMAGE_TOPIC)
    references = read_images(path, GT_LEFT_IMAGE_TOPIC), read_images(path, GT_RIGHT_IMAGE_TOPIC)
    assert sorted(lr_left) == sorted(references[0]) == sorted(references[1]) == [1_000_000_000, 1_500_000_000]
    for stamp in lr_left:
        np.testing.assert_array_equal(lr_left[stamp], bicubic_downscale(hr_left, SCALE))
        np.testing.assert_array_equal(lr_right[stamp], bicubic_downscale(hr_right, SCALE))
        np.testing.assert_array_equal(references[0][stamp], hr_left)
        np.testing.assert_array_equal(references[1][stamp], hr_right)
    # camera_info of the LR images: the HR calibration scaled by 1/2, the baseline unchanged
    hr_camera = SKIMAGE_MOTORCYCLE_CAMERA.scaled(MOTORCYCLE_RESIZE)
    lr_camera = inspect_stereo_bag(path).calibration
    assert lr_camera.fx == pytest.approx(hr_camera.fx / SCALE)
    assert lr_camera.cx_right == pytest.approx(hr_camera.cx_right / SCALE)
    assert lr_camera.baseline_m == pytest.approx(hr_camera.baseline_m)


def test_scale_down_is_the_inverse_of_the_node_scale_up():
    pytest.importorskip("rclpy", reason="the node's camera_info scaling needs the ROS 2 message packages")
    from sensor_msgs.msg import CameraInfo

    from stereo_depth_ros.ros.sr_node import scale_camera_info

    left, right = stereo_camera_infos(SKIMAGE_MOTORCYCLE_CAMERA, 740, 500)
    for hr in (left, right):
        lr = scale_down_camera_info(hr, 4)
        assert (lr.width, lr.height) == (185, 125)
        message = CameraInfo(width=lr.width, height=lr.height, k=list(lr.k), d=list(lr.d), r=list(lr.r),
                             p=list(lr.p), distortion_model=lr.distortion_model)
        back = camera_info_from_message(scale_camera_info(message, 4))
        assert (back.width, back.height) == (hr.width, hr.height)
        np.testing.assert_allclose(back.k, hr.k)
        np.testing.assert_allclose(back.p, hr.p)
    with pytest.raises(ValueError, match="not a multiple of the scale 3"):
        scale_down_camera_info(left, 3)
    with pytest.raises(ValueError, match="positive integer"):
        scale_down_camera_info(left, 0)


def test_bad_super_resolution_bags_are_refused(tmp_path, motorcycle_small):
    left, right, _ = motorcycle_small
    camera = SKIMAGE_MOTORCYCLE_CAMERA.scaled(MOTORCYCLE_RESIZE)
    with pytest.raises(ValueError, match="integer >= 2"):
        write_super_resolution_bag(tmp_path / "a", [left], [right], camera, 1, bicubic_downscale)
    with pytest.raises(ValueError, match="not 1/2 of it"):
        write_super_resolution_bag(tmp_path / "b", [left], [right], camera, 2, lambda image, scale: image)
    wrong = CameraInfoData(640, 480, (1.0, 0, 320, 0, 1, 240, 0, 0, 1), (), tuple(np.eye(3).ravel()),
                           (1.0, 0, 320, 0, 0, 1, 240, 0, 0, 0, 1, 0))
    with pytest.raises(ValueError, match="does not fit HR images"):
        write_super_resolution_bag(tmp_path / "c", [left], [right], (wrong, wrong), 2, bicubic_downscale)
    assert not (tmp_path / "b").exists()  # no half-written bag left behind


def test_make_bag_command_writes_a_super_resolution_bag(tmp_path, motorcycle_small, capsys):
    import cv2

    from stereo_depth_ros.cli import main

    left, right, _ = motorcycle_small
    for side, image in (("left", left), ("right", right)):
        (tmp_path / side).mkdir()
        cv2.imwrite(str(tmp_path / side / "000.png"), image)
    arguments = ["make-bag", "--left", str(tmp_path / "left"), "--right", str(tmp_path / "right"), "--focal-px",
                 "250", "--baseline-m", "0.005", "--super-resolution-scale", "4", "--out", str(tmp_path / "bag")]
    assert main(arguments) == 0
    assert "HR pairs as reference" in capsys.readouterr().out
    summary = inspect_stereo_bag(tmp_path / "bag")
    assert (summary.width, summary.height) == (46, 31)
    assert summary.topics[GT_LEFT_IMAGE_TOPIC] == (bag_io.IMAGE_TYPE, 1)
    info = camera_info_from_message(bag_io.deserialize(
        next(iter(bag_io.read_topic_by_stamp(tmp_path / "bag", LEFT_INFO_TOPIC).values())), bag_io.CAMERA_INFO_TYPE))
    # the default cx is W / 2 of the HR image before the crop to multiples of 4 (the crop keeps the top-left corner)
    assert info.k[0] == pytest.approx(250 / 4) and info.k[2] == pytest.approx(185 / 2 / 4)
    assert read_images(tmp_path / "bag", GT_RIGHT_IMAGE_TOPIC).popitem()[1].shape == (124, 184, 3)
    capsys.readouterr()
    assert main(arguments[:-2] + ["--gt-depth", str(tmp_path), "--out", str(tmp_path / "other")]) != 0
    assert "takes no --gt-depth" in capsys.readouterr().err


def test_the_scorer_compares_each_view_with_its_own_reference(motorcycle_small):
    left, right, _ = motorcycle_small
    left, right = left[:124, :184], right[:124, :184]
    scorer = create_scorer("super-resolution")
    bicubic = bicubic_upscale(bicubic_downscale(left, 2), 2), bicubic_upscale(bicubic_downscale(right, 2), 2)
    truth = {"left_image": left, "right_image": right}
    row = scorer.score({"left_image": bicubic[0], "right_image": bicubic[1]}, truth, None)
    offline = pair_metrics(bicubic[0], bicubic[1], left, right)
    for key in ("psnr_db", "psnr_left_db", "psnr_right_db", "ssim", "ssim_left", "ssim_right"):
        assert row[key] == pytest.approx(offline[key])
    swapped = scorer.score({"left_image": bicubic[1], "right_image": bicubic[0]}, truth, None)
    assert swapped["psnr_db"] < row["psnr_db"] - 3.0  # a swapped pair is caught
    one_view = scorer.score({"left_image": bicubic[0]}, truth, None)
    assert one_view["psnr_left_db"] == pytest.approx(row["psnr_left_db"]) and one_view["psnr_db"] is None
    with pytest.raises(ValueError, match="left super-resolved image is"):
        scorer.score({"left_image": left[:62, :92]}, truth, None)
    with pytest.raises(ValueError, match="needs an output and a reference"):
        scorer.score({"depth": np.zeros((4, 4), np.float32)}, truth, None)


def test_replay_through_the_node_beats_bicubic_and_equals_the_offline_psnr(tmp_path, motorcycle_sr_bag):
    pytest.importorskip("rclpy", reason="the replay needs the ROS 2 Python packages (rclpy, ...)")
    from stereo_depth_ros.models.registry import create_estimator
    from stereo_depth_ros.ros.replay import frame_spec, replay_bag

    path, _, left, right = motorcycle_sr_bag
    hr_left, hr_right = left[:124, :184], right[:124, :184]
    lr_left, lr_right = bicubic_downscale(hr_left, SCALE), bicubic_downscale(hr_right, SCALE)
    bicubic = pair_metrics(bicubic_upscale(lr_left, SCALE), bicubic_upscale(lr_right, SCALE), hr_left, hr_right)
    offline = pair_metrics(*create_estimator("stereo-sr-x2", backend="torch").super_resolve(lr_left, lr_right),
                           hr_left, hr_right)

    params = tmp_path / "sr.yaml"
    params.write_text("/**/super_resolution_node:\n  ros__parameters:\n    model: stereo-sr-x2\n    backend: torch\n"
                      "    input_qos: reliable\n")
    assert frame_spec("super_resolution_node").scorers == ("super-resolution",)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    report = replay_bag(path, tmp_path / "out", params_file=params, progress=False, frame_timeout_s=60.0)
    assert report["node_kind"] == "super_resolution_node"
    assert (report["frames_in"], report["frames_out"], report["dropped_frames"]) == (2, 2, 0)
    assert report["stamps_preserved"]
    metrics = report["metrics"]
    assert metrics["frames_evaluated"] == 2
    assert metrics["psnr_db"] > bicubic["psnr_db"] + 0.3, (metrics, bicubic)
    for key in ("psnr_db", "psnr_left_db", "psnr_right_db"):
        assert metrics[key] == pytest.approx(offline[key], abs=0.05)
    assert metrics["ssim"] == pytest.approx(offline["ssim"], abs=1e-3)
    # the node's scaled camera_info is the HR pair's camera_info
    outputs = tmp_path / "out" / "outputs"
    infos = {side: camera_info_from_message(bag_io.deserialize(next(iter(bag_io.read_topic_by_stamp(
        outputs, f"/stereo/super_resolved/{side}/camera_info").values())), bag_io.CAMERA_INFO_TYPE))
        for side in ("left", "right")}
    hr_infos = stereo_camera_infos(SKIMAGE_MOTORCYCLE_CAMERA.scaled(MOTORCYCLE_RESIZE), 184, 124)
    for info, hr in zip((infos["left"], infos["right"]), hr_infos):
        assert (info.width, info.height) == (184, 124)
        np.testing.assert_allclose(info.p, hr.p, rtol=1e-9)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "PSNR left (dB)" in markdown and "PSNR right (dB)" in markdown and "(left + right) / 2" in markdown
    assert (tmp_path / "out" / "contact_sheet.png").is_file()
    assert RIGHT_IMAGE_TOPIC in report["messages_in"] and RIGHT_INFO_TOPIC in report["messages_in"]
