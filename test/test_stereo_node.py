"""The stereo node with real rclpy: real images published on its topics, outputs received and checked.

Every test runs in its own rclpy Context on a ROS domain chosen from the process id (so parallel test runs on one
machine do not hear each other) and in its own namespace; every wait is bounded.
"""

from __future__ import annotations

import array
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from stereo_depth_ros.geometry import StereoCameraModel, reproject_disparity_to_points  # noqa: E402
from stereo_depth_ros.models.coarse_to_fine import WeightsError  # noqa: E402
from stereo_depth_ros.models.sgbm import SGBMEstimator  # noqa: E402
from stereo_depth_ros.models.base import StereoEstimator  # noqa: E402
from stereo_depth_ros.models.registry import create_estimator  # noqa: E402
from stereo_depth_ros.ros import conversions, stereo_node  # noqa: E402
from stereo_depth_ros.ros.diagnostics import status_values  # noqa: E402
from stereo_depth_ros.ros.qos import AdaptiveSubscription, choose_qos, input_qos, output_qos  # noqa: E402
from stereo_depth_ros.ros.stereo_node import PARAMETER_SPECS, StereoDepthNode, main  # noqa: E402
from ros_rig import WAIT_S, NodeRig, closing_factory, ros_context  # noqa: E402

INPUT_TOPICS = tuple(StereoDepthNode.INPUT_TOPICS)
OUTPUT_TOPICS = StereoDepthNode.OUTPUT_TOPICS

DOMAIN_ID = 150 + os.getpid() % 80  # 150..229: valid for Fast DDS, and unlikely to collide with a parallel run
FOCAL_PX = 400.0
BASELINE_M = 0.12
FRAME_ID = "stereo_left_optical_frame"


@pytest.fixture(scope="module")
def context():
    yield from ros_context(DOMAIN_ID)


def camera_info(width, height, tx=0.0, cx=92.0, fx=FOCAL_PX, stamp=None) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.header = Header(stamp=stamp or Time(), frame_id=FRAME_ID)
    info.k = [fx, 0.0, cx, 0.0, fx, 62.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, tx, 0.0, fx, 62.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class Rig(NodeRig):
    """The stereo node under test plus a helper node that publishes the inputs and records the outputs."""

    def __init__(self, context, parameters=None, outputs=tuple(OUTPUT_TOPICS), input_qos_profile=None,
                 node_kwargs=None, wait_for_inputs=True):
        super().__init__(context, StereoDepthNode, parameters, prefix="stereo_test", node_kwargs=node_kwargs)
        types = dict(OUTPUT_TOPICS, **{t: DisparityImage for t in outputs if t.startswith("disparity/stage_")})
        self.outputs = list(outputs)
        for topic in self.outputs:
            self.subscribe(topic, types[topic])
        qos = input_qos_profile or QoSProfile(depth=10)  # reliable, like most camera drivers
        self.publishers = [self.helper.create_publisher(t, topic, qos)
                           for topic, t in zip(INPUT_TOPICS, (Image, Image, CameraInfo, CameraInfo))]
        assert self.spin_until(lambda: (not wait_for_inputs or all(p.get_subscription_count() > 0
                                                                   for p in self.publishers))
                               and all(self.node.output_subscription_count(t) > 0 for t in self.outputs)), \
            "discovery between the test helper and the node did not complete"

    def subscribe(self, topic, msg_type):
        """Record every message on an output topic (and when it arrived); returns the subscription."""
        return self.record(topic, msg_type)

    def publish(self, left, right, left_info, right_info):
        for publisher, msg in zip(self.publishers, (left, right, left_info, right_info)):
            publisher.publish(msg)

    def publish_frame(self, seconds, left_bgr, right_bgr, encoding="bgr8", tx=-FOCAL_PX * BASELINE_M,
                      right_cx=92.0, right_seconds=None):
        """Publish one stereo frame stamped ``seconds``; returns the stamp."""
        stamp = _stamp(seconds)
        header = Header(stamp=stamp, frame_id=FRAME_ID)
        right_header = Header(stamp=_stamp(right_seconds) if right_seconds is not None else stamp,
                              frame_id="stereo_right_optical_frame")
        h, w = left_bgr.shape[:2]
        images = []
        for pixels, hdr in ((left_bgr, header), (right_bgr, right_header)):
            if encoding == "rgb8":
                pixels = pixels[..., ::-1]
            images.append(conversions.numpy_to_image(pixels, encoding, hdr))
        self.publish(images[0], images[1], camera_info(w, h, stamp=stamp),
                     camera_info(w, h, tx=tx, cx=right_cx, stamp=stamp))
        return stamp


def _stamp(seconds) -> Time:
    return Time(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)))


@pytest.fixture
def rig_factory(context):
    yield from closing_factory(lambda **kwargs: Rig(context, **kwargs))


SGBM = {"method": "sgbm", "max_disparity": 32, "input_qos": "reliable"}


