"""The monocular depth ROS 2 node: one image (+ camera_info) in; metric depth, a point cloud and the fused
``depth_filled`` out.

Topics (relative names; bringup remaps them into the stereo namespace, see :data:`~stereo_depth_ros.ros.
bringup_spec.NODE_KINDS`), parameters and the scale rules are listed in docs/ros_interface.md and docs/mono_depth.md;
:attr:`MonoDepthNode.INPUT_TOPICS`, :attr:`MonoDepthNode.OUTPUT_TOPICS` and :data:`PARAMETERS` (plus the common
parameters of :mod:`stereo_depth_ros.ros.node_base`) are the source of truth.

- in: ``image`` (sensor_msgs/Image), ``camera_info`` (sensor_msgs/CameraInfo, synchronised with the image; its K
  gives ``points2``), and, not synchronised, ``stereo_depth`` (sensor_msgs/Image 32FC1 metres: the stereo node's
  ``depth``), subscribed only while an output wants it (alignment or ``depth_filled``), so the stereo node stays
  lazy otherwise.
- out: ``depth`` (32FC1 metres, REP-117: NaN no value, -inf nearer than ``min_depth``, +inf farther than
  ``max_depth``), ``points2`` (organised, coloured), ``depth_filled`` (stereo depth where valid, this node's depth
  aligned to stereo elsewhere; :func:`stereo_depth_ros.evaluation.depth_fusion.fuse_depth`).

Scale of ``depth`` (metres), per frame, first that applies (the source is in ``/diagnostics``):

1. ``depth_scale`` > 0: the model's output times ``depth_scale`` (a user calibration; for a metric model, a
   correction);
2. a metric model (``estimator.metric``, e.g. the self-supervised DispNet on the rig it was trained on): as it is;
3. ``align_to_stereo`` and a ``stereo_depth`` message of the same stamp (or within ``slop`` with
   ``approximate_sync``): the median ratio stereo / model over pixels where both are valid
   (:func:`~stereo_depth_ros.evaluation.depth_fusion.alignment_scale`); when that frame's stereo depth has not
   arrived yet, the last stereo scale (at most ``scale_max_age`` seconds old);
4. otherwise the set is skipped as problem ``"scale"`` naming the two ways out: nothing unscaled is ever published
   as metres.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from stereo_depth_ros.device import DEVICES
from stereo_depth_ros.evaluation.depth_fusion import MIN_ALIGNMENT_PIXELS, alignment_scale, fuse_depth
from stereo_depth_ros.models.registry import create_estimator, model_names, model_spec
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.conversions import InputError
from stereo_depth_ros.ros.node_base import COMMON_PARAMETERS, PerceptionNode, SkipSet, run_node
from stereo_depth_ros.ros.parameters import ParameterSpec, parameter_table
from stereo_depth_ros.ros.qos import output_qos
from stereo_depth_ros.ros.sync import stamp_nanoseconds

DEFAULT_NODE_NAME = "mono_depth_node"
DEFAULT_MODEL = "unet"
STEREO_DEPTH_TOPIC = "stereo_depth"
#: Frames of own depth and of stereo depth kept to pair them by stamp.
CACHE_FRAMES = 8
#: Seconds between two looks at whether the stereo depth subscription is needed.
STEREO_CHECK_PERIOD_S = 0.2

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", DEFAULT_MODEL, "Registered monocular depth model (input kind 'image'): unet, scrx, "
                  "dispnet-subpixel, ... (stereo-depth-ros eval-mono lists them).", read_only=True),
    ParameterSpec("weights", "", "Weights file (safetensors); empty = the model's packaged weights.",
                  read_only=True),
    ParameterSpec("device", "auto", "Device: auto (CUDA when available), cpu or cuda.", read_only=True,
                  choices=DEVICES),
    ParameterSpec("depth_scale", 0.0, "Metres per model unit; 0 = the model's own metres (metric models) or "
                  "alignment to 'stereo_depth'. > 0 wins over both.", float_range=(0.0, 1.0e6)),
    ParameterSpec("align_to_stereo", True, "Scale a scale-free model's depth each frame to the stereo node's "
                  "depth ('stereo_depth'): median ratio over pixels where both are valid."),
    ParameterSpec("scale_max_age", 1.0, "Seconds a stereo alignment scale stays usable for later frames whose own "
                  "stereo depth has not arrived.", float_range=(0.0, 3600.0)),
    ParameterSpec("min_depth", 0.0, "Depths below this (metres) are -inf in 'depth' (REP-117) and invalid in "
                  "'points2'.", float_range=(0.0, 1000.0)),
    ParameterSpec("max_depth", 0.0, "Depths above this (metres) are +inf in 'depth' (REP-117) and invalid in "
                  "'points2'; 0 = no limit.", float_range=(0.0, 1000.0)),
    ParameterSpec("use_color", True, "Colour 'points2' from the image (rgb field)."),
)
#: Every parameter of the node (common ones first) by name.
PARAMETER_SPECS = parameter_table(COMMON_PARAMETERS, PARAMETERS)


def apply_depth_limits(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """REP-117 depth: NaN where the model gave no positive finite value, -inf below ``min_depth``, +inf above
    ``max_depth`` (0 = no limit). Returns a new float32 (H, W) array.

    Example:
        >>> apply_depth_limits(np.array([[0.0, 0.05, 0.2, 0.9]], np.float32), 0.1, 0.5)
        array([[ nan, -inf,  0.2,  inf]], dtype=float32)
    """
    depth = np.array(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        invalid = ~(np.isfinite(depth) & (depth > 0))
        near = depth < min_depth
        far = (depth > max_depth) if max_depth > 0 else np.zeros(depth.shape, bool)
    depth[near] = -np.inf
    depth[far] = np.inf
    depth[invalid] = np.nan
    return depth


def create_monocular_estimator(name: str, parameter: str, weights: str = "", **settings: Any):
    """A registered monocular depth model for a node, built through the registry.

    Args:
        name: the registry name (the value of the node's parameter ``parameter``).
        parameter: the parameter's name, for the error message ("model", "depth_model").
        weights: weights file; "" = the model's packaged weights.
        settings: node settings (``device``, ``backend``, ...), each passed on where the model takes that option.

    Raises:
        ValueError: if ``name`` is not a registered model with an ``image`` input and a ``depth`` output, listing
            those that are.
    """
    monocular = [n for n in model_names(input_kind="image") if "depth" in model_spec(n).output_kinds]
    if name not in monocular:
        raise ValueError(f"parameter {parameter!r} {name!r} is not a registered monocular depth model; registered: "
                         f"{', '.join(monocular) or 'none'}")
    spec = model_spec(name)
    options = {option: value for option, value in settings.items() if option in spec.options}
    if weights:
        options["weights"] = weights
    return create_estimator(name, **options)


def fixed_depth_scale(depth_scale: float, metric: bool) -> tuple[float, str] | None:
    """The metres per model unit that need no stereo depth, with its source: ``depth_scale`` when it is > 0
    (source "depth_scale"), else 1 for a metric model (source "model"); None for a scale-free model without one.

    Example:
        >>> fixed_depth_scale(0.0, True), fixed_depth_scale(0.01, True), fixed_depth_scale(0.0, False)
        ((1.0, 'model'), (0.01, 'depth_scale'), None)
    """
    if depth_scale > 0.0:
        return float(depth_scale), "depth_scale"
    return (1.0, "model") if metric else None


class MonoDepthNode(PerceptionNode):
    """Monocular depth node on :class:`~stereo_depth_ros.ros.node_base.PerceptionNode` (see the module docstring).

    Attributes:
        estimator: the monocular estimator built through the registry.
        last_scale: ``(metres per model unit, source)`` of the last published frame; source is "depth_scale",
            "model", "stereo" or "stereo (previous frame)".
        counters, problems, last_problem, last_timing, statistics: see the base class. Problem kinds besides the
            base's: "scale" (no way to metres), "estimator", "stereo_depth" (a stereo depth message it cannot use).

    Raises:
        ValueError: at start-up, for an unknown or non-monocular model (listing the registered ones) or invalid
            parameters.
        stereo_depth_ros.models.weights.WeightsError: for a missing or wrong weights file.
    """

    DEFAULT_NODE_NAME = DEFAULT_NODE_NAME
    INPUT_TOPICS = {"image": Image, "camera_info": CameraInfo}
    OUTPUT_TOPICS = {"depth": Image, "points2": PointCloud2, "depth_filled": Image}
    PARAMETERS = PARAMETERS

    def setup(self) -> None:
        """Build the estimator through the registry; prepare the (lazy) stereo depth subscription."""
        settings = self.settings
        name = settings["model"]
        self.estimator = create_monocular_estimator(name, "model", settings["weights"], device=settings["device"])
        self.metric = bool(getattr(self.estimator, "metric", False))
        self.last_scale: tuple[float, str] | None = None
        self._stereo_scale: tuple[float, float] | None = None  # (scale, monotonic time)
        self._buffers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._own: OrderedDict[int, tuple[np.ndarray, Header]] = OrderedDict()  # stamp -> relative depth
        self._stereo: OrderedDict[int, np.ndarray] = OrderedDict()  # stamp -> stereo depth (m)
        self._fused_stamps: set[int] = set()
        self._stereo_subscription = None
        self._stereo_timer = self.create_timer(STEREO_CHECK_PERIOD_S, self._update_stereo_subscription)
        self.get_logger().info(f"model {name} ({'metric' if self.metric else 'scale-free'}, backend "
                               f"{self.estimator.backend}) ready")

    def check_parameters(self, values: dict[str, Any]) -> str | None:
        """``max_depth`` above ``min_depth`` (when not 0)."""
        if values["max_depth"] != 0.0 and values["max_depth"] <= values["min_depth"]:
            return (f"parameter 'max_depth' ({values['max_depth']} m) must be 0 (no limit) or larger than "
                    f"'min_depth' ({values['min_depth']} m)")
        return None

    def prepare(self, height: int, width: int) -> None:
        """Build the estimator's backend for this size on the worker thread."""
        self.estimator.prepare(height, width)

    def diagnostic_values(self) -> dict[str, str]:
        """Model, backend and the scale of the last frame with its source."""
        scale = "none yet" if self.last_scale is None else f"{self.last_scale[0]:.6g} m/unit ({self.last_scale[1]})"
        return {"model": self.estimator.name, "backend": self.estimator.backend,
                "metric model": str(self.metric), "depth scale": scale}

    # ------------------------------------------------------------------------------------------------ stereo

    def needs_stereo(self) -> bool:
        """Whether the ``stereo_depth`` subscription is needed now: inputs subscribed, and ``depth_filled`` wanted
        or a scale-free model without ``depth_scale`` and ``align_to_stereo`` on."""
        if not self.inputs_subscribed:
            return False
        aligning = (self.settings["align_to_stereo"] and not self.metric and self.settings["depth_scale"] == 0.0
                    and (self.wanted("depth") or self.wanted("points2")))
        return aligning or self.wanted("depth_filled")

    def _update_stereo_subscription(self) -> None:
        needed = self.needs_stereo()
        if needed and self._stereo_subscription is None:
            self._stereo_subscription = self.create_subscription(
                Image, STEREO_DEPTH_TOPIC, self._on_stereo_depth, output_qos("reliable", CACHE_FRAMES))
        elif not needed and self._stereo_subscription is not None:
            self.destroy_subscription(self._stereo_subscription)
            self._stereo_subscription = None
            with self._lock:
                self._stereo.clear()

    def _on_stereo_depth(self, msg: Image) -> None:
        try:
            if msg.encoding != "32FC1":
                raise InputError("stereo_depth", f"'{STEREO_DEPTH_TOPIC}' must be 32FC1 depth in metres, got "
                                                 f"encoding {msg.encoding!r}")
            depth = np.array(conversions.image_to_numpy(msg, STEREO_DEPTH_TOPIC), dtype=np.float32)
        except InputError as error:
            self.report_problem("stereo_depth", str(error))
            return
        stamp = stamp_nanoseconds(msg)
        with self._lock:
            self._stereo[stamp] = depth
            while len(self._stereo) > CACHE_FRAMES:
                self._stereo.popitem(last=False)
        self._publish_filled(stamp)

    def _matching_stereo(self, stamp: int) -> np.ndarray | None:
        with self._lock:
            if stamp in self._stereo:
                return self._stereo[stamp]
            if self.settings["approximate_sync"] and self._stereo:
                nearest = min(self._stereo, key=lambda s: abs(s - stamp))
                if abs(nearest - stamp) <= self.settings["slop"] * 1e9:
                    return self._stereo[nearest]
        return None

    def _publish_filled(self, stamp: int) -> None:
        """Fuse and publish ``depth_filled`` once both depths of ``stamp`` exist (called from either side)."""
        if not self.wanted("depth_filled"):
            return
        with self._lock:
            own = self._own.get(stamp)
            stereo = self._stereo.get(stamp)
            if own is None or stereo is None or stamp in self._fused_stamps:
                return
            self._fused_stamps.add(stamp)
            if len(self._fused_stamps) > 4 * CACHE_FRAMES:
                self._fused_stamps = set(sorted(self._fused_stamps)[-CACHE_FRAMES:])
        relative, header = own
        if stereo.shape != relative.shape:
            self.report_problem("stereo_depth", f"'{STEREO_DEPTH_TOPIC}' is {stereo.shape[1]} x {stereo.shape[0]} "
                                                f"but 'image' is {relative.shape[1]} x {relative.shape[0]}")
            return
        fused, scale = fuse_depth(stereo, relative, min_pixels=MIN_ALIGNMENT_PIXELS)
        if not math.isfinite(scale):
            self.report_problem("scale", "depth_filled: fewer than "
                                         f"{MIN_ALIGNMENT_PIXELS} pixels valid in both depths; not published")
            return
        self._output_publishers["depth_filled"].publish(conversions.numpy_to_image(fused, "32FC1", header))
        self.counters["published_depth_filled"] += 1

    # ------------------------------------------------------------------------------------------------ processing

    def _scale(self, relative: np.ndarray, stamp: int) -> tuple[float, str]:
        settings = self.settings
        fixed = fixed_depth_scale(settings["depth_scale"], self.metric)
        if fixed is not None:
            return fixed
        if settings["align_to_stereo"]:
            stereo = self._matching_stereo(stamp)
            if stereo is not None and stereo.shape == relative.shape:
                scale = alignment_scale(relative, stereo)
                if math.isfinite(scale):
                    self._stereo_scale = (scale, time.monotonic())
                    return scale, "stereo"
            if self._stereo_scale is not None and \
                    time.monotonic() - self._stereo_scale[1] <= settings["scale_max_age"]:
                return self._stereo_scale[0], "stereo (previous frame)"
        raise SkipSet("scale", f"model {self.estimator.name!r} gives depth up to a scale and no scale is known: "
                               f"set parameter 'depth_scale' (metres per unit) or run the stereo node so that "
                               f"'{STEREO_DEPTH_TOPIC}' carries its depth (align_to_stereo)")

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Estimate the depth of one image and build the wanted outputs (worker thread).

        Raises:
            InputError: for messages the node cannot use (the kind names the problem).
            SkipSet: kind "estimator" when the model fails, "scale" when no scale to metres is known.
        """
        image_msg, info = inputs
        with self.timed("convert_in"):
            image = conversions.image_to_bgr8(image_msg, "image")
            conversions.check_camera_info_size(info, image_msg, "image")
        with self.timed("inference"):
            try:
                relative = self.estimator.predict(image)["depth"]
            except Exception as error:
                raise SkipSet("estimator", f"model {self.estimator.name} failed on a {image.shape[1]} x "
                                           f"{image.shape[0]} image: {type(error).__name__}: {error}") from error
        header = Header(stamp=image_msg.header.stamp, frame_id=image_msg.header.frame_id or info.header.frame_id)
        stamp = stamp_nanoseconds(image_msg)
        with self._lock:
            self._own[stamp] = (relative, header)
            while len(self._own) > CACHE_FRAMES:
                self._own.popitem(last=False)
        self._publish_filled(stamp)

        outgoing: list[tuple[str, Any]] = []
        want_depth, want_points = self.wanted("depth"), self.wanted("points2")
        if not (want_depth or want_points):
            return outgoing
        scale, source = self._scale(relative, stamp)
        self.last_scale = (scale, source)
        with self.timed("depth"):
            depth = apply_depth_limits(relative * np.float32(scale), self.settings["min_depth"],
                                       self.settings["max_depth"])
        if want_points:
            k = info.k
            if k[0] <= 0 or k[4] <= 0:
                self.report_problem("calibration", "camera_info K has no focal length (fx, fy = 0): skipping "
                                                   "'points2'")
            else:
                with self.timed("build_points2"):
                    camera = SimpleNamespace(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))
                    colors = image if self.settings["use_color"] else None
                    data = conversions.reusable_buffer(self._buffers, "points2", depth.size * conversions.POINT_STEP)
                    outgoing.append(("points2", conversions.make_point_cloud2_from_depth(depth, camera, header,
                                                                                         colors, data)))
        if want_depth:
            with self.timed("build_depth"):
                outgoing.append(("depth", conversions.numpy_to_image(
                    depth, "32FC1", header, conversions.reusable_buffer(self._buffers, "depth", depth.nbytes))))
        return outgoing


def main(args: list[str] | None = None) -> int:
    """Console entry point ``mono_depth_node``: run the node until Ctrl-C.

    Returns:
        0 after a clean shutdown, 1 when the node fails to start (the reason is logged).
    """
    return run_node(MonoDepthNode, DEFAULT_NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
