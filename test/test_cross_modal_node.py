"""The NIR-to-RGB cross-modal node with real rclpy (issue 14): both input modes publish pseudo-RGB and depth for a real
image (NIR = the grey of scikit-image's Motorcycle left view at 1/4 size, RGB = its right view), bad input gets the
base class's clear problems, and the node is lazy.

The translation network is an untrained generator written by ``cross_modal.save_generator`` (the test checks the
node's wiring, not the translation's quality); the published pseudo-RGB is compared with the same generator run
offline, so a swapped channel order or a wrong view would fail. Every wait is bounded.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA  # noqa: E402
from stereo_depth_ros.models import cross_modal  # noqa: E402
from stereo_depth_ros.ros import conversions  # noqa: E402
from stereo_depth_ros.ros.cross_modal_node import CROSS_SPECTRAL_WEIGHTS, PARAMETER_SPECS, CrossModalNode  # noqa: E402
from stereo_depth_ros.ros.stereo_node import mask_disparity  # noqa: E402
from ros_rig import NodeRig, closing_factory, ros_context  # noqa: E402

DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID", "62"))
WAIT_S = 60.0
FRAME_ID = "nir_optical_frame"
OUTPUT_TYPES = {"pseudo_rgb": Image, "depth": Image, "disparity": DisparityImage, "points2": PointCloud2}


@pytest.fixture(scope="module")
def context():
    yield from ros_context(DOMAIN_ID)


@pytest.fixture(scope="module")
def generator_weights(tmp_path_factory) -> Path:
    """An untrained NIR -> RGB generator in the platform's weights format (fixed seed)."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cross_modal") / "nir_to_rgb.safetensors"
    cross_modal.save_generator(cross_modal.build_generator(), path, direction="nir-to-rgb")
    return path


@pytest.fixture(scope="module")
def nir_rgb(motorcycle_small):
    """(NIR (H, W) uint8 = grey of the left view, RGB (H, W, 3) uint8 BGR = the right view)."""
    left, right, _ = motorcycle_small
    return cv2.cvtColor(left, cv2.COLOR_BGR2GRAY), right


def camera_infos_camera():
    """The calibration :func:`camera_infos` publishes (scikit-image's Motorcycle at 1/4 size)."""
    return SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)


def camera_infos(width, height, stamp):
    camera = camera_infos_camera()
    return conversions.stereo_camera_info_messages(camera, width, height, Header(stamp=stamp, frame_id=FRAME_ID))


class Rig(NodeRig):
    """The node plus a helper node that publishes the inputs and records the outputs."""

    wait_s = WAIT_S

    def __init__(self, context, parameters, outputs=("pseudo_rgb", "depth")):
        super().__init__(context, CrossModalNode, dict({"input_qos": "reliable", "backend": "torch"}, **parameters),
                         prefix="cross_modal_test")
        for topic in outputs:
            self.subscribe(topic)
        qos = QoSProfile(depth=10)
        self.publishers = {topic: self.helper.create_publisher(msg_type, topic, qos)
                           for topic, msg_type in self.node.INPUT_TOPICS.items()}
        if outputs:
            assert self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in self.publishers.values())), \
                "discovery did not complete"

    def subscribe(self, topic):
        self.record(topic, OUTPUT_TYPES[topic])

    def publish(self, messages: dict):
        for topic, msg in messages.items():
            self.publishers[topic].publish(msg)


@pytest.fixture
def rig_factory(context):
    yield from closing_factory(lambda *args, **kwargs: Rig(context, *args, **kwargs))


def image_message(pixels, encoding, seconds):
    return conversions.numpy_to_image(pixels, encoding, Header(stamp=Time(sec=seconds), frame_id=FRAME_ID))


@pytest.fixture(scope="module")
def nir_generator_weights(tmp_path_factory) -> Path:
    """An untrained RGB -> NIR generator (fixed seed)."""
    import torch

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("cross_modal_nir") / "rgb_to_nir.safetensors"
    cross_modal.save_generator(cross_modal.build_generator({"out_channels": 1}), path, direction="rgb-to-nir")
    return path


def offline_pseudo_rgb(weights, nir, matched_to=None) -> np.ndarray:
    """What the generator gives offline (given the histograms of ``matched_to``, BGR, when set), as the RGB image
    the node publishes."""
    translator = cross_modal.CrossModalEstimator("nir-to-rgb", weights=weights, backend="torch")
    pseudo = translator.translate(nir)
    if matched_to is not None:
        pseudo = cross_modal.match_colour_histograms(pseudo, matched_to)
    return pseudo[..., ::-1]


def check_pseudo_rgb(msg, stamp, expected_rgb):
    assert msg is not None
    assert msg.encoding == "rgb8" and msg.header.stamp == stamp and msg.header.frame_id == FRAME_ID
    assert (msg.height, msg.width) == expected_rgb.shape[:2]
    np.testing.assert_array_equal(conversions.image_to_numpy(msg), expected_rgb)


