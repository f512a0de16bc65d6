"""The monocular depth node with real rclpy: a real image published, depth / points2 / depth_filled received.

Stand-in monocular models (tiny networks behind the package's MonocularEstimator) are registered in this test only;
every wait is bounded; every test has its own namespace.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from stereo_depth_ros.models.mono_estimator import MonocularEstimator  # noqa: E402
from stereo_depth_ros.models.registry import ModelSpec, _REGISTRY, register_model  # noqa: E402
from stereo_depth_ros.ros import conversions  # noqa: E402
from stereo_depth_ros.ros.mono_node import PARAMETER_SPECS, MonoDepthNode, apply_depth_limits  # noqa: E402
from ros_rig import NodeRig, closing_factory, ros_context  # noqa: E402

DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID", "53"))
WAIT_S = 20.0
FX = 250.0


class Brightness(torch.nn.Module):
    """Relative depth 1 + 2 * mean(RGB): a stand-in network whose output is known for any image."""

    def forward(self, image):
        return 1.0 + 2.0 * image.mean(1, keepdim=True)


def expected_relative(image_bgr: np.ndarray) -> np.ndarray:
    return (1.0 + 2.0 * image_bgr.astype(np.float32).mean(2) / 255.0).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def stand_in_models():
    for name, metric in (("test-node-metric", True), ("test-node-relative", False)):
        register_model(ModelSpec(name=name, family="monocular-depth", input_kind="image", output_kinds=("depth",),
                                 build=lambda n=name, m=metric, **_: MonocularEstimator(n, Brightness(), metric=m,
                                                                                        backend="torch"),
                                 options=("device",)))
    yield
    for name in ("test-node-metric", "test-node-relative"):
        _REGISTRY.pop(name, None)


@pytest.fixture(scope="module")
def context():
    yield from ros_context(DOMAIN_ID)


def camera_info(width, height, stamp) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.header = Header(stamp=stamp, frame_id="camera_optical_frame")
    info.k = [FX, 0.0, width / 2, 0.0, FX, height / 2, 0.0, 0.0, 1.0]
    info.p = [FX, 0.0, width / 2, 0.0, 0.0, FX, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class Rig(NodeRig):
    """The node plus a helper node that publishes image, camera_info, stereo_depth and records outputs."""

    def __init__(self, context, parameters, outputs=("depth",)):
        super().__init__(context, MonoDepthNode, dict({"input_qos": "reliable"}, **parameters), prefix="mono_test")
        self.subscriptions = {topic: self.subscribe(topic) for topic in outputs}
        qos = QoSProfile(depth=10)
        self.image_pub = self.helper.create_publisher(Image, "image", qos)
        self.info_pub = self.helper.create_publisher(CameraInfo, "camera_info", qos)
        self.stereo_pub = self.helper.create_publisher(Image, "stereo_depth", qos)
        if outputs:
            assert self.spin_until(lambda: self.image_pub.get_subscription_count() > 0
                                   and self.info_pub.get_subscription_count() > 0), "discovery did not complete"

    def subscribe(self, topic):
        return self.record(topic, PointCloud2 if topic == "points2" else Image)

    def publish(self, image_bgr, seconds, image_msg=None, info=None):
        stamp = Time(sec=int(seconds), nanosec=0)
        h, w = image_bgr.shape[:2]
        self.image_pub.publish(image_msg or conversions.numpy_to_image(
            image_bgr, "bgr8", Header(stamp=stamp, frame_id="camera_optical_frame")))
        self.info_pub.publish(info or camera_info(w, h, stamp))
        return stamp


@pytest.fixture
def rig_factory(context):
    yield from closing_factory(lambda *args, **kwargs: Rig(context, *args, **kwargs))


def test_metric_model_publishes_depth_and_points_for_a_real_image(rig_factory, motorcycle_small):
    image = motorcycle_small[0]
    rig = rig_factory({"model": "test-node-metric", "max_depth": 2.9}, outputs=("depth", "points2"))
    stamp = rig.publish(image, 1)
    depth_msg = rig.wait_for("depth", stamp)
    assert depth_msg is not None, rig.node.last_problem
    assert depth_msg.encoding == "32FC1" and (depth_msg.height, depth_msg.width) == image.shape[:2]
    depth = conversions.image_to_numpy(depth_msg)
    expected = expected_relative(image)
    finite = np.isfinite(depth)
    np.testing.assert_allclose(depth[finite], expected[finite], rtol=1e-4)
    assert np.all(np.isposinf(depth[expected > 2.9 + 1e-4]))  # REP-117: farther than max_depth
    assert rig.node.last_scale == (1.0, "model")
    cloud = rig.wait_for("points2", stamp)
    assert cloud is not None and (cloud.height, cloud.width) == image.shape[:2]
    points = conversions.point_cloud2_to_array(cloud)
    row, column = image.shape[0] // 2 + 10, image.shape[1] // 2 + 20
    assert np.isfinite(depth[row, column])
    assert points["z"][row, column] == pytest.approx(depth[row, column], rel=1e-5)
    assert points["x"][row, column] == pytest.approx((column - image.shape[1] / 2) * depth[row, column] / FX,
                                                     rel=1e-4)
    assert np.all(np.isnan(points["z"][~finite]))


def test_scale_free_model_without_a_scale_is_a_clear_problem_then_depth_scale_works(rig_factory,
                                                                                   motorcycle_small):
    image = motorcycle_small[0]
    rig = rig_factory({"model": "test-node-relative"})
    rig.publish(image, 1)
    assert rig.spin_until(lambda: rig.node.problems["scale"] > 0), rig.node.problems
    assert "depth_scale" in rig.node.last_problem and rig.received["depth"] == []
    rig.node.set_parameters([Parameter("depth_scale", value=0.01)])
    stamp = rig.publish(image, 2)
    depth_msg = rig.wait_for("depth", stamp)
    assert depth_msg is not None, rig.node.last_problem
    np.testing.assert_allclose(conversions.image_to_numpy(depth_msg), 0.01 * expected_relative(image), rtol=1e-4)
    assert rig.node.last_scale == (0.01, "depth_scale")


def test_alignment_to_stereo_and_depth_filled(rig_factory, motorcycle_small):
    """Stereo depth = 0.05 x the model's relative depth, with a NaN band of 20 columns and +inf occlusions: the
    node's depth is aligned to 0.05 x relative, and depth_filled equals stereo where valid and the aligned depth in
    the band and occlusions."""
    image = motorcycle_small[0]
    h, w = image.shape[:2]
    rig = rig_factory({"model": "test-node-relative"}, outputs=("depth", "depth_filled"))
    assert rig.spin_until(lambda: rig.stereo_pub.get_subscription_count() > 0), "no stereo_depth subscription"
    truth = 0.05 * expected_relative(image)
    stereo = truth.copy()
    stereo[:, :20] = np.nan
    stereo[40:50, 60:90] = np.inf
    stamp = Time(sec=3)
    rig.stereo_pub.publish(conversions.numpy_to_image(stereo, "32FC1", Header(stamp=stamp, frame_id="f")))
    rig.spin_until(lambda: False, timeout=0.3)
    rig.publish(image, 3)
    depth_msg = rig.wait_for("depth", stamp)
    assert depth_msg is not None, rig.node.last_problem
    assert rig.node.last_scale[1] == "stereo" and rig.node.last_scale[0] == pytest.approx(0.05, rel=1e-4)
    np.testing.assert_allclose(conversions.image_to_numpy(depth_msg), truth, rtol=1e-4)
    filled_msg = rig.wait_for("depth_filled", stamp)
    assert filled_msg is not None, rig.node.last_problem
    filled = conversions.image_to_numpy(filled_msg)
    assert np.all(np.isfinite(filled))
    np.testing.assert_allclose(filled, truth, rtol=1e-4)
    assert (h, w) == filled.shape


def test_bad_input_gets_the_base_class_errors(rig_factory, motorcycle_small):
    image = motorcycle_small[0]
    h, w = image.shape[:2]
    rig = rig_factory({"model": "test-node-metric"})
    wrong_info = camera_info(640, 480, Time(sec=1))
    rig.publish(image, 1, info=wrong_info)
    assert rig.spin_until(lambda: rig.node.problems["camera_info_size"] > 0), rig.node.problems
    assert "640 x 480" in rig.node.last_problem
    bad = Image(header=Header(stamp=Time(sec=2)), height=h, width=w, encoding="yuv422", step=w * 2)
    bad.data = bytes(h * w * 2)
    rig.publish(image, 2, image_msg=bad)
    assert rig.spin_until(lambda: rig.node.problems["encoding"] > 0), rig.node.problems
    assert "'yuv422'" in rig.node.last_problem
    stamp = rig.publish(image, 3)
    assert rig.wait_for("depth", stamp) is not None  # the next good frame is processed


def test_lazy_without_subscribers(rig_factory, motorcycle_small):
    image = motorcycle_small[0]
    rig = rig_factory({"model": "test-node-relative"}, outputs=())
    for i in range(3):
        rig.publish(image, 10 + i)
        rig.spin_until(lambda: False, timeout=0.1)
    assert not rig.node.inputs_subscribed and rig.image_pub.get_subscription_count() == 0
    assert rig.stereo_pub.get_subscription_count() == 0  # the stereo node stays lazy too
    assert rig.node.counters["sets"] == 0
    rig.subscribe("depth")
    assert rig.spin_until(lambda: rig.node.inputs_subscribed and rig.stereo_pub.get_subscription_count() > 0)


def test_unknown_model_and_bad_parameters_fail_at_start_up(context):
    with pytest.raises(ValueError, match="not a registered monocular depth model; registered: .*test-node"):
        MonoDepthNode(context=context, parameter_overrides=[Parameter("model", value="coarse-to-fine")])
    with pytest.raises(ValueError, match="max_depth"):
        MonoDepthNode(context=context, parameter_overrides=[Parameter("model", value="test-node-metric"),
                                                            Parameter("min_depth", value=1.0),
                                                            Parameter("max_depth", value=0.5)])


def test_depth_limits_follow_rep117():
    depth = apply_depth_limits(np.array([[np.nan, -1.0, 0.05, 0.3, 2.0]], np.float32), 0.1, 1.0)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[0, 1])
    assert depth[0, 2] == -np.inf and depth[0, 3] == np.float32(0.3) and depth[0, 4] == np.inf


def test_interface_document_lists_every_topic_and_parameter():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "ros_interface.md").read_text()
    section = text[text.index("mono_depth_node"):]
    for name in list(MonoDepthNode.INPUT_TOPICS) + list(MonoDepthNode.OUTPUT_TOPICS) + ["stereo_depth"] + \
            list(PARAMETER_SPECS):
        assert f"`{name}`" in section, name
