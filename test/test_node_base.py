"""PerceptionNode, the base of every node: a one-input node and a two-input node written as the next families
will write them (only INPUT_TOPICS, OUTPUT_TOPICS, PARAMETERS and process), parameter tables, statistics and
diagnostic levels."""

from __future__ import annotations

import os

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from stereo_depth_ros.ros import conversions  # noqa: E402
from stereo_depth_ros.ros.diagnostics import NodeStatistics, diagnostic_status, status_values  # noqa: E402
from stereo_depth_ros.ros.node_base import COMMON_PARAMETERS, PerceptionNode, SkipSet  # noqa: E402
from stereo_depth_ros.ros.parameters import ParameterSpec, parameter_table, validate_parameters  # noqa: E402
from ros_rig import NodeRig, closing_factory, ros_context  # noqa: E402

DOMAIN_ID = 150 + (os.getpid() + 40) % 80
WAIT_S = 20.0


class ThresholdNode(PerceptionNode):
    """One input, one output (the shape of a segmentation node): image -> mask of pixels above a threshold."""

    DEFAULT_NODE_NAME = "threshold_node"
    INPUT_TOPICS = {"image": Image}
    OUTPUT_TOPICS = {"mask": Image}
    PARAMETERS = (ParameterSpec("threshold", 128, "Grey level above which a pixel is in the mask.",
                                integer_range=(0, 255)),
                  ParameterSpec("low", 0, "Must stay below 'threshold'.", integer_range=(0, 255)))

    def check_parameters(self, values):
        if values["low"] >= values["threshold"]:
            return f"parameter 'low' ({values['low']}) must be below 'threshold' ({values['threshold']})"
        return None

    def process(self, inputs):
        (image,) = inputs
        pixels = conversions.image_to_numpy(image, "image")
        if pixels.ndim != 2:
            raise SkipSet("encoding", f"image: expected a mono8 image (field 'encoding'), got {image.encoding!r}")
        mask = (pixels > self.settings["threshold"]).astype(np.uint8) * 255
        return [("mask", conversions.numpy_to_image(mask, "mono8", image.header))] if self.wanted("mask") else []


class FusionNode(PerceptionNode):
    """Two synchronised inputs (the shape of a NIR-to-RGB node): NIR + RGB -> their per-pixel mean."""

    DEFAULT_NODE_NAME = "fusion_node"
    INPUT_TOPICS = {"nir/image": Image, "rgb/image": Image}
    OUTPUT_TOPICS = {"fused": Image}

    def process(self, inputs):
        nir, rgb = (conversions.image_to_numpy(m).astype(np.uint16) for m in inputs)
        fused = ((nir + rgb) // 2).astype(np.uint8)
        return [("fused", conversions.numpy_to_image(fused, "mono8", inputs[0].header))]


@pytest.fixture(scope="module")
def context():
    yield from ros_context(DOMAIN_ID)


class Harness(NodeRig):
    def __init__(self, context, node_class, outputs, parameters=None):
        super().__init__(context, node_class, dict({"input_qos": "reliable"}, **(parameters or {})),
                         prefix="base_test")
        self.received = {topic: [] for topic in outputs}
        for topic in outputs:
            self.helper.create_subscription(Image, topic, self.received[topic].append, 10)
        self.publishers = {topic: self.helper.create_publisher(Image, topic, QoSProfile(depth=10))
                           for topic in node_class.INPUT_TOPICS}
        assert self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in self.publishers.values()))

    def publish(self, topic, pixels, seconds):
        header = Header(stamp=Time(sec=int(seconds), nanosec=int(round(seconds % 1 * 1e9))), frame_id="camera")
        self.publishers[topic].publish(conversions.numpy_to_image(pixels, "mono8", header))
        return header.stamp


@pytest.fixture
def harness(context):
    yield from closing_factory(lambda *args, **kwargs: Harness(context, *args, **kwargs))


