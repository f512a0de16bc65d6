"""The stereo depth ROS 2 node: rectified stereo pair in; disparity, depth and a coloured point cloud out.

Topics (relative names: namespaces and remapping apply), parameters and QoS are listed in docs/ros_interface.md;
:attr:`StereoDepthNode.INPUT_TOPICS`, :attr:`StereoDepthNode.OUTPUT_TOPICS` and :data:`PARAMETERS` (plus the
common parameters of :mod:`stereo_depth_ros.ros.node_base`) are the source of truth.

The node is a :class:`~stereo_depth_ros.ros.node_base.PerceptionNode`: laziness, the worker thread that takes the
newest input set, synchronisation, QoS, problem reporting and ``/diagnostics`` come from the base class. What is
stereo-specific is here: the estimator (built through :func:`stereo_depth_ros.models.registry.create_estimator`),
the safe-output rules (:func:`mask_disparity`, ``min_disparity``, REP-117 depth) and the output messages
(:mod:`stereo_depth_ros.ros.conversions`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from stereo_depth_ros.device import DEVICES
from stereo_depth_ros.geometry import disparity_to_depth
from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES
from stereo_depth_ros.models.confidence import apply_confidence_threshold
from stereo_depth_ros.models.estimator import MAX_INPUT_SCALE
from stereo_depth_ros.models.registry import create_estimator
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.node_base import COMMON_PARAMETERS, PerceptionNode, SkipSet, run_node
from stereo_depth_ros.ros.parameters import ParameterSpec, parameter_table

DEFAULT_NODE_NAME = "stereo_depth_node"
METHODS = ("coarse-to-fine", "sgbm")
#: Sub-pixel step reported in DisparityImage.delta_d: OpenCV's fixed-point step (1/16 px), which stereo_image_proc
#: reports; used for the network too (its soft-argmin output is continuous; see docs/ros_interface.md).
DELTA_D = 1.0 / 16.0
#: The smallest valid disparity (pixels) when ``min_disparity`` is 0 (auto) and no depth limit gives one: at 1 px
#: the depth is ``f * B`` (5 m for f = 1000 px, B = 5 mm, far beyond an endoscope's view) and a disparity below
#: one pixel is within the estimators' matching error, so a depth from it would be noise of kilometres.
DEFAULT_MIN_DISPARITY_PX = 1.0
#: The stage published on 'disparity' by default: the one that ``stereo-depth-ros eval-stereo-proxy`` (EPE against
#: confident SGBM on the 14 held-out real pairs, the validation signal of issue 15) selects for the packaged weights
#: at the default input scale: stage 2 at 0.364 px against stage 3's 0.420 px (docs/stereo.md, "Which stage the
#: node publishes"). Stage 3 stays one parameter away (``output_stage: 3``).
DEFAULT_OUTPUT_STAGE = 2
STAGE_TOPIC = "disparity/stage_{}"
CONFIDENCE_TOPIC = "disparity/confidence"

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
    ParameterSpec("output_stage", DEFAULT_OUTPUT_STAGE, "Network stage published on 'disparity' (0 coarsest, 3 "
                  "finest); earlier stages are cheaper. Default 2: the stage the validation signal selects for the "
                  "packaged weights (docs/stereo.md). sgbm has a single stage and ignores it.",
                  integer_range=(0, NUM_STAGES - 1)),
    ParameterSpec("publish_stages", False, "Also publish every stage on 'disparity/stage_N' (the network then "
                  "computes all stages)."),
    ParameterSpec("min_disparity", 0.0, "Smallest valid disparity in pixels (DisparityImage convention d = x_l - "
                  "x_r - (cx_l - cx_r)); smaller ones are NaN in 'disparity' and +inf (too far) in 'depth'. 0 = "
                  "auto: f * B / max_depth when max_depth > 0 and the camera is calibrated, else 1.0 px.",
                  float_range=(0.0, 1024.0)),
    ParameterSpec("min_depth", 0.0, "Depths below this (metres) are -inf in 'depth' (REP-117: too near) and "
                  "invalid (NaN) in 'points2'.", float_range=(0.0, 1000.0)),
    ParameterSpec("max_depth", 0.0, "Depths above this (metres) are +inf in 'depth' (REP-117: too far) and "
                  "invalid (NaN) in 'points2'; 0 = no limit other than min_disparity's.",
                  float_range=(0.0, 1000.0)),
    ParameterSpec("use_color", True, "Colour 'points2' from the left image (rgb field); false = x, y, z only."),
    ParameterSpec("confidence_threshold", 0.0, "Pixels whose confidence (published on 'disparity/confidence', "
                  "0..1) is below this are invalid: NaN in 'disparity', 'disparity/image' and 'depth', NaN points in "
                  "'points2'. 0 = off (the confidence is then computed only while 'disparity/confidence' has a "
                  "subscriber).", float_range=(0.0, 1.0)),
)
#: Every parameter of the node (common ones first) by name.
PARAMETER_SPECS = parameter_table(COMMON_PARAMETERS, PARAMETERS)


def mask_disparity(disparity: np.ndarray, principal_point_offset_px: float, min_disparity: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Turn an estimator's image disparity into the published disparity, with the invalid pixels set to NaN.

    Args:
        disparity: (H, W) float32 image disparity ``x_l - x_r`` in pixels, NaN where the estimator has no value.
        principal_point_offset_px: ``cx_l - cx_r`` of the rectified pair (pixels, 0 for the usual rectification).
        min_disparity: smallest valid published disparity, pixels.

    Returns:
        ``(in_view, valid)``, both (H, W) float32 in the DisparityImage convention ``d = x_l - x_r - (cx_l -
        cx_r)``: ``in_view`` is NaN where the estimator gave none or where the match would lie left of the right
        image (``x - (x_l - x_r) < 0``, the band at the left edge no camera sees twice); ``valid`` is ``in_view``
        with NaN also where ``d < min_disparity``. New arrays (the input is not changed).

    Example:
        >>> in_view, valid = mask_disparity(np.array([[0.5, 3.0, 0.5, 2.0]], np.float32), 0.0, 1.0)
        >>> in_view
        array([[nan, nan, 0.5, 2. ]], dtype=float32)
        >>> valid
        array([[nan, nan, nan,  2.]], dtype=float32)
    """
    height, width = disparity.shape
    in_view = np.subtract(disparity, np.float32(principal_point_offset_px), dtype=np.float32)
    columns = np.arange(width, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        # x - d < 0: no match inside the right image.
        np.copyto(in_view, np.float32(np.nan), where=disparity > columns)
        valid = in_view.copy()
        np.copyto(valid, np.float32(np.nan), where=valid < np.float32(min_disparity))
    return in_view, valid


class StereoDepthNode(PerceptionNode):
    """Stereo depth node: subscribes a rectified pair with camera_info, publishes disparity, depth, points2.

    Args:
        node_name: ROS node name (default ``stereo_depth_node``).
        **kwargs: see :class:`~stereo_depth_ros.ros.node_base.PerceptionNode`.

    Attributes:
        estimator: the :class:`~stereo_depth_ros.models.base.StereoEstimator` built at start-up.
        counters, problems, last_problem, last_timing, statistics: see the base class. Problem kinds:
            "encoding", "image_size", "camera_info_size", "empty_image", "image_layout", "calibration",
            "unsynchronized", "estimator", "prepare", "internal". Timing steps: "convert_in", "inference"
            (with the confidence when it is wanted), "build_disparity" (confidence threshold, safe-output masks, the
            disparity and confidence messages), "depth" (the core's ``disparity_to_depth``), "build_depth",
            "build_points2" (reprojection into the message), "publish", "total".

    Raises:
        stereo_depth_ros.models.weights.WeightsError: at start-up, for a missing or wrong weights file.
        ValueError: at start-up, for invalid parameters (naming them) or kwargs.
        rclpy.exceptions.InvalidParameterValueException: for an override outside a parameter's range.
    """

    DEFAULT_NODE_NAME = DEFAULT_NODE_NAME
    INPUT_TOPICS = {"left/image_rect": Image, "right/image_rect": Image, "left/camera_info": CameraInfo,
                    "right/camera_info": CameraInfo}
    #: ``disparity/image`` repeats the disparity as a plain 32FC1 image, which RViz (no DisparityImage display) can
    #: show; ``disparity/confidence`` is the per-pixel confidence (32FC1 in [0, 1]) of the last stage computed;
    #: ``disparity/stage_N`` is added per stage when ``publish_stages`` is true.
    OUTPUT_TOPICS = {"disparity": DisparityImage, "disparity/image": Image, "depth": Image,
                     "points2": PointCloud2, CONFIDENCE_TOPIC: Image}
    PARAMETERS = PARAMETERS

    # ------------------------------------------------------------------------------------------------ start-up

    def setup(self) -> None:
        """Build the estimator through the model registry."""
        settings = self.settings
        self._buffers: dict[str, Any] = {}  # output byte buffers reused from frame to frame (no page faults)
        if settings["method"] == "sgbm":
            self.estimator = create_estimator("sgbm", max_disparity=settings["max_disparity"] or None)
            if settings["weights"]:
                self.get_logger().warning("parameter 'weights' is ignored by method sgbm")
            self._stage_count = self.estimator.num_stages
        else:
            self.estimator = create_estimator(
                "coarse-to-fine", weights=settings["weights"] or self.default_weights(), device=settings["device"],
                max_disparity=settings["max_disparity"] or None, input_scale=settings["input_scale"] or None,
                max_stage=self._network_stage())
            self._stage_count = NUM_STAGES
        self.get_logger().info(f"estimator {self.estimator.name} ({self._estimator_description()}) ready")
        if settings["publish_stages"]:
            self._create_stage_outputs()

    def default_weights(self) -> str | None:
        """The network weights used while parameter ``weights`` is empty: None, the registry's packaged weights
        (subclasses running the network on other inputs may name their own)."""
        return None

    def _estimator_description(self) -> str:
        estimator = self.estimator
        parts = [f"backend {estimator.backend}", f"max_disparity {estimator.max_disparity} px"]
        for attribute in ("weights_path", "device", "input_scale"):
            if hasattr(estimator, attribute):
                parts.append(f"{attribute} {getattr(estimator, attribute) or 'auto'}")
        return ", ".join(parts)

    def _create_stage_outputs(self) -> None:
        for stage in range(self._stage_count):
            self.add_output(STAGE_TOPIC.format(stage), DisparityImage)

    def _network_stage(self) -> int:
        """The last stage the estimator must compute for the current settings."""
        if self.settings["method"] != "coarse-to-fine":
            return 0
        return NUM_STAGES - 1 if self.settings["publish_stages"] else self.settings["output_stage"]

    def check_parameters(self, values: dict[str, Any]) -> str | None:
        """``max_depth`` above ``min_depth`` (when not 0); an SGBM ``max_disparity`` a multiple of 16."""
        if values["max_depth"] != 0.0 and values["max_depth"] <= values["min_depth"]:
            return (f"parameter 'max_depth' ({values['max_depth']} m) must be 0 (no limit) or larger than "
                    f"'min_depth' ({values['min_depth']} m)")
        if values["method"] == "sgbm" and values["max_disparity"] % 16:
            return (f"parameter 'max_disparity' must be a multiple of 16 for method sgbm, got "
                    f"{values['max_disparity']}")
        return None

    def on_parameters_changed(self, changed: set[str]) -> None:
        """Create the ``disparity/stage_N`` publishers when ``publish_stages`` becomes true."""
        if "publish_stages" in changed and self.settings["publish_stages"]:
            self._create_stage_outputs()

    def prepare(self, height: int, width: int) -> None:
        """Build the estimator's backend for this size (ONNX export or cache load) on the worker thread; when the
        confidence is needed now (``confidence_threshold`` > 0 or a ``disparity/confidence`` subscriber), also run
        its confidence path once on a black pair, so the first frame does not wait for that graph either."""
        self.estimator.prepare(height, width)
        if self._confidence_needed():
            black = np.zeros((height, width, 3), np.uint8)
            self.estimator.estimate_with_confidence(black, black, max_stage=self._network_stage())

    def _confidence_needed(self) -> bool:
        """Whether the confidence must be computed now: a threshold is set or ``disparity/confidence`` is wanted."""
        return float(self.settings["confidence_threshold"]) > 0.0 or self.wanted(CONFIDENCE_TOPIC)

    def diagnostic_values(self) -> dict[str, str]:
        """The estimator, its backend and the published stage, for ``/diagnostics``."""
        return {"estimator": self.estimator.name, "backend": self.estimator.backend,
                "output stage": str(min(self.settings["output_stage"], self._stage_count - 1))}

    # ------------------------------------------------------------------------------------------------ processing

    def effective_min_disparity(self, camera: conversions.StereoCameraInfo) -> float:
        """The smallest valid disparity in pixels for this frame: ``min_disparity``, or when it is 0 (auto)
        ``f * B / max_depth`` (calibrated camera and ``max_depth`` > 0) or :data:`DEFAULT_MIN_DISPARITY_PX`."""
        if self.settings["min_disparity"] > 0.0:
            return float(self.settings["min_disparity"])
        if self.settings["max_depth"] > 0.0 and camera.calibration is not None:
            return camera.focal_px * camera.baseline_m / self.settings["max_depth"]
        return DEFAULT_MIN_DISPARITY_PX

    def process_frame(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                      right_info: CameraInfo) -> bool:
        """Process one synchronised set now, in the calling thread, and publish the outputs that have
        subscribers (:meth:`process_set` with the four messages).

        Returns:
            True if the frame was processed and published, False if it was skipped (see :attr:`last_problem`).
        """
        return self.process_set(left_image, right_image, left_info, right_info)

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Estimate the disparity of one synchronised set and build the wanted outputs (worker thread).

        Raises:
            InputError: for messages the node cannot use (the kind names the problem).
            SkipSet: kind "estimator" when the estimator fails on this pair.
        """
        left_image, right_image, left_info, right_info = inputs
        with self.timed("convert_in"):
            left, right, camera = self._convert_inputs(left_image, right_image, left_info, right_info)
        stage = self._network_stage()
        threshold = float(self.settings["confidence_threshold"])
        want_confidence = self.wanted(CONFIDENCE_TOPIC)
        confidence = None
        with self.timed("inference"):
            try:
                if self._confidence_needed():
                    disparities, confidence = self.estimator.estimate_with_confidence(left, right, max_stage=stage)
                else:
                    disparities = self.estimator.estimate(left, right, max_stage=stage)
            except Exception as error:
                raise SkipSet("estimator", f"estimator {self.estimator.name} failed on a {left.shape[1]} x "
                                           f"{left.shape[0]} pair: {type(error).__name__}: {error}") from error

        header = Header(stamp=left_image.header.stamp,
                        frame_id=left_image.header.frame_id or left_info.header.frame_id)
        offset = camera.principal_point_offset_px
        min_disparity = self.effective_min_disparity(camera)
        output_stage = min(self.settings["output_stage"], len(disparities) - 1)
        outgoing: list[tuple[str, Any]] = []

        want_depth, want_points = self.wanted("depth"), self.wanted("points2")
        with self.timed("build_disparity"):
            disparity = disparities[output_stage]
            if threshold > 0.0:
                disparity = apply_confidence_threshold(disparity, confidence, threshold)
            in_view, valid = mask_disparity(disparity, offset, min_disparity)
            if want_confidence:
                outgoing.append((CONFIDENCE_TOPIC, conversions.numpy_to_image(
                    confidence, "32FC1", header, self._buffer(CONFIDENCE_TOPIC, confidence.nbytes))))
            if self.wanted("disparity"):
                outgoing.append(("disparity", self._disparity_message(valid, header, camera, min_disparity,
                                                                      "disparity")))
            if self.wanted("disparity/image"):
                outgoing.append(("disparity/image", conversions.numpy_to_image(
                    valid, "32FC1", header, self._buffer("disparity/image", valid.nbytes))))
            if self.settings["publish_stages"]:
                for index, stage_disparity in enumerate(disparities):
                    topic = STAGE_TOPIC.format(index)
                    if self.wanted(topic):
                        stage_valid = valid if index == output_stage else mask_disparity(
                            stage_disparity, offset, min_disparity)[1]
                        outgoing.append((topic, self._disparity_message(stage_valid, header, camera,
                                                                        min_disparity, topic)))

        if not (want_depth or want_points):
            return outgoing
        if camera.calibration is None:
            self.report_problem("calibration", f"publishing 'disparity' only (f = t = 0), skipping 'depth' and "
                                               f"'points2': {camera.problem}")
            return outgoing
        min_depth = self.settings["min_depth"]
        # Beyond f B / min_disparity a disparity is below min_disparity: too far to measure (REP-117 +inf).
        max_depth = camera.focal_px * camera.baseline_m / min_disparity
        if self.settings["max_depth"] > 0.0:
            max_depth = min(max_depth, self.settings["max_depth"])
        with self.timed("depth"):
            depth = disparity_to_depth(in_view, camera.focal_px, camera.baseline_m, min_depth, max_depth)
        if want_points:
            with self.timed("build_points2"):  # reprojection of the depth straight into the message
                colors = left if self.settings["use_color"] else None
                data = self._buffer("points2", depth.size * conversions.POINT_STEP)
                outgoing.append(("points2", conversions.make_point_cloud2_from_depth(
                    depth, camera.calibration, header, colors, data)))
        if want_depth:
            with self.timed("build_depth"):
                outgoing.append(("depth", conversions.numpy_to_image(depth, "32FC1", header,
                                                                     self._buffer("depth", depth.nbytes))))
        return outgoing

    def _convert_inputs(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                        right_info: CameraInfo):
        topics = list(self.INPUT_TOPICS)
        left, right = conversions.stereo_pair_to_bgr8(left_image, right_image, left_info, right_info,
                                                      (topics[0], topics[1]))
        return left, right, conversions.camera_info_calibration(left_info, right_info)

    def _buffer(self, topic: str, nbytes: int):
        """The byte buffer reused for ``topic``'s data (safe: the base class publishes each set's messages before
        the next set is processed, and publish() copies them)."""
        return conversions.reusable_buffer(self._buffers, topic, nbytes)

    def _disparity_message(self, disparity: np.ndarray, header: Header, camera: conversions.StereoCameraInfo,
                           min_disparity: float, topic: str) -> DisparityImage:
        """DisparityImage with the estimator's valid window and range, in the message's convention."""
        height, width = disparity.shape
        offset = camera.principal_point_offset_px
        # The window takes image disparities (x_l - x_r): the published threshold plus the principal point offset.
        window = self.estimator.valid_window(width, height, max(0.0, min_disparity + offset))
        max_disparity = self.estimator.disparity_range()[1] - offset
        return conversions.make_disparity_image(disparity, header, camera.focal_px, camera.baseline_m,
                                                min_disparity, max_disparity, DELTA_D, window,
                                                self._buffer(topic, disparity.nbytes))


def main(args: list[str] | None = None) -> int:
    """Console entry point ``stereo_depth_node``: run the node until Ctrl-C.

    Returns:
        0 after a clean shutdown, 1 when the node fails to start (the reason, e.g. the weights file and what is
        wrong with it, is logged).
    """
    return run_node(StereoDepthNode, DEFAULT_NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
