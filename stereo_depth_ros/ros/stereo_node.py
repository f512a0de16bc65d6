"""The stereo depth ROS 2 node: rectified stereo pair in; disparity, depth and a coloured point cloud out.

Topics (relative names: namespaces and remapping apply), parameters and QoS are listed in docs/ros_interface.md;
:data:`INPUT_TOPICS`, :data:`OUTPUT_TOPICS` and :data:`PARAMETERS` below are the source of truth.

The node is deliberately thin: message conversions live in :mod:`stereo_depth_ros.ros.conversions`, time
synchronisation in :mod:`stereo_depth_ros.ros.sync`, QoS matching in :mod:`stereo_depth_ros.ros.qos`, and the
algorithms in the core (:mod:`stereo_depth_ros.models`, :mod:`stereo_depth_ros.geometry`).

Bad input never stops the node: every problem (encodings, sizes, empty images, camera_info that does not fit,
stamps that never match, estimator errors) is counted in :attr:`StereoDepthNode.problems`, kept in
:attr:`StereoDepthNode.last_problem`, logged as a warning throttled per kind of problem (``throttle_duration_sec``)
and the frame is skipped.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from stereo_depth_ros.device import DEVICES
from stereo_depth_ros.geometry import disparity_to_depth, reproject_disparity_to_points
from stereo_depth_ros.models.base import DisparityEstimator
from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES
from stereo_depth_ros.models.estimator import MAX_INPUT_SCALE
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.conversions import InputError
from stereo_depth_ros.ros.qos import INPUT_QOS_MODES, OUTPUT_QOS_MODES, AdaptiveSubscription, output_qos, \
    reliability_name
from stereo_depth_ros.ros.sync import SimpleFilter, SyncMonitor, make_synchronizer

DEFAULT_NODE_NAME = "stereo_depth_node"
METHODS = ("coarse-to-fine", "sgbm")
SGBM_DEFAULT_DISPARITIES = 192
#: Sub-pixel step reported in DisparityImage.delta_d: OpenCV's fixed-point step (1/16 px), which stereo_image_proc
#: reports; used for the network too (its soft-argmin output is continuous; see docs/ros_interface.md).
DELTA_D = 1.0 / 16.0
QOS_CHECK_PERIOD_S = 1.0
PROBLEM_THROTTLE_S = 5.0

#: Input topics, in the order the synchroniser delivers them.
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")
INPUT_TYPES = (Image, Image, CameraInfo, CameraInfo)
#: Output topics -> message type (``disparity/stage_N`` is added per stage when ``publish_stages`` is true).
#: ``disparity/image`` repeats the disparity as a plain 32FC1 image, which RViz (no DisparityImage display) can show.
OUTPUT_TOPICS = {"disparity": DisparityImage, "disparity/image": Image, "depth": Image, "points2": PointCloud2}
STAGE_TOPIC = "disparity/stage_{}"


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default, description, constraints and whether it can change at run time."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    choices: tuple[str, ...] | None = None
    integer_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        """The ``rcl_interfaces/ParameterDescriptor`` declared for this parameter."""
        constraints = f"one of: {', '.join(self.choices)}" if self.choices else ""
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only,
                                         additional_constraints=constraints)
        if self.integer_range is not None:
            descriptor.integer_range = [IntegerRange(from_value=self.integer_range[0],
                                                     to_value=self.integer_range[1], step=1)]
        if self.float_range is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.float_range[0],
                                                                  to_value=self.float_range[1], step=0.0)]
        return descriptor


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("method", "coarse-to-fine", "Disparity method: the coarse-to-fine network or OpenCV SGBM.",
                  read_only=True, choices=METHODS),
    ParameterSpec("weights", "", "Network weights (safetensors file); empty = the weights packaged with "
                  "stereo_depth_ros. Ignored by sgbm.", read_only=True),
    ParameterSpec("device", "auto", "Device for the network: auto (CUDA when available), cpu or cuda.",
                  read_only=True, choices=DEVICES),
    ParameterSpec("max_disparity", 0, "Disparity search range in pixels; 0 = the method's default (network: the "
                  "range stored with the weights; sgbm: 192). sgbm needs a multiple of 16.",
                  read_only=True, integer_range=(0, 1024)),
    ParameterSpec("input_scale", 0.0, "Resize the pair by this factor before the network (disparities are "
                  "scaled back); 0 = auto: enlarge to 1280 px wide, at most 2x, never shrink. Ignored by sgbm.",
                  read_only=True, float_range=(0.0, MAX_INPUT_SCALE)),
    ParameterSpec("output_stage", NUM_STAGES - 1, "Network stage published on 'disparity' (0 coarsest, 3 finest); "
                  "earlier stages are cheaper. sgbm has a single stage and ignores it.",
                  integer_range=(0, NUM_STAGES - 1)),
    ParameterSpec("publish_stages", False, "Also publish every stage on 'disparity/stage_N' (the network then "
                  "computes all stages)."),
    ParameterSpec("min_depth", 0.0, "Depths below this (metres) are invalid (NaN) in 'depth' and 'points2'.",
                  float_range=(0.0, 1000.0)),
    ParameterSpec("max_depth", 0.0, "Depths above this (metres) are invalid (NaN) in 'depth' and 'points2'; "
                  "0 = no limit.", float_range=(0.0, 1000.0)),
    ParameterSpec("use_color", True, "Colour 'points2' from the left image (rgb field); false = x, y, z only."),
    ParameterSpec("approximate_sync", False, "Synchronise the four inputs approximately (stamps within 'slop') "
                  "instead of exactly."),
    ParameterSpec("slop", 0.01, "Largest stamp difference in seconds for approximate_sync.",
                  float_range=(0.0, 10.0)),
    ParameterSpec("queue_size", 5, "Messages kept per input by the synchroniser; also the subscriptions' "
                  "history depth.", integer_range=(1, 100)),
    ParameterSpec("input_qos", "auto", "Subscription QoS: auto (match the publishers like rosbag2), sensor_data "
                  "(best effort) or reliable.", choices=INPUT_QOS_MODES),
    ParameterSpec("output_qos", "reliable", "Publisher QoS reliability: reliable (RViz's defaults and best effort "
                  "subscribers both connect) or sensor_data (best effort).", read_only=True,
                  choices=OUTPUT_QOS_MODES),
    ParameterSpec("output_history_depth", 5, "Publisher history depth (keep last).", read_only=True,
                  integer_range=(1, 100)),
)
PARAMETER_SPECS = {spec.name: spec for spec in PARAMETERS}


def validate_parameters(values: Mapping[str, Any]) -> str | None:
    """Check a full set of parameter values beyond what the descriptors' ranges check.

    Args:
        values: parameter name -> value for every name in :data:`PARAMETERS`.

    Returns:
        None when valid, else the reason (naming the parameter), used to reject a run-time change and to fail
        at start-up.
    """
    for spec in PARAMETERS:
        if spec.choices is not None and values[spec.name] not in spec.choices:
            return f"parameter '{spec.name}' must be one of {', '.join(spec.choices)}, got {values[spec.name]!r}"
        if spec.float_range is not None and not math.isfinite(values[spec.name]):
            return f"parameter '{spec.name}' must be a finite number, got {values[spec.name]}"
        low, high = spec.integer_range or spec.float_range or (None, None)
        if low is not None and not low <= values[spec.name] <= high:
            return f"parameter '{spec.name}' must be in [{low}, {high}], got {values[spec.name]}"
    if values["max_depth"] != 0.0 and values["max_depth"] <= values["min_depth"]:
        return (f"parameter 'max_depth' ({values['max_depth']} m) must be 0 (no limit) or larger than 'min_depth' "
                f"({values['min_depth']} m)")
    if values["method"] == "sgbm" and values["max_disparity"] % 16:
        return f"parameter 'max_disparity' must be a multiple of 16 for method sgbm, got {values['max_disparity']}"
    return None


def build_estimator(method: str, weights: str = "", device: str = "auto", max_disparity: int = 0,
                    input_scale: float = 0.0) -> DisparityEstimator:
    """Construct the estimator the node runs.

    Args:
        method: "coarse-to-fine" or "sgbm".
        weights: safetensors file for the network; "" = the packaged weights.
        device: "auto", "cpu" or "cuda" (network only).
        max_disparity: search range in pixels, 0 = the method's default.
        input_scale: the network's input scale (0 = auto; see
            :func:`stereo_depth_ros.models.estimator.working_scale`).

    Raises:
        stereo_depth_ros.models.coarse_to_fine.WeightsError: missing or wrong weights file (names the file).
        ValueError: unknown method or device, CUDA unavailable, invalid SGBM range.
    """
    if method == "sgbm":
        from stereo_depth_ros.models.sgbm import SGBMEstimator
        return SGBMEstimator(num_disparities=max_disparity or SGBM_DEFAULT_DISPARITIES)
    if method == "coarse-to-fine":
        from stereo_depth_ros.models.estimator import CoarseToFineEstimator
        return CoarseToFineEstimator(weights=weights or None, device=device,
                                     max_disparity=max_disparity or None, max_stage=NUM_STAGES - 1,
                                     input_scale=input_scale or None)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class StereoDepthNode(Node):
    """Stereo depth node: subscribes a rectified pair with camera_info, publishes disparity, depth, points2.

    Args:
        node_name: ROS node name.
        **kwargs: passed to ``rclpy.node.Node`` (``namespace``, ``parameter_overrides``, ``cli_args`` for
            remapping, ``context``, ...). ``automatically_declare_parameters_from_overrides`` must not be set:
            the node declares its parameters itself, with descriptors.

    Attributes:
        estimator: the :class:`DisparityEstimator` built at start-up.
        counters: ``Counter`` of "sets" (synchronised input sets), "processed", "skipped" and "published_<topic>".
        problems: ``Counter`` of problems by kind ("encoding", "image_size", "camera_info_size", "empty_image",
            "image_layout", "calibration", "unsynchronized", "estimator", "internal").
        last_problem: the last problem's message (names the topic and field), or None.
        last_timing: seconds spent on the last processed frame: "convert_in", "inference", "build_disparity",
            "reproject" (disparity -> points, the core's geometry), "build_depth", "build_points2", "publish",
            "total".

    Raises:
        stereo_depth_ros.models.coarse_to_fine.WeightsError: at start-up, for a missing or wrong weights file.
        ValueError: at start-up, for invalid parameters (naming them) or kwargs.
        rclpy.exceptions.InvalidParameterValueException: for an override outside a parameter's range.
    """

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **kwargs: Any) -> None:
        if kwargs.get("automatically_declare_parameters_from_overrides"):
            raise ValueError("StereoDepthNode declares its own parameters; do not pass "
                             "automatically_declare_parameters_from_overrides=True")
        super().__init__(node_name, **kwargs)
        try:
            self._start()
        except BaseException:
            self.destroy_node()
            raise

    # ------------------------------------------------------------------------------------------------ start-up

    def _start(self) -> None:
        self.counters: Counter = Counter()
        self.problems: Counter = Counter()
        self.last_problem: str | None = None
        self.last_timing: dict[str, float] = {}
        self._problem_loggers: dict[str, Any] = {}
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = self._parameter_values()
        reason = validate_parameters(values)
        if reason is not None:
            raise ValueError(reason)
        self.settings = dict(values)
        self.estimator = build_estimator(values["method"], values["weights"], values["device"],
                                         values["max_disparity"], values["input_scale"])
        self.get_logger().info(f"estimator {self.estimator.name} ({self._estimator_description()}) ready")
        if values["method"] == "sgbm" and values["weights"]:
            self.get_logger().warning("parameter 'weights' is ignored by method sgbm")

        publisher_qos = output_qos(values["output_qos"], values["output_history_depth"])
        self._output_qos_profile = publisher_qos
        self._output_publishers = {topic: self.create_publisher(msg_type, topic, publisher_qos)
                                   for topic, msg_type in OUTPUT_TOPICS.items()}
        self._stage_publishers: dict[int, Any] = {}
        if values["publish_stages"]:
            self._create_stage_publishers()

        self._input_filters: list[SimpleFilter] = []
        self._input_synchronizer = None
        self._sync_monitor: SyncMonitor | None = None
        self._build_synchronizer()
        self._input_subscriptions = {
            topic: AdaptiveSubscription(self, msg_type, topic, self._make_input_callback(index),
                                        mode=values["input_qos"], depth=values["queue_size"],
                                        on_change=self._on_qos_change)
            for index, (topic, msg_type) in enumerate(zip(INPUT_TOPICS, INPUT_TYPES))}
        self._qos_check_timer = self.create_timer(QOS_CHECK_PERIOD_S, self._check_input_qos)
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.add_post_set_parameters_callback(self._apply_parameter_change)

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}

    def _estimator_description(self) -> str:
        if self.settings["method"] == "sgbm":
            return f"{self.estimator.num_disparities} disparities"
        return (f"weights {self.estimator.weights_path}, device {self.estimator.device}, backend "
                f"{self.estimator.backend}, max_disparity {self.estimator.max_disparity}, input_scale "
                f"{self.estimator.input_scale or 'auto'}")

    def _create_stage_publishers(self) -> None:
        for stage in range(self._estimator_stages()):
            if stage not in self._stage_publishers:
                self._stage_publishers[stage] = self.create_publisher(DisparityImage, STAGE_TOPIC.format(stage),
                                                                      self._output_qos_profile)

    def _estimator_stages(self) -> int:
        return NUM_STAGES if self.settings["method"] == "coarse-to-fine" else self.estimator.num_stages

    def _build_synchronizer(self) -> None:
        """(Re)build the inputs and the synchroniser from the current settings (pending messages are dropped)."""
        inputs = [SimpleFilter() for _ in INPUT_TOPICS]
        synchronizer = make_synchronizer(inputs, self.settings["approximate_sync"], self.settings["queue_size"],
                                         self.settings["slop"])
        synchronizer.registerCallback(self._on_synchronized)
        self._sync_monitor = SyncMonitor(INPUT_TOPICS, self.settings["queue_size"],
                                         self.settings["approximate_sync"], self.settings["slop"])
        self._input_filters, self._input_synchronizer = inputs, synchronizer

    def _make_input_callback(self, index: int):
        def callback(msg: Any) -> None:
            self._sync_monitor.received(index, msg)
            self._input_filters[index].signalMessage(msg)
            problem = self._sync_monitor.diagnose()
            if problem is not None:
                self._report("unsynchronized", problem)
        return callback

    # ------------------------------------------------------------------------------------------------ QoS

    def _check_input_qos(self) -> None:
        for subscription in self._input_subscriptions.values():
            subscription.check()

    def _on_qos_change(self, topic: str, old: QoSProfile | None, new: QoSProfile, publishers: int) -> None:
        message = (f"{topic}: {publishers} publisher(s) found, subscribing {reliability_name(new.reliability)} "
                   f"(input_qos {self.settings['input_qos']}, depth {new.depth})")
        if old is None:
            self.get_logger().debug(message)
        else:
            self.get_logger().info(message)

    def input_reliability(self, topic: str):
        """Reliability (``rclpy.qos.ReliabilityPolicy``) of the subscription to an input topic."""
        return self._input_subscriptions[topic].reliability

    # ------------------------------------------------------------------------------------------------ parameters

    def _validate_parameter_change(self, parameters: list[Parameter]) -> SetParametersResult:
        values = dict(self.settings)
        for parameter in parameters:
            if parameter.name in PARAMETER_SPECS:
                values[parameter.name] = parameter.value
        reason = validate_parameters(values)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameter_change(self, parameters: list[Parameter]) -> None:
        changed = {p.name for p in parameters if p.name in PARAMETER_SPECS}
        for name in changed:
            self.settings[name] = self.get_parameter(name).value
        if changed & {"approximate_sync", "slop", "queue_size"}:
            self._build_synchronizer()
        if changed & {"input_qos", "queue_size"}:
            for subscription in self._input_subscriptions.values():
                subscription.configure(self.settings["input_qos"], self.settings["queue_size"])
        if "publish_stages" in changed and self.settings["publish_stages"]:
            self._create_stage_publishers()
        if changed:
            self.get_logger().info("parameters changed: " + ", ".join(f"{n}={self.settings[n]!r}"
                                                                      for n in sorted(changed)))

    # ------------------------------------------------------------------------------------------------ problems

    def _report(self, kind: str, message: str) -> None:
        """Count a problem, remember it and log it, throttled per kind."""
        self.problems[kind] += 1
        self.last_problem = message
        logger = self._problem_loggers.get(kind)
        if logger is None:
            # One child logger per kind: rclpy throttles per call site and logger, so kinds do not mute each other.
            logger = self._problem_loggers[kind] = self.get_logger().get_child(kind)
        logger.warning(message, throttle_duration_sec=PROBLEM_THROTTLE_S)

    # ------------------------------------------------------------------------------------------------ processing

    def _on_synchronized(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                         right_info: CameraInfo) -> None:
        self._sync_monitor.synchronized()
        try:
            self.process_frame(left_image, right_image, left_info, right_info)
        except Exception as error:  # never let one frame take the node down
            self.counters["skipped"] += 1
            self._report("internal", f"frame skipped after an unexpected error: {type(error).__name__}: {error}")

    def process_frame(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                      right_info: CameraInfo) -> bool:
        """Process one synchronised set: estimate disparity and publish the outputs that have subscribers.

        Called by the synchroniser; public so tools and benchmarks can drive the node without the middleware.

        Returns:
            True if the frame was processed and published, False if it was skipped (see :attr:`last_problem`).
        """
        self.counters["sets"] += 1
        timing: dict[str, float] = {}
        start = time.perf_counter()
        try:
            left, right, camera = self._convert_inputs(left_image, right_image, left_info, right_info)
        except InputError as error:
            self.counters["skipped"] += 1
            self._report(error.kind, str(error))
            return False
        timing["convert_in"] = time.perf_counter() - start

        tick = time.perf_counter()
        try:
            disparities = self._estimate(left, right)
        except Exception as error:
            self.counters["skipped"] += 1
            self._report("estimator", f"estimator {self.estimator.name} failed on a {left.shape[1]} x "
                                      f"{left.shape[0]} pair: {type(error).__name__}: {error}")
            return False
        timing["inference"] = time.perf_counter() - tick

        header = Header(stamp=left_image.header.stamp,
                        frame_id=left_image.header.frame_id or left_info.header.frame_id)
        if camera.principal_point_offset_px:
            # DisparityImage convention: d = x_l - x_r - (cx_l - cx_r).
            disparities = [d - np.float32(camera.principal_point_offset_px) for d in disparities]
        stage = min(self.settings["output_stage"], len(disparities) - 1)
        disparity = disparities[stage]
        outgoing: list[tuple[str, Any]] = []

        tick = time.perf_counter()
        if self._wanted("disparity"):
            outgoing.append(("disparity", self._disparity_message(disparity, header, camera)))
        if self._wanted("disparity/image"):
            outgoing.append(("disparity/image", conversions.numpy_to_image(disparity, "32FC1", header)))
        if self.settings["publish_stages"]:
            for index, stage_disparity in enumerate(disparities):
                publisher = self._stage_publishers.get(index)
                if publisher is not None and publisher.get_subscription_count() > 0:
                    outgoing.append((STAGE_TOPIC.format(index),
                                     self._disparity_message(stage_disparity, header, camera)))
        timing["build_disparity"] = time.perf_counter() - tick

        want_depth, want_points = self._wanted("depth"), self._wanted("points2")
        timing["build_depth"] = timing["reproject"] = timing["build_points2"] = 0.0
        if camera.calibration is None:
            if want_depth or want_points:
                self._report("calibration", f"publishing 'disparity' only (f = t = 0), skipping 'depth' and "
                                            f"'points2': {camera.problem}")
        elif want_depth or want_points:
            min_depth = self.settings["min_depth"]
            max_depth = self.settings["max_depth"] or float("inf")
            points = None
            if want_points:
                tick = time.perf_counter()
                points = reproject_disparity_to_points(disparity, camera.calibration, min_depth, max_depth)
                timing["reproject"] = time.perf_counter() - tick
                tick = time.perf_counter()
                colors = left if self.settings["use_color"] else None
                outgoing.append(("points2", conversions.make_point_cloud2(points, header, colors)))
                timing["build_points2"] = time.perf_counter() - tick
            if want_depth:
                tick = time.perf_counter()
                if points is not None:
                    depth = points[..., 2]  # the same Z = f B / d with the same limits
                else:
                    depth = disparity_to_depth(disparity, camera.focal_px, camera.baseline_m, min_depth, max_depth)
                outgoing.append(("depth", conversions.numpy_to_image(depth, "32FC1", header)))
                timing["build_depth"] = time.perf_counter() - tick

        tick = time.perf_counter()
        for topic, msg in outgoing:
            publisher = self._output_publishers.get(topic)
            if publisher is None:
                publisher = self._stage_publishers[int(topic.rsplit("_", 1)[1])]
            publisher.publish(msg)
            self.counters[f"published_{topic}"] += 1
        timing["publish"] = time.perf_counter() - tick
        timing["total"] = time.perf_counter() - start
        self.counters["processed"] += 1
        self.last_timing = timing
        return True

    def output_subscription_count(self, topic: str) -> int:
        """Subscriptions matched to an output (``disparity``, ``depth``, ``points2`` or ``disparity/stage_N``).

        Outputs without subscriptions are not built (like image_pipeline's lazy nodes).
        """
        if topic in self._output_publishers:
            return self._output_publishers[topic].get_subscription_count()
        stage = int(topic.rsplit("_", 1)[1]) if topic.startswith("disparity/stage_") else -1
        if stage in self._stage_publishers:
            return self._stage_publishers[stage].get_subscription_count()
        raise KeyError(f"{topic!r} is not an output of this node (outputs: {', '.join(self._output_topics())})")

    def _output_topics(self) -> list[str]:
        return list(self._output_publishers) + [STAGE_TOPIC.format(s) for s in sorted(self._stage_publishers)]

    def _wanted(self, topic: str) -> bool:
        return self._output_publishers[topic].get_subscription_count() > 0

    def _convert_inputs(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                        right_info: CameraInfo):
        left = conversions.image_to_bgr8(left_image, INPUT_TOPICS[0])
        right = conversions.image_to_bgr8(right_image, INPUT_TOPICS[1])
        if left.shape != right.shape:
            raise InputError("image_size", f"left and right images differ in size (fields 'width' x 'height'): "
                                           f"{left_image.width} x {left_image.height} vs {right_image.width} x "
                                           f"{right_image.height}")
        conversions.check_camera_info_size(left_info, left_image, "left")
        conversions.check_camera_info_size(right_info, right_image, "right")
        return left, right, conversions.camera_info_calibration(left_info, right_info)

    def _estimate(self, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
        if self.settings["method"] == "coarse-to-fine":
            stage = NUM_STAGES - 1 if self.settings["publish_stages"] else self.settings["output_stage"]
            return self.estimator.estimate(left, right, max_stage=stage)
        return self.estimator.estimate(left, right)

    def _disparity_message(self, disparity: np.ndarray, header: Header,
                           camera: conversions.StereoCameraInfo) -> DisparityImage:
        height, width = disparity.shape
        if self.settings["method"] == "sgbm":
            # The window of potentially valid disparities, as ROS 1 stereo_image_proc computed it for block matching.
            sgbm = self.estimator
            border = sgbm.block_size // 2
            left_edge = sgbm.num_disparities + sgbm.min_disparity + border - 1
            right_margin = border + sgbm.min_disparity if sgbm.min_disparity >= 0 else max(border,
                                                                                          -sgbm.min_disparity)
            right_edge = width - 1 - right_margin
            window = (min(left_edge, width), border, max(right_edge - left_edge, 0), max(height - 1 - 2 * border, 0))
            min_disparity = float(sgbm.min_disparity)
            max_disparity = float(sgbm.min_disparity + sgbm.num_disparities - 1)
        else:
            window = None  # the network gives a value at every pixel
            min_disparity, max_disparity = 0.0, float(self.estimator.max_disparity)
        return conversions.make_disparity_image(disparity, header, camera.focal_px, camera.baseline_m,
                                                min_disparity, max_disparity, DELTA_D, window)

    def destroy_node(self) -> None:
        """Destroy the subscriptions, publishers and timers, then the node."""
        for subscription in getattr(self, "_input_subscriptions", {}).values():
            subscription.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``stereo_depth_node``: run the node until Ctrl-C.

    Returns:
        0 after a clean shutdown, 1 when the node fails to start (the reason, e.g. the weights file and what is
        wrong with it, is logged).
    """
    rclpy.init(args=args)
    try:
        node = StereoDepthNode()
    except Exception as error:
        rclpy.logging.get_logger(DEFAULT_NODE_NAME).fatal(f"failed to start: {type(error).__name__}: {error}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