def _grey(seed, shape=(12, 16)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_one_input_node_needs_no_synchronizer(harness):
    rig = harness(ThresholdNode, ["mask"], {"threshold": 100})
    image = _grey(1)
    stamp = rig.publish("image", image, 1.5)
    assert rig.spin_until(lambda: rig.received["mask"])
    mask = conversions.image_to_numpy(rig.received["mask"][0])
    np.testing.assert_array_equal(mask, np.where(image > 100, 255, 0))
    assert rig.received["mask"][0].header.stamp == stamp and rig.node.counters["sets"] == 1
    # A bad message is a counted, named problem; the next one is processed.
    rig.publishers["image"].publish(conversions.numpy_to_image(np.dstack([image] * 3), "bgr8"))
    assert rig.spin_until(lambda: rig.node.problems["encoding"] == 1)
    assert "field 'encoding'" in rig.node.last_problem and rig.node.counters["skipped"] == 1
    rig.publish("image", image, 2.0)
    assert rig.spin_until(lambda: len(rig.received["mask"]) == 2)


def test_two_input_node_synchronises_its_inputs(harness):
    rig = harness(FusionNode, ["fused"], {"queue_size": 2})
    nir, rgb = _grey(2), _grey(3)
    rig.publish("rgb/image", rgb, 3.0)
    rig.publish("nir/image", nir, 3.0)
    assert rig.spin_until(lambda: rig.received["fused"])
    np.testing.assert_array_equal(conversions.image_to_numpy(rig.received["fused"][0]),
                                  ((nir.astype(np.uint16) + rgb) // 2).astype(np.uint8))
    for i in range(4):  # stamps 0.3 s apart never match exactly: reported once the queues turn over
        rig.publish("nir/image", nir, 10.0 + i)
        rig.publish("rgb/image", rgb, 10.3 + i)
        rig.spin_until(lambda: False, timeout=0.05)
    assert rig.spin_until(lambda: rig.node.problems["unsynchronized"] > 0)
    assert "header.stamp" in rig.node.last_problem and len(rig.received["fused"]) == 1
    # Approximate sync (set at run time) accepts them.
    assert all(r.successful for r in rig.node.set_parameters([Parameter("approximate_sync", value=True),
                                                              Parameter("slop", value=0.5)]))
    rig.publish("nir/image", nir, 20.0)
    rig.publish("rgb/image", rgb, 20.3)
    assert rig.spin_until(lambda: len(rig.received["fused"]) == 2)


def test_parameters_from_the_table_are_validated_on_set(harness, context):
    rig = harness(ThresholdNode, ["mask"])
    node = rig.node
    descriptor = node.describe_parameter("threshold")
    assert (descriptor.integer_range[0].from_value, descriptor.integer_range[0].to_value) == (0, 255)
    assert node.describe_parameter("input_qos").additional_constraints == "one of: auto, sensor_data, reliable"
    assert node.describe_parameter("output_qos").read_only
    result = node.set_parameters([Parameter("low", value=200)])[0]  # the subclass's cross-parameter check
    assert not result.successful and "'low'" in result.reason and node.settings["low"] == 0
    result = node.set_parameters([Parameter("queue_size", value=0)])[0]  # a common parameter's range
    assert not result.successful and "queue_size" in result.reason
    assert node.set_parameters([Parameter("threshold", value=10)])[0].successful and node.settings["threshold"] == 10
    with pytest.raises(ValueError, match="'low'"):
        ThresholdNode(context=context, parameter_overrides=[Parameter("low", value=128)])

    class Redeclaring(ThresholdNode):
        PARAMETERS = (ParameterSpec("queue_size", 3, "Clashes with the common parameter."),)

    with pytest.raises(ValueError, match="'queue_size' is declared twice"):
        Redeclaring(context=context)


def test_destroy_node_joins_the_worker(context):
    node = ThresholdNode(context=context, namespace="/base_test_destroy")
    worker = node._worker
    assert worker.is_alive()
    node.destroy_node()
    assert not worker.is_alive()
    node.destroy_node()  # idempotent


class ShutdownDuringProcessNode(ThresholdNode):
    """Its context is shut down while a set is processed (Ctrl-C or SIGTERM mid-inference), then it fails."""

    def process(self, inputs):
        rclpy.shutdown(context=self.context)
        raise RuntimeError("publisher's context is invalid")


def test_a_set_in_flight_at_shutdown_is_dropped_without_a_problem():
    """A node stopped while its worker processes a set must not report that set as an internal error (nothing
    can log or publish any more), while the same failure during normal running is one."""
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = ShutdownDuringProcessNode(context=ctx, namespace="/base_test_shutdown")
    try:
        frame = conversions.numpy_to_image(_grey(1), "mono8", Header(frame_id="camera"))
        assert node.process_set(frame) is False
        assert node.problems["internal"] == 0 and node.counters["skipped"] == 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_a_failure_while_running_is_an_internal_problem(context):
    class FailingNode(ThresholdNode):
        def process(self, inputs):
            raise RuntimeError("boom")

    node = FailingNode(context=context, namespace="/base_test_failing")
    try:
        assert node.process_set(conversions.numpy_to_image(_grey(2), "mono8", Header(frame_id="camera"))) is False
        assert node.problems["internal"] == 1 and "boom" in node.last_problem
    finally:
        node.destroy_node()


def test_parameter_spec_checks_and_tables():
    queue = ParameterSpec("queue_size", 5, "Queue.", integer_range=(1, 100))
    mode = ParameterSpec("mode", "a", "Mode.", choices=("a", "b"))
    scale = ParameterSpec("scale", 1.0, "Scale.", float_range=(0.0, 4.0))
    assert queue.check(5) is None and "[1, 100], got 0" in queue.check(0)
    assert "one of a, b, got 'c'" in mode.check("c")
    assert "finite" in scale.check(float("nan")) and "[0.0, 4.0]" in scale.check(4.5)
    table = parameter_table([queue], [mode, scale])
    assert list(table) == ["queue_size", "mode", "scale"]
    assert validate_parameters(table, {"queue_size": 2, "mode": "b", "scale": 0.5}) is None
    assert "scale" in validate_parameters(table, {"queue_size": 2, "mode": "b", "scale": -1.0})
    assert {spec.name for spec in COMMON_PARAMETERS} == {"approximate_sync", "slop", "queue_size", "input_qos",
                                                          "output_qos", "output_history_depth"}


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_statistics_rates_percentiles_and_levels():
    clock = FakeClock()
    statistics = NodeStatistics(latency_window=10, rate_window_s=2.0, clock=clock)
    for i in range(20):  # 10 Hz input for 2 s; every other set dropped; latencies 0.1 .. 1.0 s
        clock.now += 0.1
        statistics.input_set()
        if i % 2:
            statistics.dropped()
        else:
            statistics.processed(latency_s=0.1 * (i // 2 + 1), processing_s=0.05, stamp_latency_s=None,
                                 published=True)
    snapshot = statistics.snapshot()
    assert snapshot.input_rate_hz == pytest.approx(10.0, abs=0.5) and snapshot.output_rate_hz == pytest.approx(5.0,
                                                                                                            abs=0.5)
    assert snapshot.latency_p50_s == pytest.approx(0.55) and snapshot.latency_p95_s == pytest.approx(0.955)
    assert snapshot.dropped == 10 and snapshot.period["dropped"] == 10 and np.isnan(snapshot.stamp_latency_p50_s)
    status = diagnostic_status("n: processing", "/n", snapshot, subscribed=True, extra={"backend": "onnx"})
    values = status_values(status)
    assert status.level == DiagnosticStatus.OK and "dropped" in status.message
    assert values["dropped sets"] == "10" and values["latency p95 (ms)"] == "955.0" and values["backend"] == "onnx"
    # Next period: one skipped set among processed ones is a warning; only skipped sets are an error.
    statistics.processed(0.1, 0.05, None, True)
    statistics.skipped()
    statistics.problem("encoding", "left/image_rect: unsupported encoding 'yuv422' (field 'encoding')")
    assert diagnostic_status("n", "/n", statistics.snapshot(), True).level == DiagnosticStatus.WARN
    statistics.skipped()
    status = diagnostic_status("n", "/n", statistics.snapshot(), True)
    assert status.level == DiagnosticStatus.ERROR and "field 'encoding'" in status.message
    idle = diagnostic_status("n", "/n", statistics.snapshot(), subscribed=False)
    assert idle.level == DiagnosticStatus.OK and "idle" in idle.message


@pytest.mark.parametrize("name", ["stereo_depth_ros.ros.parameters", "stereo_depth_ros.ros.diagnostics",
                                  "stereo_depth_ros.ros.node_base", "stereo_depth_ros.ros.stereo_node"])
def test_docstring_examples_of_the_node_modules(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