class FakeEstimator(StereoEstimator):
    """A stereo estimator with a known output (a given map, or 10 px everywhere) and a known processing time."""

    name = "fake"
    backend = "fake"

    def __init__(self, disparity=None, delay_s=0.0, max_disparity=64):
        self.disparity, self.delay_s, self._max_disparity = disparity, delay_s, max_disparity
        self.calls = 0
        self.prepared = []

    @property
    def num_stages(self):
        return 1

    @property
    def max_disparity(self):
        return self._max_disparity

    def disparity_range(self):
        return 0.0, float(self._max_disparity)

    def prepare(self, height, width):
        self.prepared.append((height, width))

    def estimate(self, left_bgr, right_bgr, max_stage=None):
        self.calls += 1
        time.sleep(self.delay_s)
        if self.disparity is None:
            return [np.full(left_bgr.shape[:2], 10.0, np.float32)]
        return [self.disparity.copy()]


@pytest.fixture
def fake_estimator(monkeypatch):
    """Every StereoDepthNode created in the test gets this FakeEstimator (through the registry call)."""
    estimator = FakeEstimator()
    monkeypatch.setattr(stereo_node, "create_estimator", lambda name, **options: estimator)
    return estimator


# ------------------------------------------------------------------------------------------------------ outputs


@pytest.mark.parametrize("encoding, right_cx", [("bgr8", 92.0), ("rgb8", 90.0)])
def test_sgbm_node_publishes_disparity_depth_and_points(rig_factory, motorcycle_small, encoding, right_cx):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters=SGBM)
    stamp = rig.publish_frame(5.25, left, right, encoding=encoding, right_cx=right_cx)
    disparity_msg = rig.wait_for("disparity", stamp)
    depth_msg, cloud_msg = rig.wait_for("depth", stamp), rig.wait_for("points2", stamp)
    assert disparity_msg is not None and depth_msg is not None and cloud_msg is not None, rig.node.last_problem

    # Header: the input's stamp and the left camera's optical frame, on every output.
    for msg in (disparity_msg, disparity_msg.image, depth_msg, cloud_msg):
        assert msg.header.stamp == stamp and msg.header.frame_id == FRAME_ID
    # DisparityImage filled like stereo_image_proc: f, t from camera_info, 1/16 px steps; the range in the
    # message's convention (d = x_l - x_r - (cx_l - cx_r)): min = min_disparity (auto: 1 px without max_depth).
    offset = 92.0 - right_cx
    assert disparity_msg.image.encoding == "32FC1"
    assert disparity_msg.f == pytest.approx(FOCAL_PX) and disparity_msg.t == pytest.approx(BASELINE_M)
    assert (disparity_msg.min_disparity, disparity_msg.max_disparity, disparity_msg.delta_d) == (
        1.0, 31.0 - offset, 0.0625)
    window = disparity_msg.valid_window
    assert (window.x_offset, window.y_offset) == (32 + 2 - 1, 2) and window.x_offset + window.width <= left.shape[1]
    # The disparity is the core's SGBM result on the BGR pair (so the colour conversion was right), minus the
    # principal point offset cx_l - cx_r as DisparityImage defines it, NaN below min_disparity.
    disparity = conversions.image_to_numpy(disparity_msg.image)
    sgbm = SGBMEstimator(num_disparities=32).estimate(left, right)[0]
    in_view = sgbm - np.float32(offset)
    expected = np.where(in_view >= 1.0, in_view, np.nan)
    np.testing.assert_array_equal(disparity, expected)
    valid = np.isfinite(disparity)
    assert 0.5 < valid.mean() < 1.0  # real images: mostly valid, with invalid pixels (left border, occlusions)

    # Depth follows REP-117: f B / d where valid, +inf (too far) for 0 < d < min_disparity, NaN without a match.
    depth = conversions.image_to_numpy(depth_msg)
    assert depth_msg.encoding == "32FC1" and depth.shape == disparity.shape
    np.testing.assert_allclose(depth[valid], FOCAL_PX * BASELINE_M / disparity[valid], rtol=1e-6)
    with np.errstate(invalid="ignore"):
        too_far = (in_view > 0) & (in_view < 1.0)
    assert (depth[too_far] == np.inf).all()
    assert np.isnan(depth[~np.isfinite(in_view)]).all()

    assert (cloud_msg.height, cloud_msg.width) == disparity.shape
    assert (cloud_msg.point_step, cloud_msg.row_step, cloud_msg.is_dense) == (16, 16 * disparity.shape[1], False)
    assert [(f.name, f.offset) for f in cloud_msg.fields] == [("x", 0), ("y", 4), ("z", 8), ("rgb", 12)]
    cloud = conversions.point_cloud2_to_array(cloud_msg)
    calibration = StereoCameraModel(FOCAL_PX, 92.0, 62.0, BASELINE_M, cx_right=right_cx)
    points = reproject_disparity_to_points(disparity, calibration)
    for i, axis in enumerate("xyz"):
        np.testing.assert_allclose(cloud[axis][valid], points[..., i][valid], rtol=1e-6)
        assert np.isnan(cloud[axis][~valid]).all()
    np.testing.assert_array_equal(cloud["rgb"].view(np.uint32)[valid], conversions.pack_rgb(left)[valid])
    assert rig.spin_until(lambda: rig.node.counters["processed"] == 1) and not rig.node.problems


