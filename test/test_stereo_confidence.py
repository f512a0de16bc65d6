"""Stereo confidence (issue 15 item 4): the network's confidence orders its errors, both backends agree, the
sparsification curve is right on hand examples, and the node publishes ``disparity/confidence`` and applies
``confidence_threshold`` to disparity, depth and points2 through rclpy."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from stereo_depth_ros.evaluation.confidence import epe_at_density, mean_sparsification, sparsification
from stereo_depth_ros.models.confidence import left_right_confidence, photometric_confidence
from stereo_depth_ros.models.estimator import CONFIDENCE_METHODS
from stereo_depth_ros.models.registry import create_estimator

BACKGROUND_DISPARITY = 8
SQUARE_DISPARITY = 24
SQUARE_X, SQUARE_Y, SQUARE_SIZE = 70, 30, 64


@pytest.fixture(scope="module")
def network():
    return create_estimator("coarse-to-fine", backend="torch")  # auto input scale: 2x for these widths


def _texture(rng, height, width):
    """Random colour texture, blurred (sigma 1.5 px) and stretched to a standard deviation of 50 grey levels."""
    noise = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip((noise - noise.mean()) / noise.std() * 50.0 + 128.0, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def occlusion_pair():
    """A textured square 24 px in front of a textured background (8 px): in the left view the background band
    ``SQUARE_X + 8 <= x < SQUARE_X + 24`` beside the square's left edge is hidden from the right camera.

    Returns (left, right, true disparity, occluded band mask)."""
    rng = np.random.default_rng(7)
    height, width = 128, 192
    background = _texture(rng, height, width + 64)
    square = _texture(rng, SQUARE_SIZE, SQUARE_SIZE)
    right = background[:, :width].copy()
    right[SQUARE_Y:SQUARE_Y + SQUARE_SIZE, SQUARE_X:SQUARE_X + SQUARE_SIZE] = square
    left = np.zeros_like(right)
    left[:, BACKGROUND_DISPARITY:] = background[:, :width - BACKGROUND_DISPARITY]
    left[:, :BACKGROUND_DISPARITY] = background[:, width:width + BACKGROUND_DISPARITY]  # unseen by the right camera
    left_x = SQUARE_X + SQUARE_DISPARITY
    left[SQUARE_Y:SQUARE_Y + SQUARE_SIZE, left_x:left_x + SQUARE_SIZE] = square
    truth = np.full((height, width), float(BACKGROUND_DISPARITY), np.float32)
    truth[SQUARE_Y:SQUARE_Y + SQUARE_SIZE, left_x:left_x + SQUARE_SIZE] = SQUARE_DISPARITY
    occluded = np.zeros((height, width), bool)
    occluded[SQUARE_Y + 4:SQUARE_Y + SQUARE_SIZE - 4, SQUARE_X + BACKGROUND_DISPARITY:left_x] = True
    return left, right, truth, occluded


def test_confidence_is_low_in_the_occluded_band_and_high_on_matched_texture(network, occlusion_pair):
    left, right, truth, occluded = occlusion_pair
    disparities, confidence = network.estimate_with_confidence(left, right)
    assert confidence.shape == left.shape[:2] and confidence.dtype == np.float32
    assert np.isfinite(confidence).all() and confidence.min() >= 0.0 and confidence.max() <= 1.0
    # Matched texture: the square's inside and the background away from the square and the left border.
    matched = np.zeros_like(occluded)
    inside_x = SQUARE_X + SQUARE_DISPARITY
    matched[SQUARE_Y + 8:SQUARE_Y + SQUARE_SIZE - 8, inside_x + 8:inside_x + SQUARE_SIZE - 8] = True
    matched[:, 40:60] = True
    matched[SQUARE_Y:SQUARE_Y + SQUARE_SIZE, 40:] = matched[SQUARE_Y:SQUARE_Y + SQUARE_SIZE, 40:] & ~occluded[
        SQUARE_Y:SQUARE_Y + SQUARE_SIZE, 40:]
    error = np.abs(disparities[-1] - truth)
    assert np.median(error[matched]) < 1.0, "the network does not match the textured pair: the test is void"
    assert confidence[occluded].mean() < 0.5 * confidence[matched].mean(), \
        (confidence[occluded].mean(), confidence[matched].mean())
    # Every measure orders the band below matched texture.
    _, maps = network.confidence_maps(left, right)
    for method, values in maps.items():
        assert values[occluded].mean() < values[matched].mean(), method


def test_most_confident_half_has_lower_error_on_a_real_pair(motorcycle_small):
    left, right, gt = motorcycle_small
    estimator = create_estimator("coarse-to-fine", backend="onnx")
    disparities, confidence = estimator.estimate_with_confidence(left, right)
    known = np.isfinite(gt)
    error = np.abs(disparities[-1] - gt)[known]
    ranked = error[np.argsort(-confidence[known], kind="stable")]
    half = ranked[: ranked.size // 2].mean()
    assert half < 0.6 * error.mean(), (half, error.mean())
    # The sparsification curve of the default measure falls and lies above the oracle's.
    curve = sparsification(np.abs(disparities[-1] - gt), confidence)
    assert curve.epe[0] == pytest.approx(error.mean(), rel=1e-6)
    assert curve.epe_at(0.5) < curve.epe[0] and curve.auc < curve.epe[0]
    assert np.all(curve.oracle_epe <= curve.epe + 1e-9) and curve.oracle_auc < curve.auc


def test_estimate_is_unchanged_and_confidence_is_zero_where_invalid(network, motorcycle_small):
    left, right, _ = motorcycle_small
    plain = network.estimate(left, right)
    for method in CONFIDENCE_METHODS:
        disparities, confidence = network.estimate_with_confidence(left, right, method=method)
        assert all(np.array_equal(a, b) for a, b in zip(plain, disparities)), method
        columns = np.arange(left.shape[1])[None, :]
        assert np.all(confidence[columns - disparities[-1] < 0] == 0.0), method
    _, stage0_confidence = network.estimate_with_confidence(left, right, max_stage=0)
    assert stage0_confidence.shape == left.shape[:2]
    with pytest.raises(ValueError, match="cost-peak"):
        network.estimate_with_confidence(left, right, method="entropy")


def test_torch_and_onnx_backends_agree_on_confidence(motorcycle_small):
    left, right, _ = motorcycle_small
    results = []
    for backend in ("torch", "onnx"):
        estimator = create_estimator("coarse-to-fine", backend=backend)
        results.append(estimator.estimate_with_confidence(left, right))
    (torch_disparities, torch_confidence), (onnx_disparities, onnx_confidence) = results
    assert np.max(np.abs(torch_disparities[-1] - onnx_disparities[-1])) < 1e-2
    difference = np.abs(torch_confidence - onnx_confidence)
    assert difference.mean() < 1e-4 and difference.max() < 1e-2, (difference.mean(), difference.max())


def test_confidence_graph_has_its_own_onnx_cache_entry(network):
    estimator = create_estimator("coarse-to-fine", backend="onnx")
    model = estimator.model
    shapes = [(1, 3, 64, 96), (1, 3, 64, 96)]
    plain = estimator._runner(model, 3).cache_path(shapes)
    with_peaks = estimator._runner(model, 3, True).cache_path(shapes)
    assert plain != with_peaks


def test_sgbm_confidence_is_one_exactly_where_it_has_a_value(motorcycle_small):
    left, right, _ = motorcycle_small
    sgbm = create_estimator("sgbm", max_disparity=32)
    disparities, confidence = sgbm.estimate_with_confidence(left, right)
    assert np.array_equal(confidence == 1.0, np.isfinite(disparities[-1]))
    assert set(np.unique(confidence)) <= {0.0, 1.0}


def test_photometric_and_left_right_confidence_on_hand_examples():
    rng = np.random.default_rng(1)
    right = rng.integers(0, 256, (16, 40, 3), dtype=np.uint8)
    left = np.roll(right, 3, axis=1)
    truth = np.full((16, 40), 3.0, np.float32)
    good = photometric_confidence(left, right, truth)
    wrong = photometric_confidence(left, right, truth + 2.0)
    assert good[:, 8:-4].mean() > 0.9 and wrong[:, 8:-4].mean() < 0.3
    assert np.all(good[:, :3] == 0.0)  # matches left of the right image
    consistent = left_right_confidence(truth, truth)
    inconsistent = left_right_confidence(truth, truth + 4.0)
    assert consistent[:, 3:].min() > 0.99 and inconsistent[:, 3:].max() < 0.05
    with pytest.raises(ValueError, match="disparity"):
        photometric_confidence(left, right, truth[:, :10])


def test_sparsification_hand_example_oracle_and_ties():
    error = np.array([[5.0, 1.0], [3.0, 1.0]])
    fractions = np.array([0.0, 0.25, 0.5, 0.75])
    perfect = sparsification(error, -error, fractions=fractions)
    assert perfect.epe.tolist() == pytest.approx([2.5, 5 / 3, 1.0, 1.0])
    assert perfect.epe.tolist() == pytest.approx(perfect.oracle_epe.tolist())
    worst = sparsification(error, error, fractions=fractions)
    assert worst.epe.tolist() == pytest.approx([2.5, 3.0, 4.0, 5.0]) and worst.auc > perfect.auc
    # A constant confidence removes pixels in random order: on many pixels the curve stays flat.
    flat = sparsification(np.arange(10000.0), np.ones(10000))
    assert np.allclose(flat.epe, flat.epe[0], rtol=0.05)
    masked = sparsification(error, -error, mask=np.array([[True, False], [True, False]]), fractions=fractions)
    assert masked.pixels == 2 and masked.epe[0] == 4.0
    averaged = mean_sparsification([perfect, worst])
    assert averaged.auc == pytest.approx((perfect.auc + worst.auc) / 2)
    with pytest.raises(ValueError, match="shape"):
        sparsification(error, error[0])
    with pytest.raises(ValueError, match="no pixel"):
        sparsification(np.full((2, 2), np.nan), error)


def test_epe_at_density_keeps_the_most_confident_share():
    error = np.array([[5.0, 1.0], [3.0, 2.0]])
    confidence = np.array([[0.1, 0.9], [0.2, 0.6]])
    assert epe_at_density(error, confidence, 0.5) == (1.5, 0.6)
    assert epe_at_density(error, confidence, 1.0) == (2.75, 0.1)
    assert epe_at_density(error, confidence, 0.01) == (1.0, 0.9)  # at least one pixel
    # A confidence that orders errors backwards keeps the worst pixels.
    assert epe_at_density(error, error, 0.5)[0] == 4.0
    assert epe_at_density(error, confidence, 0.5, mask=np.array([[True, False], [True, False]])) == (3.0, 0.2)
    for density in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="density"):
            epe_at_density(error, confidence, density)


def test_eval_confidence_compares_with_sgbm_at_its_density(capsys):
    from stereo_depth_ros.cli import main as cli_main

    code = cli_main(["eval-confidence", "skimage-motorcycle", "--confidence", "peak-photometric", "--stage", "2",
                     "--backend", "onnx", "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    row = document["at_sgbm_density"]["skimage-motorcycle"]
    curves = document["sets"]["skimage-motorcycle"]
    assert 0.3 < row["sgbm_density"] < 1.0 and row["images"] == 1
    assert row["sgbm_epe"] == pytest.approx(curves["sgbm valid"]["epe"][0])  # SGBM on all its pixels
    network_all = curves["coarse-to-fine peak-photometric"]["epe"][0]
    # Keeping only the most confident share must lower the network's error well below its dense error.
    assert row["network_epe"]["peak-photometric"] < 0.7 * network_all
    assert 0.0 < row["network_threshold"]["peak-photometric"] < 1.0


# ------------------------------------------------------------------------------------------------ the node (rclpy)

try:
    import rclpy
    from rclpy.parameter import Parameter

    from stereo_depth_ros.ros import conversions
    from stereo_depth_ros.ros.stereo_node import CONFIDENCE_TOPIC
    from ros_rig import ros_context
    from test_stereo_node import Rig  # the stereo node test rig: node + helper publishing and recording
except ImportError:  # no ROS 2 Python packages: the node tests skip, the others run
    rclpy = None

DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID", 150 + (os.getpid() + 40) % 80))


@pytest.fixture(scope="module")
def context():
    if rclpy is None:
        pytest.skip("the ROS layer needs the ROS 2 Python packages (rclpy, ...)")
    yield from ros_context(DOMAIN_ID)


def _frame(rig, seconds, left, right):
    stamp = rig.publish_frame(seconds, left, right)
    messages = {topic: rig.wait_for(topic, stamp) for topic in rig.outputs}
    assert all(m is not None for m in messages.values()), (messages, rig.node.last_problem)
    disparity = conversions.image_to_numpy(messages["disparity/image"])
    depth = conversions.image_to_numpy(messages["depth"])
    points = conversions.point_cloud2_to_array(messages["points2"])
    return stamp, messages, disparity, depth, points


def test_node_confidence_topic_and_threshold_in_disparity_depth_and_points2(context, motorcycle_small):
    left, right, _ = motorcycle_small
    outputs = ("disparity/image", "depth", "points2", CONFIDENCE_TOPIC)
    rig = Rig(context, parameters={"input_qos": "reliable"}, outputs=outputs)
    try:
        stamp, messages, disparity, depth, points = _frame(rig, 10.0, left, right)
        confidence_msg = messages[CONFIDENCE_TOPIC]
        assert confidence_msg.encoding == "32FC1" and confidence_msg.header == messages["disparity/image"].header
        assert confidence_msg.header.stamp == stamp
        confidence = conversions.image_to_numpy(confidence_msg)
        assert confidence.shape == left.shape[:2] and np.isfinite(confidence).all()
        assert 0.0 <= confidence.min() and confidence.max() <= 1.0 and confidence.std() > 0.05
        _, reference = rig.node.estimator.estimate_with_confidence(left, right)
        np.testing.assert_allclose(confidence, reference, atol=1e-6)

        threshold = 0.5
        low = confidence < threshold
        assert 0.05 < low.mean() < 0.95, "the threshold must remove some pixels and keep others"
        result = rig.node.set_parameters([Parameter("confidence_threshold", value=threshold)])[0]
        assert result.successful, result.reason
        _, messages, disparity_t, depth_t, points_t = _frame(rig, 11.0, left, right)
        confidence_t = conversions.image_to_numpy(messages[CONFIDENCE_TOPIC])
        np.testing.assert_array_equal(confidence_t, confidence)
        np.testing.assert_array_equal(np.isnan(disparity_t), np.isnan(disparity) | low)
        np.testing.assert_array_equal(np.isnan(depth_t), np.isnan(depth) | low)
        invalid_points = np.isnan(points_t["z"]).reshape(low.shape)
        np.testing.assert_array_equal(invalid_points, np.isnan(points["z"]).reshape(low.shape) | low)
        kept = ~low
        np.testing.assert_array_equal(disparity_t[kept], disparity[kept])

        rejected = rig.node.set_parameters([Parameter("confidence_threshold", value=1.5)])[0]
        assert not rejected.successful and "confidence_threshold" in rejected.reason and "1.5" in rejected.reason
        assert rig.node.get_parameter("confidence_threshold").value == threshold
    finally:
        rig.close()


def test_node_without_confidence_subscriber_and_threshold_does_not_compute_it(context, motorcycle_small,
                                                                               monkeypatch):
    left, right, _ = motorcycle_small
    rig = Rig(context, parameters={"input_qos": "reliable"}, outputs=("disparity/image",))
    try:
        calls = []
        original = rig.node.estimator.estimate_with_confidence
        monkeypatch.setattr(rig.node.estimator, "estimate_with_confidence",
                            lambda *a, **k: calls.append(1) or original(*a, **k))
        stamp = rig.publish_frame(20.0, left, right)
        assert rig.wait_for("disparity/image", stamp) is not None, rig.node.last_problem
        assert calls == []
        assert rig.node.set_parameters([Parameter("confidence_threshold", value=0.3)])[0].successful
        stamp = rig.publish_frame(21.0, left, right)
        assert rig.wait_for("disparity/image", stamp) is not None, rig.node.last_problem
        assert calls == [1]
    finally:
        rig.close()

