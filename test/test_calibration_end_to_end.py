"""One camera model from camera_info to report (issue 10, item 3): the real Middlebury 2014 Motorcycle-Q
calibration, whose principal points differ (cx0 294.182, cx1 326.96, doffs 32.778 px), through make-bag, the
stereo node and the replay's scoring. Every step must use Z = f B / (d + doffs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from stereo_depth_ros import cli
from stereo_depth_ros.data import bag_io, stereo_bag
from stereo_depth_ros.evaluation.datasets import middlebury2014_camera, read_middlebury2014_calib
from stereo_depth_ros.evaluation.readers import read_disparity

START_NS = 1_700_000_000_000_000_000


def write_camera_info_yaml(path: Path, width: int, height: int, f: float, cx: float, cy: float, tx: float) -> None:
    """A camera_calibration_parsers YAML of a rectified camera."""
    path.write_text(yaml.safe_dump({
        "image_width": width, "image_height": height, "camera_name": path.stem, "distortion_model": "plumb_bob",
        "camera_matrix": {"rows": 3, "cols": 3, "data": [f, 0, cx, 0, f, cy, 0, 0, 1]},
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0, 0, 0, 0, 0]},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [f, 0, cx, tx, 0, f, cy, 0, 0, 0, 1, 0]}}))


@pytest.fixture(scope="module")
def motorcycle_q(shared_data, tmp_path_factory):
    folder = shared_data / "general_stereo" / "middlebury2014_motorcycle_q"
    if not (folder / "calib.txt").is_file():
        pytest.skip(f"{folder} is absent: the Middlebury 2014 Motorcycle-Q calibration test needs it")
    calib = read_middlebury2014_calib(folder / "calib.txt")
    assert (calib["cx0_px"], calib["cx1_px"], calib["doffs_px"]) == (294.182, 326.96, 32.778)
    root = tmp_path_factory.mktemp("motorcycle_q")
    for sub, source in (("left", "im0.png"), ("right", "im1.png"), ("gt", "disp0GT.pfm")):
        (root / sub).mkdir()
        (root / sub / ("0" + Path(source).suffix)).symlink_to(folder / source)
    width, height = int(calib["width"]), int(calib["height"])
    f, baseline_m = calib["focal_px"], calib["baseline_mm"] / 1000.0
    write_camera_info_yaml(root / "left.yaml", width, height, f, calib["cx0_px"], calib["cy0_px"], 0.0)
    write_camera_info_yaml(root / "right.yaml", width, height, f, calib["cx1_px"], calib["cy0_px"], -f * baseline_m)
    assert cli.main(["make-bag", "--left", str(root / "left"), "--right", str(root / "right"), "--camera-info-yaml",
                     str(root / "left.yaml"), str(root / "right.yaml"), "--gt-disparity", str(root / "gt"),
                     "--start-time", str(START_NS / 1e9), "--out", str(root / "bag")]) == 0
    d_gt = read_disparity(folder / "disp0GT.pfm")
    expected = (f * baseline_m / (d_gt.astype(np.float64) + calib["doffs_px"])).astype(np.float32)
    return root, calib, expected


def gt_depth_of(bag: Path) -> np.ndarray:
    (raw,) = bag_io.read_topic_by_stamp(bag, stereo_bag.GT_DEPTH_TOPIC).values()
    return bag_io.image_to_array(bag_io.deserialize(raw, bag_io.IMAGE_TYPE))


def test_make_bag_gt_depth_uses_doffs(motorcycle_q):
    root, calib, expected = motorcycle_q
    summary = stereo_bag.inspect_stereo_bag(root / "bag")
    assert summary.calibration == middlebury2014_camera(calib)
    assert summary.calibration.disparity_offset_px == pytest.approx(32.778)
    depth = gt_depth_of(root / "bag")
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
    np.testing.assert_allclose(depth[np.isfinite(depth)], expected[np.isfinite(expected)], rtol=1e-5)
    # f B / d (no doffs) would be 10 % to 5x deeper: the GT must not be that
    assert np.nanmedian(depth) < 0.8 * np.nanmedian(calib["focal_px"] * 0.193001 / read_disparity(
        root / "gt" / "0.pfm"))


def test_node_depth_and_replay_metrics_agree_with_f_b_over_d_plus_doffs(motorcycle_q, tmp_path):
    from stereo_depth_ros.ros.replay import replay_bag

    root, _, expected = motorcycle_q
    report = replay_bag(root / "bag", tmp_path, progress=False,
                        overrides={"method": "coarse-to-fine", "min_depth": 0.0, "max_depth": 0.0,
                                   "input_scale": 1.0})
    assert report["frames_out"] == 1 and report["camera"]["doffs_px"] == pytest.approx(32.778)
    (raw,) = bag_io.read_topic_by_stamp(tmp_path / "outputs", "/stereo/depth").values()
    depth = bag_io.image_to_array(bag_io.deserialize(raw, bag_io.IMAGE_TYPE))
    both = np.isfinite(depth) & np.isfinite(expected) & (depth > 0)
    ratio = float(np.median(depth[both] / expected[both]))
    assert 0.95 < ratio < 1.05, f"the node's depth must follow f B / (d + doffs); median ratio {ratio:.3f}"
    metrics = report["metrics"]
    assert metrics["depth_median_ratio"] == pytest.approx(ratio, rel=1e-4)
    independent_mae = 1000.0 * float(np.mean(np.abs(depth[both] - expected[both])))
    assert metrics["mae_mm"] == pytest.approx(independent_mae, rel=1e-3)
    assert 20.0 < metrics["mae_mm"] < 1000.0, "hundreds of mm, not the thousands of f B / d"
    assert metrics["epe_px"] < 10.0
    print(f"Motorcycle-Q through the node: median depth ratio {ratio:.4f}, depth MAE {metrics['mae_mm']:.1f} mm, "
          f"RMSE {metrics['rmse_mm']:.1f} mm, EPE {metrics['epe_px']:.3f} px")