def test_nir_mode_publishes_pseudo_rgb_and_monocular_depth(rig_factory, generator_weights, nir_rgb):
    nir, _ = nir_rgb
    rig = rig_factory({"translation_weights": str(generator_weights)})
    assert list(rig.node.INPUT_TOPICS) == ["image_nir"]
    expected = offline_pseudo_rgb(generator_weights, nir)
    assert not np.array_equal(expected[..., 0], expected[..., 2])  # channel order is tested, not trivially equal
    rig.publish({"image_nir": image_message(nir, "mono8", 1)})
    stamp = Time(sec=1)
    check_pseudo_rgb(rig.wait_for("pseudo_rgb", stamp), stamp, expected)
    depth_msg = rig.wait_for("depth", stamp)
    assert depth_msg is not None, rig.node.last_problem
    assert depth_msg.encoding == "32FC1" and (depth_msg.height, depth_msg.width) == nir.shape
    assert depth_msg.header.frame_id == FRAME_ID
    depth = conversions.image_to_numpy(depth_msg)
    assert np.mean(np.isfinite(depth) & (depth > 0)) > 0.9  # dispnet-subpixel is metric: metres as it is
    # the same NIR as mono16 (value * 257) gives the same pseudo-RGB
    rig.publish({"image_nir": image_message(nir.astype(np.uint16) * 257, "mono16", 2)})
    stamp = Time(sec=2)
    check_pseudo_rgb(rig.wait_for("pseudo_rgb", stamp), stamp, expected)


def test_pair_mode_publishes_pseudo_rgb_disparity_depth_and_points(rig_factory, generator_weights, nir_rgb):
    nir, rgb = nir_rgb
    height, width = nir.shape
    rig = rig_factory({"translation_weights": str(generator_weights), "input_mode": "nir-rgb-pair"},
                      outputs=("pseudo_rgb", "depth", "disparity", "points2"))
    assert list(rig.node.INPUT_TOPICS) == ["left/image_rect", "right/image_rect", "left/camera_info",
                                           "right/camera_info"]
    stamp = Time(sec=5)
    left_info, right_info = camera_infos(width, height, stamp)
    rig.publish({"left/image_rect": image_message(nir, "mono8", 5),
                 "right/image_rect": image_message(np.ascontiguousarray(rgb[..., ::-1]), "rgb8", 5),
                 "left/camera_info": left_info, "right/camera_info": right_info})
    # the default pair_modality, pseudo-rgb-matched: the pseudo-RGB with the RGB view's histograms
    assert rig.node.pair_modality == "pseudo-rgb-matched" and rig.node.nir_translator is None
    check_pseudo_rgb(rig.wait_for("pseudo_rgb", stamp), stamp, offline_pseudo_rgb(generator_weights, nir, rgb))
    disparity = rig.wait_for("disparity", stamp)
    assert disparity is not None, rig.node.last_problem
    camera = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)
    assert disparity.f == pytest.approx(camera.fx) and disparity.t == pytest.approx(camera.baseline_m)
    assert (disparity.image.height, disparity.image.width) == (height, width)
    depth_msg = rig.wait_for("depth", stamp)
    assert depth_msg is not None and depth_msg.encoding == "32FC1"
    depth = conversions.image_to_numpy(depth_msg)
    assert depth.shape == (height, width) and np.any(np.isfinite(depth) & (depth > 0))
    cloud = rig.wait_for("points2", stamp)
    assert cloud is not None and (cloud.height, cloud.width) == (height, width)
    points = conversions.point_cloud2_to_array(cloud)
    finite = np.isfinite(depth)
    np.testing.assert_allclose(points["z"][finite], depth[finite], rtol=1e-5)


