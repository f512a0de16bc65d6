"""The stereo node with real rclpy: real images published on its topics, outputs received and checked.

Every test runs in its own rclpy Context on a ROS domain chosen from the process id (so parallel test runs on one
machine do not hear each other) and in its own namespace; every wait is bounded.
"""

from __future__ import annotations

import array
import itertools
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from stereo_depth_ros.geometry import StereoCameraModel, reproject_disparity_to_points  # noqa: E402
from stereo_depth_ros.models.coarse_to_fine import WeightsError  # noqa: E402
from stereo_depth_ros.models.sgbm import SGBMEstimator  # noqa: E402
from stereo_depth_ros.ros import conversions  # noqa: E402
from stereo_depth_ros.ros.qos import AdaptiveSubscription, choose_qos, input_qos, output_qos  # noqa: E402
from stereo_depth_ros.ros.stereo_node import (  # noqa: E402
    INPUT_TOPICS, OUTPUT_TOPICS, PARAMETERS, StereoDepthNode, build_estimator, main)

DOMAIN_ID = 150 + os.getpid() % 80  # 150..229: valid for Fast DDS, and unlikely to collide with a parallel run
FOCAL_PX = 400.0
BASELINE_M = 0.12
FRAME_ID = "stereo_left_optical_frame"
WAIT_S = 20.0
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def context():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def camera_info(width, height, tx=0.0, cx=92.0, fx=FOCAL_PX, stamp=None) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.header = Header(stamp=stamp or Time(), frame_id=FRAME_ID)
    info.k = [fx, 0.0, cx, 0.0, fx, 62.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, tx, 0.0, fx, 62.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class Rig:
    """The node under test plus a helper node that publishes the inputs and records the outputs."""

    def __init__(self, context, parameters=None, outputs=tuple(OUTPUT_TOPICS), input_qos_profile=None,
                 node_kwargs=None, wait_for_inputs=True):
        self.namespace = f"/stereo_test_{os.getpid()}_{next(_namespaces)}"
        overrides = [Parameter(name, value=value) for name, value in (parameters or {}).items()]
        self.node = StereoDepthNode(context=context, namespace=self.namespace, parameter_overrides=overrides,
                                    **(node_kwargs or {}))
        self.helper = rclpy.create_node("stereo_test_helper", context=context, namespace=self.namespace)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.helper)
        self.received = defaultdict(list)
        types = dict(OUTPUT_TOPICS, **{t: DisparityImage for t in outputs if t.startswith("disparity/stage_")})
        self.outputs = list(outputs)
        for topic in self.outputs:
            self.helper.create_subscription(types[topic], topic, self.received[topic].append, 10)
        qos = input_qos_profile or QoSProfile(depth=10)  # reliable, like most camera drivers
        self.publishers = [self.helper.create_publisher(t, topic, qos)
                           for topic, t in zip(INPUT_TOPICS, (Image, Image, CameraInfo, CameraInfo))]
        assert self.spin_until(lambda: (not wait_for_inputs or all(p.get_subscription_count() > 0
                                                                   for p in self.publishers))
                               and all(self.node.output_subscription_count(t) > 0 for t in self.outputs)), \
            "discovery between the test helper and the node did not complete"

    def spin_until(self, predicate, timeout=WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def spin_for(self, seconds):
        self.spin_until(lambda: False, timeout=seconds)

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

    def wait_for(self, topic, stamp, timeout=WAIT_S):
        """The first received message on ``topic`` with this stamp (None after ``timeout``)."""
        def find():
            return next((m for m in self.received[topic] if m.header.stamp == stamp), None)
        self.spin_until(lambda: find() is not None, timeout)
        return find()

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.helper.destroy_node()


def _stamp(seconds) -> Time:
    return Time(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)))


@pytest.fixture
def rig_factory(context):
    rigs = []

    def make(**kwargs):
        rigs.append(Rig(context, **kwargs))
        return rigs[-1]
    yield make
    for rig in rigs:
        rig.close()


