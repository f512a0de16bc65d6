"""The replay of the cross-modal node (issue 14). Input mode "nir": the NIR bag (``make-bag --nir-rgb``), the frame
spec and the "cross-modal" scorer (masked PSNR, SSIM, angular colour error), and a real replay through the node.
Input mode "nir-rgb-pair": the NIR/RGB stereo bag (``make-bag --nir-rgb --stereo-shift``), the frame spec chosen by
``input_mode``, and a real replay whose disparity EPE equals the offline pipeline's.

The translation network is an untrained generator written by ``cross_modal.save_generator`` (fixed seed): the test
checks the wiring, not the translation's quality. The replay's metrics of every frame are compared with the same
generator run offline against that frame's own reference and mask; frame 2 has another image as its reference and a
half mask, so a reference taken from the wrong frame, an ignored mask, a swapped channel order or a wrong output
topic changes a number by more than the tolerance. No shared data needed.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from stereo_depth_ros.data import bag_io
from stereo_depth_ros.data.nir_bag import GT_RGB_TOPIC, GT_VALID_MASK_TOPIC, NIR_IMAGE_TOPIC, write_nir_bag
from stereo_depth_ros.evaluation.cross_modal_metrics import colour_metrics
from stereo_depth_ros.evaluation.scorers import create_scorer


def read_images(bag, topic):
    return {stamp: bag_io.image_to_array(bag_io.deserialize(raw, bag_io.IMAGE_TYPE))
            for stamp, raw in bag_io.read_topic_by_stamp(bag, topic).items()}


@pytest.fixture(scope="module")
def frames(motorcycle_small):
    """(NIR, reference, mask) of two frames: the grey of the Motorcycle left view with (1) the colour view, all
    valid, (2) scikit-image's astronaut (another image), left half valid."""
    from skimage import data

    colour = motorcycle_small[0]
    nir = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    other = cv2.resize(np.ascontiguousarray(data.astronaut()[..., ::-1]), (colour.shape[1], colour.shape[0]),
                       interpolation=cv2.INTER_AREA)
    half = np.zeros(nir.shape, bool)
    half[:, : nir.shape[1] // 2] = True
    return [(nir, colour, np.ones(nir.shape, bool)), (nir, other, half)]


@pytest.fixture(scope="module")
def nir_bag(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("nir_bag") / "bag"
    summary = write_nir_bag(path, *zip(*frames), rate_hz=2.0, start_stamp_ns=1_000_000_000)
    return path, summary


@pytest.fixture(scope="module")
def generator_weights(tmp_path_factory):
    import torch

    from stereo_depth_ros.models import cross_modal

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cross_modal") / "nir_to_rgb.safetensors"
    cross_modal.save_generator(cross_modal.build_generator(), path, direction="nir-to-rgb")
    return path


def test_the_nir_bag_holds_the_nir_the_reference_and_the_mask(nir_bag, frames):
    path, summary = nir_bag
    assert (summary.frames, summary.width, summary.height) == (2, 185, 125)
    nirs, references, masks = (read_images(path, t) for t in (NIR_IMAGE_TOPIC, GT_RGB_TOPIC, GT_VALID_MASK_TOPIC))
    assert sorted(nirs) == sorted(references) == sorted(masks) == [1_000_000_000, 1_500_000_000]
    for stamp, (nir, reference, mask) in zip(sorted(nirs), frames):
        np.testing.assert_array_equal(nirs[stamp], nir)
        np.testing.assert_array_equal(references[stamp], reference)
        np.testing.assert_array_equal(masks[stamp], np.where(mask, 255, 0))
    raw = next(iter(bag_io.read_topic_by_stamp(path, NIR_IMAGE_TOPIC).values()))
    assert bag_io.deserialize(raw, bag_io.IMAGE_TYPE).encoding == "mono8"


def test_bad_nir_bags_are_refused(tmp_path, frames):
    nir, colour, _ = frames[0]
    with pytest.raises(ValueError, match="reference must be"):
        write_nir_bag(tmp_path / "a", [nir], [colour[:50]])
    with pytest.raises(ValueError, match="NIR image must be"):
        write_nir_bag(tmp_path / "b", [colour], [colour])
    with pytest.raises(ValueError, match="no valid pixel"):
        write_nir_bag(tmp_path / "c", [nir], [colour], [np.zeros(nir.shape, bool)])
    with pytest.raises(ValueError, match="as many"):
        write_nir_bag(tmp_path / "d", [nir, nir], [colour])
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_the_scorer_uses_the_reference_and_the_mask(frames):
    nir, colour, _ = frames[0]
    scorer = create_scorer("cross-modal")
    replicated = np.repeat(nir[..., None], 3, axis=2)
    half = frames[1][2]
    row = scorer.score({"pseudo_rgb_image": replicated}, {"reference_image": colour, "valid_mask": half}, None)
    assert row == pytest.approx(colour_metrics(replicated, colour, half))
    assert scorer.score({"pseudo_rgb_image": colour}, {"reference_image": colour}, None)["ssim"] == pytest.approx(1.0)
    assert row["angular_error_deg"] > 1.0  # grey against colour: a colour direction error
    with pytest.raises(ValueError, match="185x125 pixels but the reference is 92x62"):
        scorer.score({"pseudo_rgb_image": colour}, {"reference_image": colour[:62, :92]}, None)
    with pytest.raises(ValueError, match="needs the output 'pseudo_rgb_image'"):
        scorer.score({"depth": np.zeros((4, 4), np.float32)}, {"reference_image": colour}, None)


def test_replay_through_the_node_equals_the_offline_metrics(tmp_path, nir_bag, frames, generator_weights):
    pytest.importorskip("rclpy", reason="the replay needs the ROS 2 Python packages (rclpy, ...)")
    from stereo_depth_ros.models.registry import create_estimator
    from stereo_depth_ros.ros.replay import frame_spec, replay_bag

    path, _ = nir_bag
    translator = create_estimator("cyclegan-nir-to-rgb", weights=str(generator_weights), backend="torch")
    pseudo = translator.predict(frames[0][0])["image"]
    offline = [colour_metrics(pseudo, reference, mask) for _, reference, mask in frames]
    # the two frames' numbers differ by far more than the tolerance, and the mask matters
    assert abs(offline[0]["psnr_db"] - offline[1]["psnr_db"]) > 0.5
    assert abs(colour_metrics(pseudo, frames[1][1])["psnr_db"] - offline[1]["psnr_db"]) > 0.1

    params = tmp_path / "nir.yaml"
    params.write_text("/**/cross_modal_node:\n  ros__parameters:\n    input_mode: nir\n    backend: torch\n"
                      f"    translation_weights: {generator_weights}\n    input_qos: reliable\n")
    assert frame_spec("cross_modal_node").scorers == ("cross-modal",)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    report = replay_bag(path, tmp_path / "out", params_file=params, progress=False, frame_timeout_s=60.0)
    assert report["node_kind"] == "cross_modal_node"
    assert (report["frames_in"], report["frames_out"], report["dropped_frames"]) == (2, 2, 0)
    assert report["stamps_preserved"]
    rows = sorted(report["per_frame_metrics"], key=lambda row: row["stamp_ns"])
    assert len(rows) == 2 and report["metrics"]["frames_evaluated"] == 2
    for row, expected in zip(rows, offline):
        assert row["psnr_db"] == pytest.approx(expected["psnr_db"], abs=0.05)
        assert row["ssim"] == pytest.approx(expected["ssim"], abs=1e-3)
        assert row["angular_error_deg"] == pytest.approx(expected["angular_error_deg"], abs=0.05)
    assert rows[1]["psnr_db"] < rows[0]["psnr_db"]  # another image as the reference scores worse
    assert report["metrics"]["psnr_db"] == pytest.approx(np.mean([o["psnr_db"] for o in offline]), abs=0.05)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "angular colour error" in markdown and "gt/valid_mask" in markdown
    assert (tmp_path / "out" / "contact_sheet.png").is_file()
    depths = bag_io.read_topic_by_stamp(tmp_path / "out" / "outputs", "/stereo/cross_modal/depth")
    assert len(depths) == 2


def test_make_bag_command_writes_a_nir_bag(tmp_path, frames, capsys):
    from stereo_depth_ros.cli import main

    nir, colour, _ = frames[0]
    folder = tmp_path / "pairs"
    folder.mkdir()
    for number, image in (("0001", colour), ("0002", colour[::-1].copy())):
        cv2.imwrite(str(folder / f"{number}_nir.png"), np.repeat(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None],
                                                                  3, axis=2))
        cv2.imwrite(str(folder / f"{number}_rgb.png"), image)
        np.save(folder / f"{number}_nir.npy", np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    arguments = ["make-bag", "--nir-rgb", str(folder), "--short-side", "62", "--out", str(tmp_path / "bag")]
    assert main(arguments) == 0
    assert "2 NIR images 92x62" in capsys.readouterr().out
    nirs, references, masks = (read_images(tmp_path / "bag", t)
                               for t in (NIR_IMAGE_TOPIC, GT_RGB_TOPIC, GT_VALID_MASK_TOPIC))
    first = min(nirs)
    size = (92, 62)
    np.testing.assert_array_equal(references[first], cv2.resize(colour, size, interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(nirs[first], cv2.resize(nir, size, interpolation=cv2.INTER_AREA))
    assert all(np.all(mask == 255) for mask in masks.values())  # the identity warp is valid everywhere
    assert main(arguments[:-1] + [str(tmp_path / "one"), "--limit", "1"]) == 0
    assert "1 NIR images" in capsys.readouterr().out
    assert main(arguments + ["--overwrite", "--left", str(folder)]) == 2
    assert "takes no stereo options" in capsys.readouterr().err
    assert main(["make-bag", "--nir-rgb", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["make-bag", "--focal-px", "50", "--baseline-m", "0.004", "--out", str(tmp_path / "y")]) == 2
    assert "--left and --right" in capsys.readouterr().err


# The nir-rgb-pair mode: NIR/RGB stereo bags and their frame spec -------------------------------------------------

def test_frame_spec_follows_the_input_mode():
    pytest.importorskip("rclpy", reason="the replay needs the ROS 2 Python packages (rclpy, ...)")
    from stereo_depth_ros.ros.replay import CROSS_MODAL_FRAME_SPEC, CROSS_MODAL_PAIR_FRAME_SPEC, frame_spec

    assert frame_spec("cross_modal_node") is CROSS_MODAL_FRAME_SPEC  # the kind's default
    assert frame_spec("cross_modal_node", {}) is CROSS_MODAL_FRAME_SPEC  # the node's default input_mode: nir
    assert frame_spec("cross_modal_node", {"input_mode": "nir-rgb-pair"}) is CROSS_MODAL_PAIR_FRAME_SPEC
    assert CROSS_MODAL_PAIR_FRAME_SPEC.scorers == ("disparity-depth",)
    with pytest.raises(ValueError, match="input_mode 'stereo' has no replay frame spec; modes with one: nir, "
                                         "nir-rgb-pair"):
        frame_spec("cross_modal_node", {"input_mode": "stereo"})
    assert frame_spec("stereo_depth_node", {"input_mode": "anything"}).node_kind == "stereo_depth_node"
    from dataclasses import replace

    from stereo_depth_ros.ros.replay import register_frame_spec

    with pytest.raises(ValueError, match="already has a frame spec for input_mode 'nir'"):
        register_frame_spec(CROSS_MODAL_FRAME_SPEC)
    with pytest.raises(ValueError, match="chosen by parameter 'input_mode', not 'method'"):
        register_frame_spec(replace(CROSS_MODAL_FRAME_SPEC, mode=("method", "sgbm")))
    with pytest.raises(ValueError, match="a frame spec for every mode"):
        register_frame_spec(replace(CROSS_MODAL_FRAME_SPEC, mode=None))


def test_make_bag_stereo_shift_writes_a_nir_rgb_stereo_bag(tmp_path, frames, capsys):
    from stereo_depth_ros.cli import main
    from stereo_depth_ros.data.nir_bag import NIR_STEREO_BASELINE_M

    _, colour, _ = frames[0]
    folder = tmp_path / "pairs"
    folder.mkdir()
    for number, image in (("0001", colour), ("0002", colour[::-1].copy())):
        cv2.imwrite(str(folder / f"{number}_nir.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        cv2.imwrite(str(folder / f"{number}_rgb.png"), image)
    arguments = ["make-bag", "--nir-rgb", str(folder), "--stereo-shift", "10", "--pixel-aligned", "--short-side",
                 "0", "--out", str(tmp_path / "bag")]
    assert main(arguments) == 2 and "short side must be" in capsys.readouterr().err
    arguments[arguments.index("0")] = "125"  # full size
    assert main(arguments) == 0
    assert "2 NIR/RGB stereo pairs 175x125" in capsys.readouterr().out
    lefts, rights, depths = (read_images(tmp_path / "bag", f"/stereo/{t}")
                             for t in ("left/image_rect", "right/image_rect", "gt/depth"))
    first = min(lefts)
    np.testing.assert_array_equal(lefts[first], cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)[:, :175])
    np.testing.assert_array_equal(rights[first], colour[:, 10:185])  # the RGB shifted: disparity +10 px
    depth = depths[first]
    assert np.isnan(depth[:, :10]).all()
    np.testing.assert_allclose(depth[:, 10:], 175 * NIR_STEREO_BASELINE_M / 10, rtol=1e-6)
    assert main(["make-bag", "--left", str(folder), "--right", str(folder), "--focal-px", "50", "--baseline-m",
                 "0.004", "--stereo-shift", "10", "--out", str(tmp_path / "y")]) == 2
    assert "go with --nir-rgb" in capsys.readouterr().err
    assert main(["make-bag", "--nir-rgb", str(folder), "--pixel-aligned", "--out", str(tmp_path / "z")]) == 2
    assert "--pixel-aligned goes with --stereo-shift" in capsys.readouterr().err


def test_pair_mode_replay_scores_the_disparity_the_node_computes(tmp_path, motorcycle_small, generator_weights):
    """A NIR/RGB stereo bag (the grey of Motorcycle's left view as the NIR, its right view as the RGB, GT depth from
    the GT disparity) replayed through cross_modal_node in nir-rgb-pair mode: the replay's disparity EPE equals the
    offline pipeline's (same_modality_pair in the default modality, the network, the node's safe-output mask)."""
    pytest.importorskip("rclpy", reason="the replay needs the ROS 2 Python packages (rclpy, ...)")
    from stereo_depth_ros.data.stereo_bag import write_stereo_bag
    from stereo_depth_ros.evaluation.metrics import stereo_metrics
    from stereo_depth_ros.geometry import StereoCameraModel
    from stereo_depth_ros.models.cross_modal import same_modality_pair
    from stereo_depth_ros.models.registry import create_estimator
    from stereo_depth_ros.ros.cross_modal_node import CROSS_SPECTRAL_WEIGHTS
    from stereo_depth_ros.ros.replay import replay_bag
    from stereo_depth_ros.ros.stereo_node import mask_disparity

    left, right, gt_disparity = motorcycle_small
    nir = cv2.cvtColor(left, cv2.COLOR_BGR2GRAY)
    height, width = nir.shape
    camera = StereoCameraModel(fx=250.0, cx=(width - 1) / 2, cy=(height - 1) / 2, baseline_m=0.05)
    bag = tmp_path / "bag"
    write_stereo_bag(bag, [nir, nir[:, ::-1].copy()], [right, right[:, ::-1].copy()], camera,
                     gt_depths=[camera.depth_from_disparity(gt_disparity)] * 2, rate_hz=2.0,
                     start_stamp_ns=1_000_000_000)
    translator = create_estimator("cyclegan-nir-to-rgb", weights=str(generator_weights), backend="torch")
    stereo_left, stereo_right = same_modality_pair(nir, right, "pseudo-rgb-matched", translator)
    network = create_estimator("coarse-to-fine", weights=str(CROSS_SPECTRAL_WEIGHTS))  # the pair mode's default
    offline = mask_disparity(network.estimate(stereo_left, stereo_right)[-1], 0.0, 1.0)[1]
    expected = stereo_metrics(offline, gt_disparity)["epe_px"]

    params = tmp_path / "pair.yaml"
    params.write_text("/**/cross_modal_node:\n  ros__parameters:\n    input_mode: nir-rgb-pair\n    backend: torch\n"
                      f"    translation_weights: {generator_weights}\n    input_qos: reliable\n")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    report = replay_bag(bag, tmp_path / "out", params_file=params, progress=False, frame_timeout_s=60.0)
    assert report["node_kind"] == "cross_modal_node" and "epe_px" in report["metric_labels"]
    assert (report["frames_in"], report["frames_out"], report["dropped_frames"]) == (2, 2, 0)
    rows = sorted(report["per_frame_metrics"], key=lambda row: row["stamp_ns"])
    assert rows[0]["epe_px"] == pytest.approx(expected, abs=1e-3)
    assert abs(rows[1]["epe_px"] - rows[0]["epe_px"]) > 0.1  # the mirrored frame is scored against its own GT
    for topic in ("/stereo/cross_modal/pseudo_rgb", "/stereo/cross_modal/disparity", "/stereo/cross_modal/depth"):
        assert len(bag_io.read_topic_by_stamp(tmp_path / "out" / "outputs", topic)) == 2