@pytest.mark.parametrize("modality", ["pseudo-rgb", "pseudo-rgb-matched", "pseudo-nir"])
def test_pair_modality_feeds_the_stereo_network_the_translated_pair(rig_factory, generator_weights,
                                                                     nir_generator_weights, nir_rgb, modality):
    from stereo_depth_ros.models.registry import create_estimator

    nir, rgb = nir_rgb
    height, width = nir.shape
    rig = rig_factory({"translation_weights": str(generator_weights), "input_mode": "nir-rgb-pair",
                       "pair_modality": modality, "nir_translation_weights": str(nir_generator_weights)},
                      outputs=("pseudo_rgb", "disparity"))
    stamp = Time(sec=6)
    left_info, right_info = camera_infos(width, height, stamp)
    rig.publish({"left/image_rect": image_message(nir, "mono8", 6), "right/image_rect": image_message(rgb, "bgr8", 6),
                 "left/camera_info": left_info, "right/camera_info": right_info})
    # pseudo_rgb: the left view the stereo network saw, or with pseudo-nir the plain translation of the NIR view
    check_pseudo_rgb(rig.wait_for("pseudo_rgb", stamp), stamp, offline_pseudo_rgb(
        generator_weights, nir, rgb if modality == "pseudo-rgb-matched" else None))
    msg = rig.wait_for("disparity", stamp)
    assert msg is not None, rig.node.last_problem
    to_rgb = cross_modal.CrossModalEstimator("nir-to-rgb", weights=generator_weights, backend="torch")
    to_nir = cross_modal.CrossModalEstimator("rgb-to-nir", weights=nir_generator_weights, backend="torch")
    left, right = cross_modal.same_modality_pair(nir, rgb, modality, to_rgb, to_nir)
    # in this mode an empty 'weights' is the packaged cross-spectral fine-tune
    assert Path(rig.node.estimator.weights_path) == CROSS_SPECTRAL_WEIGHTS
    offline = create_estimator("coarse-to-fine", weights=str(CROSS_SPECTRAL_WEIGHTS)).estimate(left, right)[-1]
    # as the stereo node publishes it: d = x_l - x_r - (cx_l - cx_r), NaN below 1 px and outside the right view
    expected = mask_disparity(offline, camera_infos_camera().principal_point_offset, 1.0)[1]
    published = conversions.image_to_numpy(msg.image)
    valid = np.isfinite(expected)
    assert valid.sum() > 1000  # untrained generators: a poor match, but thousands of pixels to compare
    np.testing.assert_array_equal(np.isfinite(published), valid)
    np.testing.assert_allclose(published[valid], expected[valid], atol=1e-3)


def test_bad_input_gets_clear_problems_and_no_crash(rig_factory, generator_weights, nir_rgb):
    nir, rgb = nir_rgb
    rig = rig_factory({"translation_weights": str(generator_weights)}, outputs=("pseudo_rgb",))
    rig.publish({"image_nir": image_message(rgb, "bgr8", 1)})  # a colour image on the NIR input
    assert rig.spin_until(lambda: rig.node.problems["encoding"] > 0), rig.node.problems
    assert "image_nir" in rig.node.last_problem and "mono8" in rig.node.last_problem
    rig.publish({"image_nir": image_message(nir, "mono8", 2)})
    assert rig.wait_for("pseudo_rgb", Time(sec=2)) is not None  # the next good frame is processed

    pair = rig_factory({"translation_weights": str(generator_weights), "input_mode": "nir-rgb-pair"},
                       outputs=("pseudo_rgb",))
    small_rgb = np.ascontiguousarray(rgb[:100, :150])
    stamp = Time(sec=3)
    left_info, right_info = camera_infos(nir.shape[1], nir.shape[0], stamp)
    pair.publish({"left/image_rect": image_message(nir, "mono8", 3),
                  "right/image_rect": image_message(small_rgb, "bgr8", 3),
                  "left/camera_info": left_info, "right/camera_info": right_info})
    assert pair.spin_until(lambda: pair.node.problems["image_size"] > 0), pair.node.problems
    assert "150 x 100" in pair.node.last_problem and "NIR" in pair.node.last_problem
    # the views swapped (RGB on the NIR input): an encoding problem naming the NIR input
    stamp = Time(sec=4)
    left_info, right_info = camera_infos(nir.shape[1], nir.shape[0], stamp)
    pair.publish({"left/image_rect": image_message(rgb, "bgr8", 4), "right/image_rect": image_message(nir, "mono8", 4),
                  "left/camera_info": left_info, "right/camera_info": right_info})
    assert pair.spin_until(lambda: pair.node.problems["encoding"] > 0), pair.node.problems
    assert "(NIR)" in pair.node.last_problem
    assert pair.received["pseudo_rgb"] == [] and pair.node.counters["processed"] == 0


def test_lazy_without_subscribers(rig_factory, generator_weights, nir_rgb):
    nir, _ = nir_rgb
    rig = rig_factory({"translation_weights": str(generator_weights)}, outputs=())
    for second in range(3):
        rig.publish({"image_nir": image_message(nir, "mono8", 10 + second)})
        rig.spin_until(lambda: False, timeout=0.1)
    assert not rig.node.inputs_subscribed and rig.publishers["image_nir"].get_subscription_count() == 0
    assert rig.node.counters["sets"] == 0 and rig.node.counters["processed"] == 0
    rig.subscribe("pseudo_rgb")
    assert rig.spin_until(lambda: rig.node.inputs_subscribed, timeout=10.0)


