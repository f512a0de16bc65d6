"""The ROS path does not distort the data: replaying a BDIS synthetic bag through the stereo node gives the same
depth metrics as evaluating the same frames offline with the same weights (issue 3, to 1e-3)."""

from pathlib import Path

import numpy as np
import pytest

from stereo_depth_ros.data import bag_io, stereo_bag
from stereo_depth_ros.evaluation.datasets import open_dataset
from stereo_depth_ros.evaluation.evaluate import evaluate_pair, mean_rows
from stereo_depth_ros.models.estimator import CoarseToFineEstimator

FRAMES = 3


def _link_first_frames(source: Path, target: Path) -> None:
    images = source / "images_rectified"
    for side in ("left", "right"):
        (target / side).mkdir(parents=True)
        for k in range(1, FRAMES + 1):
            (target / side / f"{k}.png").symlink_to(images / side / f"{k}.png")
    (target / "gt").mkdir()
    for k in range(1, FRAMES + 1):  # set 30 is 1-based: k.png <-> depth_{k:07d}.png
        (target / "gt" / f"depth_{k:07d}.png").symlink_to(source / f"depth_{k:07d}.png")


def test_replay_metrics_equal_offline_evaluation(tmp_path, shared_data):
    from stereo_depth_ros.ros.replay import decode_disparity_image, replay_bag
    from stereo_depth_ros.ros.stereo_node import DEFAULT_OUTPUT_STAGE

    source = shared_data / "endoscopic_stereo" / "bdis_synthetic" / "30"
    _link_first_frames(source, tmp_path / "frames")
    frames = tmp_path / "frames"
    stereo_bag.make_bag_from_folders(frames / "left", frames / "right", tmp_path / "bag", focal_px=520.0, cx=320.0,
                               cy=240.0, baseline_m=0.005, gt_depth_dir=frames / "gt", depth_scale=0.01,
                               gt_depth_encoding="bdis", rate_hz=5.0, progress=False)
    # No depth limits, so that the node's depth keeps every pixel the offline metrics score.
    report = replay_bag(tmp_path / "bag", tmp_path / "out", overrides={"max_depth": 0.0, "min_depth": 0.0},
                        progress=False)
    assert report["frames_out"] == FRAMES and report["dropped_frames"] == 0
    through_ros = report["metrics"]

    assert through_ros["density_pct"] > 50
    # The node marks pixels invalid that the estimator gives a value for (the band x < d without a match in the
    # right image, REP-117 limits); score offline on the pixels the node published, so that the values are compared.
    recorded = bag_io.read_topic_by_stamp(tmp_path / "out" / "outputs", "/stereo/disparity")
    published_valid = [np.isfinite(decode_disparity_image(bag_io.deserialize(recorded[stamp], bag_io.DISPARITY_TYPE),
                                                          None)) for stamp in sorted(recorded)]

    estimator = CoarseToFineEstimator()
    samples = [s for s in open_dataset("bdis-synthetic-30", shared_data)
               if s.name.rsplit("/", 1)[-1].split(".")[0] in {str(k) for k in range(1, FRAMES + 1)}]
    assert len(samples) == FRAMES == len(published_valid)
    rows = [row for s, valid in zip(samples, published_valid)
            for row in evaluate_pair(s.left_bgr, s.right_bgr, s.gt_disparity, [estimator], s.focal_px, s.baseline_m,
                                     valid if s.valid is None else valid & s.valid, warmup=False)
            if row["stage"] == DEFAULT_OUTPUT_STAGE]  # the stage the node publishes
    offline = mean_rows(rows)[0]
    for key in ("epe_px", "mae_mm", "rmse_mm", "bad2_pct", "d1_pct"):
        assert through_ros[key] == pytest.approx(offline[key], rel=1e-3, abs=1e-3), key