SGBM = {"method": "sgbm", "max_disparity": 32, "input_qos": "reliable"}


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
    # DisparityImage filled like stereo_image_proc: f, t from camera_info, the SGBM search range, 1/16 px steps.
    assert disparity_msg.image.encoding == "32FC1"
    assert disparity_msg.f == pytest.approx(FOCAL_PX) and disparity_msg.t == pytest.approx(BASELINE_M)
    assert (disparity_msg.min_disparity, disparity_msg.max_disparity, disparity_msg.delta_d) == (0.0, 31.0, 0.0625)
    window = disparity_msg.valid_window
    assert window.x_offset == 32 + 2 - 1 and window.x_offset + window.width <= left.shape[1]
    # The disparity is the core's SGBM result on the BGR pair (so the colour conversion was right), minus the
    # principal point offset cx_l - cx_r as DisparityImage defines it.
    disparity = conversions.image_to_numpy(disparity_msg.image)
    expected = SGBMEstimator(num_disparities=32).estimate(left, right)[0] - np.float32(92.0 - right_cx)
    np.testing.assert_array_equal(disparity, expected)
    valid = np.isfinite(disparity) & (disparity > 0)
    assert 0.5 < valid.mean() < 1.0  # real images: mostly valid, with invalid pixels (left border, occlusions)

    depth = conversions.image_to_numpy(depth_msg)
    assert depth_msg.encoding == "32FC1" and depth.shape == disparity.shape
    np.testing.assert_allclose(depth[valid], FOCAL_PX * BASELINE_M / disparity[valid], rtol=1e-6)
    assert np.isnan(depth[~valid]).all()

    assert (cloud_msg.height, cloud_msg.width) == disparity.shape
    assert (cloud_msg.point_step, cloud_msg.row_step, cloud_msg.is_dense) == (16, 16 * disparity.shape[1], False)
    assert [(f.name, f.offset) for f in cloud_msg.fields] == [("x", 0), ("y", 4), ("z", 8), ("rgb", 12)]
    cloud = conversions.point_cloud2_to_array(cloud_msg)
    calibration = StereoCameraModel(FOCAL_PX, 92.0, 62.0, BASELINE_M)
    points = reproject_disparity_to_points(disparity, calibration)
    for i, axis in enumerate("xyz"):
        np.testing.assert_allclose(cloud[axis][valid], points[..., i][valid], rtol=1e-6)
        assert np.isnan(cloud[axis][~valid]).all()
    np.testing.assert_array_equal(cloud["rgb"].view(np.uint32)[valid], conversions.pack_rgb(left)[valid])
    assert rig.node.counters["processed"] == 1 and not rig.node.problems


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
    for topic, disparity in maps.items():
        assert disparity.shape == left.shape[:2] and np.isfinite(disparity).all(), topic
        assert msgs[topic].max_disparity == rig.node.estimator.max_disparity
    # 'disparity' carries the stage chosen by output_stage; the stages are distinct maps.
    np.testing.assert_array_equal(maps["disparity"], maps["disparity/stage_1"])
    assert not np.array_equal(maps["disparity/stage_0"], maps["disparity/stage_3"])
    depth = conversions.image_to_numpy(msgs["depth"])
    valid = maps["disparity"] > 0
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
    for name in list(INPUT_TOPICS) + list(OUTPUT_TOPICS) + ["disparity/stage_N"] + [p.name for p in PARAMETERS]:
        assert f"`{name}`" in text, name


def test_input_scale_parameter_reaches_the_network():
    assert build_estimator("coarse-to-fine").input_scale is None  # 0.0 = auto
    assert build_estimator("coarse-to-fine", input_scale=1.5).input_scale == 1.5
    assert not hasattr(build_estimator("sgbm", input_scale=1.5), "input_scale")  # SGBM ignores it