def test_network_node_publishes_every_stage(rig_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    stages = [f"disparity/stage_{i}" for i in range(4)]
    rig = rig_factory(parameters={"method": "coarse-to-fine", "publish_stages": True, "output_stage": 1,
                                  "input_qos": "reliable"},
                      outputs=("disparity", "depth") + tuple(stages))
    stamp = rig.publish_frame(7.0, left, right)
    msgs = {topic: rig.wait_for(topic, stamp, timeout=60.0) for topic in ["disparity", "depth"] + stages}
    assert all(m is not None for m in msgs.values()), (rig.node.last_problem, sorted(rig.received))
    maps = {topic: conversions.image_to_numpy(m.image) for topic, m in msgs.items() if topic != "depth"}
    # The node publishes what the estimator gives offline on the same pair (same weights, same stage), with NaN
    # only where the safe-output rules say: below min_disparity (1 px) or matching outside the right image.
    offline = create_estimator("coarse-to-fine").estimate(left, right, max_stage=3)
    columns = np.arange(left.shape[1])[None, :]
    for stage in range(4):
        published = maps[f"disparity/stage_{stage}"]
        valid = (offline[stage] >= 1.0) & (offline[stage] <= columns)
        np.testing.assert_allclose(published[valid], offline[stage][valid], atol=1e-3)
        assert np.isnan(published[~valid]).all() and valid.mean() > 0.8, stage
        assert msgs[f"disparity/stage_{stage}"].max_disparity == rig.node.estimator.max_disparity
    # 'disparity' carries the stage chosen by output_stage; the stages are distinct maps.
    np.testing.assert_array_equal(maps["disparity"], maps["disparity/stage_1"])
    assert not np.array_equal(maps["disparity/stage_0"], maps["disparity/stage_3"], equal_nan=True)
    depth = conversions.image_to_numpy(msgs["depth"])
    valid = np.isfinite(maps["disparity"])
    np.testing.assert_allclose(depth[valid], FOCAL_PX * BASELINE_M / maps["disparity"][valid], rtol=1e-6)


def test_uncalibrated_camera_info_gives_disparity_only(rig_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters=SGBM)
    stamp = _stamp(3.0)
    header = Header(stamp=stamp, frame_id=FRAME_ID)
    empty_info = CameraInfo(header=header)  # K and P all zero, size unset: an uncalibrated driver
    rig.publish(conversions.numpy_to_image(left, "bgr8", header), conversions.numpy_to_image(right, "bgr8", header),
                empty_info, empty_info)
    disparity_msg = rig.wait_for("disparity", stamp)
    assert disparity_msg is not None, rig.node.last_problem
    assert disparity_msg.f == 0.0 and disparity_msg.t == 0.0
    rig.spin_for(0.3)
    assert rig.received["depth"] == [] and rig.received["points2"] == []
    assert rig.node.problems["calibration"] == 1 and "field 'p'" in rig.node.last_problem
    # A calibrated frame afterwards gets depth again.
    stamp = rig.publish_frame(4.0, left, right)
    assert rig.wait_for("depth", stamp) is not None


# ------------------------------------------------------------------------------------------------------ safe outputs


def test_safe_outputs_valid_window_min_disparity_and_rep117(rig_factory, motorcycle_small, fake_estimator):
    left, right, _ = motorcycle_small
    height, width = left.shape[:2]
    offset = 2.0  # cx_l - cx_r: published d = image d - 2
    image_disparity = np.full((height, width), 20.0, np.float32)  # published 18 px: Z = 48 / 18 m
    image_disparity[:, 100:110] = 2.5  # published 0.5 px: below min_disparity (auto: 1 px) -> too far
    image_disparity[:, 120:125] = np.nan  # the estimator has no value
    image_disparity[:, 130:135] = 0.0  # published -2 px: no measurement
    image_disparity[:, 140:145] = 130.0  # published 128 px: Z = 0.375 m, nearer than min_depth
    image_disparity[:, 150:155] = 7.0  # published 5 px: Z = 9.6 m
    fake_estimator.disparity = image_disparity
    fb = FOCAL_PX * BASELINE_M  # 48 px m
    rig = rig_factory(parameters={"input_qos": "reliable", "min_depth": fb / 100.0})
    stamp = rig.publish_frame(60.0, left, right, right_cx=92.0 - offset)
    msgs = {topic: rig.wait_for(topic, stamp) for topic in ("disparity", "depth", "points2")}
    assert all(m is not None for m in msgs.values()), rig.node.last_problem

    columns = np.arange(width)
    band = columns < 20  # x - d < 0: the match would lie left of the right image
    disparity = conversions.image_to_numpy(msgs["disparity"].image)
    assert np.isnan(disparity[:, band]).all()
    assert (disparity[:, 20:100] == 18.0).all() and (disparity[:, 140:145] == 128.0).all()
    for columns_invalid in (slice(100, 110), slice(120, 125), slice(130, 135)):
        assert np.isnan(disparity[:, columns_invalid]).all()
    assert msgs["disparity"].min_disparity == 1.0 and msgs["disparity"].max_disparity == 64.0 - offset
    window = msgs["disparity"].valid_window  # the estimator's window for image disparities >= 1 + 2 px
    assert (window.x_offset, window.y_offset, window.width, window.height) == (3, 0, width - 3, height)

    depth = conversions.image_to_numpy(msgs["depth"])
    np.testing.assert_allclose(depth[:, 20:100], fb / 18.0, rtol=1e-6)
    assert np.isnan(depth[:, band]).all() and np.isnan(depth[:, 120:125]).all() and np.isnan(depth[:, 130:135]).all()
    assert (depth[:, 100:110] == np.inf).all()  # REP-117: farther than measurable
    assert (depth[:, 140:145] == -np.inf).all()  # REP-117: nearer than min_depth
    np.testing.assert_allclose(depth[:, 150:155], fb / 5.0, rtol=1e-6)
    cloud = conversions.point_cloud2_to_array(msgs["points2"])
    finite = np.isfinite(depth)
    np.testing.assert_allclose(cloud["z"][finite], depth[finite], rtol=1e-6)
    for axis in ("x", "y", "z", "rgb"):  # no infinities in the organised cloud: invalid points are all-NaN
        assert np.isnan(cloud[axis][~finite]).all(), axis

    # min_disparity 0 (auto) with max_depth: f B / max_depth = 10 px; an explicit min_disparity wins.
    assert rig.node.set_parameters([Parameter("max_depth", value=fb / 10.0)])[0].successful
    stamp = rig.publish_frame(61.0, left, right, right_cx=92.0 - offset)
    msg, depth_msg = rig.wait_for("disparity", stamp), rig.wait_for("depth", stamp)
    assert msg.min_disparity == pytest.approx(10.0) and msg.valid_window.x_offset == 12
    disparity, depth = conversions.image_to_numpy(msg.image), conversions.image_to_numpy(depth_msg)
    assert np.isnan(disparity[:, 150:155]).all() and (depth[:, 150:155] == np.inf).all()
    assert rig.node.set_parameters([Parameter("min_disparity", value=3.0)])[0].successful
    stamp = rig.publish_frame(62.0, left, right, right_cx=92.0 - offset)
    msg, depth_msg = rig.wait_for("disparity", stamp), rig.wait_for("depth", stamp)
    disparity, depth = conversions.image_to_numpy(msg.image), conversions.image_to_numpy(depth_msg)
    assert msg.min_disparity == 3.0 and (disparity[:, 150:155] == 5.0).all()
    assert (depth[:, 150:155] == np.inf).all()  # 9.6 m is beyond max_depth 4.8 m


# ------------------------------------------------------------------------------------------------------ laziness


def _input_subscription_counts(rig):
    return [publisher.get_subscription_count() for publisher in rig.publishers]


def test_no_inference_and_no_input_subscriptions_without_output_subscribers(rig_factory, motorcycle_small,
                                                                           fake_estimator):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters={"input_qos": "reliable"}, outputs=(), wait_for_inputs=False)
    node = rig.node
    for i in range(5):
        rig.publish_frame(70.0 + i, left, right)
        rig.spin_for(0.1)
    assert not node.inputs_subscribed and _input_subscription_counts(rig) == [0, 0, 0, 0]
    assert fake_estimator.calls == 0 and node.counters["sets"] == 0 and fake_estimator.prepared == []
    assert status_values(node.diagnostic_status(advance_period=False))["inputs subscribed"] == "false"

    subscription = rig.subscribe("disparity", DisparityImage)  # a subscriber appears: the node subscribes
    assert rig.spin_until(lambda: node.inputs_subscribed and min(_input_subscription_counts(rig)) > 0)
    stamp = rig.publish_frame(80.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None, node.last_problem
    assert fake_estimator.calls == 1
    assert fake_estimator.prepared == [left.shape[:2]]  # the first input's size prepared the backend

    rig.helper.destroy_subscription(subscription)  # the last subscriber leaves: the node unsubscribes
    assert rig.spin_until(lambda: not node.inputs_subscribed and max(_input_subscription_counts(rig)) == 0)
    for i in range(3):
        rig.publish_frame(90.0 + i, left, right)
        rig.spin_for(0.1)
    assert fake_estimator.calls == 1 and node.counters["sets"] == 1


def test_inputs_subscribed_turns_true_only_once_every_input_is_subscribed(rig_factory, monkeypatch, fake_estimator):
    """A reader on another thread (a test, a diagnostics task) never sees the inputs half subscribed: while the node
    builds its input subscriptions, inputs_subscribed stays False, and it is True with all four."""
    from stereo_depth_ros.ros import node_base

    rig = rig_factory(outputs=(), wait_for_inputs=False)
    node = rig.node
    seen = []

    class Recording(AdaptiveSubscription):
        def __init__(self, *args, **kwargs):
            seen.append(node.inputs_subscribed)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(node_base, "AdaptiveSubscription", Recording)
    subscription = rig.subscribe("disparity", DisparityImage)
    assert rig.spin_until(lambda: node.inputs_subscribed)
    assert seen == [False] * 4 and set(node._input_subscriptions) == set(node.INPUT_TOPICS)
    rig.helper.destroy_subscription(subscription)


def test_prepare_warms_the_confidence_path_only_when_confidence_is_needed(rig_factory, motorcycle_small,
                                                                          fake_estimator):
    """With confidence_threshold > 0 the first input's size runs the confidence path once on a black pair
    (estimate_with_confidence -> estimate) before the first frame; without it prepare runs no inference."""
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters={"input_qos": "reliable", "confidence_threshold": 0.5}, outputs=("disparity",))
    stamp = rig.publish_frame(40.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None, rig.node.last_problem
    assert fake_estimator.prepared == [left.shape[:2]] and fake_estimator.calls == 2  # warm-up + the frame

    fake_estimator.calls, fake_estimator.prepared = 0, []
    rig = rig_factory(parameters={"input_qos": "reliable"}, outputs=("disparity",))
    stamp = rig.publish_frame(41.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None, rig.node.last_problem
    assert fake_estimator.prepared == [left.shape[:2]] and fake_estimator.calls == 1


# ------------------------------------------------------------------------------------------------------ live latency


def test_latency_stays_near_one_processing_time_and_older_sets_are_dropped(rig_factory, motorcycle_small,
                                                                          fake_estimator):
    """Input at 20 Hz, processing 0.15 s: the node works on the newest set; a queue would let latency grow."""
    left, right, _ = motorcycle_small
    processing_s, period_s = 0.15, 0.05
    fake_estimator.delay_s = processing_s
    rig = rig_factory(parameters={"input_qos": "reliable"}, outputs=("disparity",))
    diagnostics = []
    rig.helper.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    sent = {}
    start = next_frame = time.monotonic()
    index = 0
    while time.monotonic() < start + 3.0:
        if time.monotonic() >= next_frame:
            stamp = rig.publish_frame(100.0 + index * period_s, left, right)
            sent[(stamp.sec, stamp.nanosec)] = time.monotonic()
            index += 1
            next_frame += period_s
        rig.executor.spin_once(timeout_sec=max(0.0, min(0.005, next_frame - time.monotonic())))
    rig.spin_for(2 * processing_s)
    node = rig.node
    latencies = [received - sent[(stamp.sec, stamp.nanosec)] for stamp, received in rig.receive_times["disparity"]]
    assert len(latencies) >= 8, (len(latencies), node.counters)
    assert np.percentile(latencies, 95) <= 2 * processing_s, sorted(latencies)
    assert node.counters["dropped"] > 0 and node.counters["sets"] >= 40
    assert node.counters["processed"] + node.counters["dropped"] == node.counters["sets"]
    assert node.statistics.snapshot(advance_period=False).latency_p95_s <= 2 * processing_s

    # /diagnostics carries the node's rates, latencies and drops.
    name = node.get_fully_qualified_name()
    assert rig.spin_until(lambda: any(status_values(s).get("dropped sets", "0") != "0"
                                      for m in diagnostics for s in m.status if s.hardware_id == name))
    status = [s for m in diagnostics for s in m.status if s.hardware_id == name][-1]
    values = status_values(status)
    assert status.name == f"{name}: processing" and status.level == DiagnosticStatus.OK
    for key in ("input set rate (Hz)", "output rate (Hz)", "latency p50 (ms)", "latency p95 (ms)",
                "stamp latency p95 (ms)", "processing p50 (ms)", "dropped sets", "skipped frames", "last error",
                "estimator", "backend"):
        assert key in values, key
    assert 10.0 <= float(values["input set rate (Hz)"]) <= 25.0
    assert 3.0 <= float(values["output rate (Hz)"]) <= 1.0 / processing_s + 0.5
    assert processing_s * 1000 <= float(values["latency p50 (ms)"]) <= 2000 * processing_s
    assert int(values["dropped sets"]) > 0 and values["skipped frames"] == "0" and values["estimator"] == "fake"


def test_diagnostics_report_skipped_sets_as_an_error(rig_factory, motorcycle_small, fake_estimator):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters={"input_qos": "reliable"}, outputs=("disparity",))
    name = rig.node.get_fully_qualified_name()
    statuses = []
    rig.helper.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.hardware_id == name), 10)
    rig.publish_frame(110.0, left, right[:, :-8].copy())  # sizes differ: the set is skipped
    assert rig.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses))
    error = next(s for s in statuses if s.level == DiagnosticStatus.ERROR)
    values = status_values(error)
    assert "differ in size" in error.message and "differ in size" in values["last error"]
    assert values["skipped frames"] == "1" and "image_size: 1" in values["problems"]
    stamp = rig.publish_frame(111.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None
    seen = len(statuses)
    assert rig.spin_until(lambda: any(s.level == DiagnosticStatus.OK for s in statuses[seen:]))  # recovered


# ------------------------------------------------------------------------------------------------------ bad input


def _image(encoding, height, width, step, nbytes, stamp) -> Image:
    msg = Image(header=Header(stamp=stamp, frame_id=FRAME_ID), height=height, width=width, encoding=encoding,
                step=step)
    msg.data = array.array("B", bytes(nbytes))
    return msg


def _bad_size(rig, left, right, stamp):
    small = cv2.resize(right, (right.shape[1] // 2, right.shape[0] // 2))
    header = Header(stamp=stamp, frame_id=FRAME_ID)
    h, w = left.shape[:2]
    rig.publish(conversions.numpy_to_image(left, "bgr8", header), conversions.numpy_to_image(small, "bgr8", header),
                camera_info(w, h, stamp=stamp), camera_info(w, h, tx=-48.0, stamp=stamp))


def _bad_camera_info(rig, left, right, stamp):
    header = Header(stamp=stamp, frame_id=FRAME_ID)
    h, w = left.shape[:2]
    rig.publish(conversions.numpy_to_image(left, "bgr8", header), conversions.numpy_to_image(right, "bgr8", header),
                camera_info(640, 480, stamp=stamp), camera_info(w, h, tx=-48.0, stamp=stamp))


def _bad_left(make_left):
    def publish(rig, left, right, stamp):
        header = Header(stamp=stamp, frame_id=FRAME_ID)
        h, w = left.shape[:2]
        rig.publish(make_left(left, stamp), conversions.numpy_to_image(right, "bgr8", header),
                    camera_info(w, h, stamp=stamp), camera_info(w, h, tx=-48.0, stamp=stamp))
    return publish


def _nan_float_image(left, stamp):
    depth = np.full(left.shape[:2], np.nan, np.float32)
    return conversions.numpy_to_image(depth, "32FC1", Header(stamp=stamp, frame_id=FRAME_ID))


BAD_INPUTS = {
    "left and right of different sizes": (_bad_size, "image_size", "differ in size"),
    "camera_info size does not match": (_bad_camera_info, "camera_info_size", "'width' x 'height' = 640 x 480"),
    "unsupported encoding": (_bad_left(lambda left, s: _image("yuv422", *left.shape[:2], left.shape[1] * 2,
                                                               left.shape[0] * left.shape[1] * 2, s)),
                             "encoding", "'yuv422'"),
    "float image with NaN": (_bad_left(_nan_float_image), "encoding", "float image"),
    "empty image": (_bad_left(lambda left, s: _image("bgr8", 0, 0, 0, 0, s)), "empty_image", "'height'"),
    "data shorter than step x height": (_bad_left(lambda left, s: _image("bgr8", *left.shape[:2], left.shape[1] * 3,
                                                                         100, s)), "image_layout", "'data'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_reported_skipped_and_the_next_frame_processed(rig_factory, motorcycle_small, case):
    left, right, _ = motorcycle_small
    publish_bad, kind, field_text = BAD_INPUTS[case]
    rig = rig_factory(parameters=SGBM)
    publish_bad(rig, left, right, _stamp(1.0))
    assert rig.spin_until(lambda: rig.node.problems[kind] > 0), (case, rig.node.problems, rig.node.last_problem)
    assert field_text in rig.node.last_problem
    assert rig.node.counters["skipped"] == 1 and rig.node.counters["processed"] == 0
    assert rig.received["disparity"] == []
    stamp = rig.publish_frame(2.0, left, right)
    assert rig.wait_for("points2", stamp) is not None, rig.node.last_problem
    assert rig.node.counters["processed"] == 1


def test_stamps_that_never_match_are_reported_and_later_frames_processed(rig_factory, motorcycle_small, capfd):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters=dict(SGBM, queue_size=3))
    for i in range(5):  # the right camera stamps 0.3 s off: exact sync never matches
        rig.publish_frame(10.0 + i, left, right, right_seconds=10.3 + i)
        rig.spin_for(0.05)
    assert rig.spin_until(lambda: rig.node.problems["unsynchronized"] > 0), rig.node.problems
    assert "header.stamp" in rig.node.last_problem and "right/image_rect" in rig.node.last_problem
    assert rig.received["disparity"] == [] and rig.node.counters["sets"] == 0
    stamp = rig.publish_frame(20.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None
    # The warning went to the log, under a child logger named after the kind of problem.
    assert "stereo_depth_node.unsynchronized" in capfd.readouterr().err


def test_approximate_sync_accepts_stamps_within_slop(rig_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters=dict(SGBM, approximate_sync=True, slop=0.01))
    stamp = rig.publish_frame(30.0, left, right, right_seconds=30.004)
    assert rig.wait_for("disparity", stamp) is not None, rig.node.last_problem


# ------------------------------------------------------------------------------------------------------ parameters


def test_run_time_parameter_changes_are_validated_and_applied(rig_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters=SGBM)
    node = rig.node
    rejected = {
        "output_stage": 9,  # outside IntegerRange 0..3
        "min_depth": -1.0,  # outside FloatingPointRange
        "slop": math.nan,
        "input_qos": "fast",  # not a choice
        "method": "coarse-to-fine",  # read-only
    }
    for name, value in rejected.items():
        before = node.get_parameter(name).value
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and name in result.reason, (name, result.reason)
        assert node.get_parameter(name).value == before
    result = node.set_parameters_atomically([Parameter("min_depth", value=2.0), Parameter("max_depth", value=1.0)])
    assert not result.successful and "max_depth" in result.reason
    assert node.get_parameter("min_depth").value == 0.0

    # Accepted changes take effect on the next frame: depth limits and a cloud without colour.
    results = node.set_parameters([Parameter("min_depth", value=2.0), Parameter("max_depth", value=4.0),
                                   Parameter("use_color", value=False), Parameter("queue_size", value=7)])
    assert all(r.successful for r in results)
    stamp = rig.publish_frame(40.0, left, right)
    depth_msg, cloud_msg = rig.wait_for("depth", stamp), rig.wait_for("points2", stamp)
    assert depth_msg is not None and cloud_msg is not None, node.last_problem
    depth = conversions.image_to_numpy(depth_msg)
    finite = depth[np.isfinite(depth)]
    assert finite.size > 0 and finite.min() >= 2.0 and finite.max() <= 4.0
    assert [f.name for f in cloud_msg.fields] == ["x", "y", "z"] and cloud_msg.point_step == 16


def test_invalid_parameters_fail_at_start_up(context):
    with pytest.raises(ValueError, match="max_depth"):
        StereoDepthNode(context=context, parameter_overrides=[Parameter("method", value="sgbm"),
                                                              Parameter("min_depth", value=3.0),
                                                              Parameter("max_depth", value=1.0)])
    with pytest.raises(InvalidParameterValueException):
        StereoDepthNode(context=context, parameter_overrides=[Parameter("output_stage", value=7)])
    with pytest.raises(InvalidParameterValueException):  # outside FloatingPointRange 0..4
        StereoDepthNode(context=context, parameter_overrides=[Parameter("input_scale", value=5.0)])
    with pytest.raises(ValueError, match="multiple of 16"):
        StereoDepthNode(context=context, parameter_overrides=[Parameter("method", value="sgbm"),
                                                              Parameter("max_disparity", value=40)])


def test_missing_or_wrong_weights_fail_at_start_up_naming_the_file(context, tmp_path, capfd):
    missing = tmp_path / "no_such_weights.safetensors"
    with pytest.raises(WeightsError, match="no_such_weights.safetensors.*does not exist"):
        StereoDepthNode(context=context, parameter_overrides=[Parameter("weights", value=str(missing))])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_text("not a safetensors file")
    with pytest.raises(WeightsError, match="corrupt.safetensors"):
        StereoDepthNode(context=context, parameter_overrides=[Parameter("weights", value=str(corrupt))])
    # The console entry point logs the reason and exits non-zero.
    assert main(["stereo_depth_node", "--ros-args", "-p", f"weights:={missing}"]) == 1
    err = capfd.readouterr().err
    assert "failed to start" in err and str(missing) in err and "does not exist" in err


# ------------------------------------------------------------------------------------------------------ QoS, names


def test_choose_qos_follows_the_publishers_like_rosbag2():
    reliable, best_effort = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    assert choose_qos([reliable, reliable]).reliability == reliable
    assert choose_qos([reliable, best_effort]).reliability == best_effort
    assert choose_qos([best_effort]).reliability == best_effort
    assert choose_qos([]).reliability == best_effort  # nothing known yet: connect to anything
    assert choose_qos([reliable], depth=7).depth == 7
    assert input_qos("reliable", [best_effort]).reliability == reliable
    assert input_qos("sensor_data", [reliable]).reliability == best_effort
    assert output_qos("reliable").reliability == reliable
    with pytest.raises(ValueError, match="input_qos"):
        input_qos("fast")
    with pytest.raises(ValueError, match="depth"):
        choose_qos([reliable], depth=0)


class _FakeGraphNode:
    """Just what AdaptiveSubscription uses of a node: publishers' QoS and creating/destroying subscriptions."""

    def __init__(self):
        self.publishers, self.created, self.destroyed = [], [], []

    def get_publishers_info_by_topic(self, topic):
        return [SimpleNamespace(qos_profile=SimpleNamespace(reliability=r)) for r in self.publishers]

    def create_subscription(self, msg_type, topic, callback, profile):
        self.created.append(profile.reliability)
        return len(self.created)

    def destroy_subscription(self, subscription):
        self.destroyed.append(subscription)


def test_adaptive_subscription_recreates_only_when_the_decision_changes():
    reliable, best_effort = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    node = _FakeGraphNode()
    subscription = AdaptiveSubscription(node, Image, "left/image_rect", lambda m: None, mode="auto", depth=3)
    assert node.created == [best_effort]  # no publisher yet: best effort connects to anything
    assert not subscription.check()
    node.publishers = [reliable]
    assert subscription.check() and node.created[-1] == reliable and node.destroyed == [1]
    node.publishers = [reliable, reliable]  # count changed, decision did not: keep the subscription
    assert not subscription.check() and len(node.created) == 2
    node.publishers = [reliable, best_effort]  # same count, other reliabilities
    assert subscription.check() and node.created[-1] == best_effort
    fixed = AdaptiveSubscription(node, Image, "right/image_rect", lambda m: None, mode="reliable", depth=3)
    node.publishers = [best_effort]
    assert not fixed.check() and fixed.reliability == reliable


def test_auto_input_qos_follows_publishers_as_they_come_and_go(rig_factory, motorcycle_small):
    left, right, _ = motorcycle_small
    rig = rig_factory(parameters={"method": "sgbm", "max_disparity": 32, "input_qos": "auto"})
    node = rig.node
    assert rig.spin_until(lambda: all(node.input_reliability(t) == ReliabilityPolicy.RELIABLE
                                      for t in INPUT_TOPICS), timeout=WAIT_S)
    sensor_publisher = rig.helper.create_publisher(Image, "left/image_rect",
                                                   QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    assert rig.spin_until(lambda: node.input_reliability("left/image_rect") == ReliabilityPolicy.BEST_EFFORT,
                          timeout=WAIT_S)
    assert node.input_reliability("right/image_rect") == ReliabilityPolicy.RELIABLE
    rig.helper.destroy_publisher(sensor_publisher)
    assert rig.spin_until(lambda: node.input_reliability("left/image_rect") == ReliabilityPolicy.RELIABLE,
                          timeout=WAIT_S)
    # Frames flow through the recreated subscription.
    assert rig.spin_until(lambda: all(p.get_subscription_count() > 0 for p in rig.publishers))
    stamp = rig.publish_frame(50.0, left, right)
    assert rig.wait_for("disparity", stamp) is not None


def test_topics_follow_namespace_and_remapping(rig_factory):
    rig = rig_factory(parameters=SGBM, outputs=("disparity",),
                      node_kwargs={"cli_args": ["--ros-args", "-r", "left/image_rect:=/camera/left/image_raw"]},
                      wait_for_inputs=False)
    assert rig.spin_until(lambda: len(rig.helper.get_subscriptions_info_by_topic("/camera/left/image_raw")) > 0)
    names = dict(rig.node.get_subscriber_names_and_types_by_node(rig.node.get_name(), rig.namespace))
    assert f"{rig.namespace}/right/image_rect" in names and f"{rig.namespace}/left/image_rect" not in names
    published = dict(rig.node.get_publisher_names_and_types_by_node(rig.node.get_name(), rig.namespace))
    assert published[f"{rig.namespace}/disparity"] == ["stereo_msgs/msg/DisparityImage"]
    assert published[f"{rig.namespace}/points2"] == ["sensor_msgs/msg/PointCloud2"]


def test_interface_document_lists_every_topic_and_parameter():
    text = (Path(__file__).resolve().parents[1] / "docs" / "ros_interface.md").read_text()
    for name in list(INPUT_TOPICS) + list(OUTPUT_TOPICS) + ["disparity/stage_N", "/diagnostics"] + list(
            PARAMETER_SPECS):
        assert f"`{name}`" in text, name


def test_estimator_parameters_reach_the_registry(context, monkeypatch):
    calls = []

    def fake_create_estimator(name, **options):
        calls.append((name, options))
        return FakeEstimator()

    monkeypatch.setattr(stereo_node, "create_estimator", fake_create_estimator)
    for parameters in ({"input_scale": 1.5, "max_disparity": 96, "output_stage": 1}, {}):
        node = StereoDepthNode(context=context, parameter_overrides=[Parameter(n, value=v)
                                                                     for n, v in parameters.items()])
        node.destroy_node()
    node = StereoDepthNode(context=context, parameter_overrides=[Parameter("method", value="sgbm")])
    node.destroy_node()
    assert calls == [
        ("coarse-to-fine", {"weights": None, "device": "auto", "max_disparity": 96, "input_scale": 1.5,
                            "max_stage": 1}),
        ("coarse-to-fine", {"weights": None, "device": "auto", "max_disparity": None, "input_scale": None,
                            "max_stage": 2}),  # 0 = the estimator's default (auto); output_stage's default 2
        ("sgbm", {"max_disparity": None})]