def test_bad_parameters_fail_at_start_up(context, generator_weights):
    with pytest.raises(ValueError, match="not a registered monocular depth model"):
        CrossModalNode(context=context, parameter_overrides=[
            Parameter("translation_weights", value=str(generator_weights)),
            Parameter("depth_model", value="coarse-to-fine"), Parameter("backend", value="torch")])
    from stereo_depth_ros.models.weights import WeightsError

    with pytest.raises(WeightsError, match="missing.safetensors"):
        CrossModalNode(context=context, parameter_overrides=[
            Parameter("translation_weights", value="/nonexistent/missing.safetensors")])
    with pytest.raises(WeightsError, match="missing_nir.safetensors"):
        CrossModalNode(context=context, parameter_overrides=[
            Parameter("translation_weights", value=str(generator_weights)), Parameter("backend", value="torch"),
            Parameter("input_mode", value="nir-rgb-pair"), Parameter("pair_modality", value="pseudo-nir"),
            Parameter("nir_translation_weights", value="/nonexistent/missing_nir.safetensors")])
    with pytest.raises(ValueError, match="pair_modality"):
        CrossModalNode(context=context, parameter_overrides=[
            Parameter("translation_weights", value=str(generator_weights)), Parameter("backend", value="torch"),
            Parameter("input_mode", value="nir-rgb-pair"), Parameter("pair_modality", value="nir")])


def test_bringup_config_and_interface_document():
    from stereo_depth_ros.ros import bringup_spec

    kind = bringup_spec.NODE_KINDS["cross_modal_node"]
    assert (kind.module, kind.class_name) == ("stereo_depth_ros.ros.cross_modal_node", "CrossModalNode")
    assert {r.topic for r in kind.remaps} == {"image_nir", "camera_info", "left/image_rect", "right/image_rect",
                                              "left/camera_info", "right/camera_info"}
    config = Path(__file__).resolve().parents[1] / "config" / "nir_rgb.yaml"
    plans = bringup_spec.plan_nodes(config)
    assert [plan.name for plan in plans] == ["cross_modal_node"]
    parameters = bringup_spec.file_parameters(plans[0])
    assert set(parameters) <= set(PARAMETER_SPECS) and parameters["input_mode"] == "nir-rgb-pair"
    text = (Path(__file__).resolve().parents[1] / "docs" / "ros_interface.md").read_text()
    section = text[text.index("## cross_modal_node"):]
    for name in ["image_nir", "camera_info", "left/image_rect", "right/image_rect", "pseudo_rgb", "depth",
                 "disparity", "points2"] + list(PARAMETER_SPECS):
        assert f"`{name}`" in section, name


def test_launch_argument_cross_modal_adds_the_node(monkeypatch):
    """``cross_modal:=true`` adds cross_modal_node with config/nir_rgb.yaml beside the default stereo node; off by
    default."""
    import importlib

    launch_test = importlib.import_module("test_bringup_launch")
    fixture = getattr(launch_test.launch_module, "__wrapped__", launch_test.launch_module)
    module, launch = fixture(monkeypatch)
    arguments, nodes, _, _ = launch_test.evaluate_launch(module, launch)
    assert len(arguments["cross_modal"].description) > 15
    assert [n.kwargs["executable"] for n in nodes] == ["stereo_depth_node"]
    _, nodes, _, _ = launch_test.evaluate_launch(module, launch, cross_modal="true",
                                                 nir_left_image="/nir/image_rect")
    assert [n.kwargs["executable"] for n in nodes] == ["stereo_depth_node", "cross_modal_node"]
    cross = nodes[1].kwargs
    assert cross["parameters"][0].endswith("config/nir_rgb.yaml") and cross["namespace"] == "/stereo"
    remappings = dict(cross["remappings"])
    assert remappings["left/image_rect"] == "/nir/image_rect" and remappings["depth"] == "cross_modal/depth"
    assert "left/image_rect" not in dict(nodes[0].kwargs["remappings"])  # the stereo node keeps its inputs


def test_pair_mode_stereo_weights_default_to_the_cross_spectral_fine_tune(context, generator_weights):
    from stereo_depth_ros.models.estimator import default_weights_path

    def node(**parameters):
        overrides = [Parameter("translation_weights", value=str(generator_weights)),
                     Parameter("backend", value="torch"), Parameter("input_mode", value="nir-rgb-pair")]
        return CrossModalNode(context=context, parameter_overrides=overrides + [
            Parameter(name, value=value) for name, value in parameters.items()])

    assert CROSS_SPECTRAL_WEIGHTS.is_file()
    for made, expected in ((node(), CROSS_SPECTRAL_WEIGHTS),
                           (node(weights=str(default_weights_path())), default_weights_path())):
        try:
            assert Path(made.estimator.weights_path) == expected
        finally:
            made.destroy_node()
    sgbm = node(method="sgbm")
    try:
        assert sgbm.estimator.name == "sgbm"  # no network weights for SGBM
    finally:
        sgbm.destroy_node()
