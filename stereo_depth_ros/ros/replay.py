"""Replay a bag through a node over real ROS 2 topics, record its outputs and evaluate them: one replay for every
node kind, driven by a frame spec.

``stereo-depth-ros replay BAG --out DIR [--pace lockstep|bag] [--rate R]`` (:func:`replay_bag`):

1. picks the :class:`FrameSpec` of the node kind the parameters file starts, in the mode its parameters select
   (:data:`FRAME_SPECS`, :func:`frame_spec`: the node's input topics and message types, the inputs that make up a
   frame, its outputs, the bag's ground-truth topics, how to decode them into arrays and which scorers of
   :mod:`stereo_depth_ros.evaluation.scorers` to run);
2. checks the bag (:func:`stereo_depth_ros.data.bag_io.inspect_bag`: the spec's input topics present with their
   types, not truncated) and reads the stereo camera model from its camera_info
   (:meth:`stereo_depth_ros.geometry.StereoCameraModel.from_camera_info`);
3. starts the nodes in this process (:func:`stereo_depth_ros.ros.bringup.start_nodes`, namespace ``/stereo``) and
   a replay node on one ``MultiThreadedExecutor``; subscribes to the node's outputs *first* and waits until they
   match, then waits until the node subscribes to its inputs (nodes are lazy: they subscribe to their inputs only
   once an output has a subscriber);
4. publishes the bag's messages on their recorded topics (reliable, depth 10) with their recorded header stamps,
   paced by :data:`PACES`:

   - ``lockstep`` (default, evaluation): after each frame the replay waits (bounded by ``frame_timeout_s``) until
     the node's outputs for that stamp have arrived before it publishes the next frame; ``rate`` None or 0 = as
     fast as the node keeps up, otherwise at most the bag's rate times ``rate``. No frame is lost to over-running
     the node.
   - ``bag`` (live): at the bag's rate times ``rate`` (default 1), never waiting, as a live camera would; a node
     slower than that drops frames, and drops and latency are reported as a live system sees them;

5. records every output (and ``disparity/stage_N`` when the node publishes stages) as raw serialized messages
   into ``DIR/outputs`` (rosbag2 MCAP; log time = header stamp);
6. writes ``DIR/report.json``, ``DIR/report.md`` and ``DIR/contact_sheet.png``
   (:mod:`stereo_depth_ros.ros.replay_report`): pacing, frames in and out, dropped frames, latency (publish of a
   frame's last input image to receipt of its last output) p50/p95/max, throughput, and the scorers' metrics
   against the bag's ground truth.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from tqdm import tqdm

from stereo_depth_ros.data import bag_io
from stereo_depth_ros.data.bag_io import CAMERA_INFO_TYPE, DISPARITY_TYPE, IMAGE_TYPE, POINT_CLOUD_TYPE
from stereo_depth_ros.geometry import StereoCameraModel
from stereo_depth_ros.ros import bringup_spec, replay_report
from stereo_depth_ros.ros.bringup import Bringup, start_nodes

PACES = ("lockstep", "bag")
INPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
OUTPUT_QOS_BEST_EFFORT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
MATCH_TIMEOUT_S = 30.0
RELIABLE_INPUT_TIMEOUT_S = 5.0
LATE_RESYNC_S = 0.05
SETTLE_S = 1.0
#: Node counters (``node.counters``) that count input sets the node skipped or dropped.
SKIP_COUNTERS = ("skipped", "dropped")


# ----------------------------------------------------------------------------------------------- frame specs

#: A decoder turns one deserialized (rosbags) message into a named array for the scorers:
#: ``(message, camera model or None) -> array``.
Decoder = Callable[[object, "StereoCameraModel | None"], np.ndarray]


@dataclass(frozen=True)
class FrameSpec:
    """What one frame of a node kind is, for the replay. Topics are relative to the node's namespace.

    Attributes:
        node_kind: the node kind (``bringup_spec.NODE_KINDS`` key), e.g. ``"stereo_depth_node"``.
        inputs: input topic -> message type (``"sensor_msgs/msg/Image"``), in the node's synchroniser order.
        frame_topics: the inputs that make a frame: one message each with the same header stamp (e.g. the two
            images); a frame is complete once all of them are published.
        outputs: output topic -> message type; the replay subscribes to (and records) all of them, and a frame is
            out when every one has arrived with the frame's stamp.
        optional_outputs: topic prefix -> message type of outputs recorded when a started node publishes them
            (e.g. ``"disparity/stage_"``); not needed for a frame to be out.
        ground_truth: bag-only topic -> message type of ground truth (published too, for viewers).
        decoders: output or ground-truth topic -> ``(array name, decoder)``; the arrays the scorers get.
        scorers: names of :mod:`stereo_depth_ros.evaluation.scorers` to run.
        camera_info: (left, right) camera_info inputs giving the stereo camera model, or None.
        sheet_outputs: decoded outputs shown beside the first frame image in the contact sheet.
        mode: ``(parameter, value)`` when the spec holds only while the node's parameter has that value (a node
            kind with input modes, e.g. ``("input_mode", "nir-rgb-pair")``); None: in every mode. See
            :func:`frame_spec`.
    """

    node_kind: str
    inputs: dict[str, str]
    frame_topics: tuple[str, ...]
    outputs: dict[str, str]
    optional_outputs: dict[str, str] = field(default_factory=dict)
    ground_truth: dict[str, str] = field(default_factory=dict)
    decoders: dict[str, tuple[str, Decoder]] = field(default_factory=dict)
    scorers: tuple[str, ...] = ()
    camera_info: tuple[str, str] | None = None
    sheet_outputs: tuple[str, ...] = ()
    mode: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.frame_topics or any(t not in self.inputs for t in self.frame_topics):
            raise ValueError(f"frame spec {self.node_kind}: frame_topics {self.frame_topics} must be inputs "
                             f"({list(self.inputs)})")
        if not self.outputs:
            raise ValueError(f"frame spec {self.node_kind}: no outputs")
        if self.camera_info is not None and any(t not in self.inputs for t in self.camera_info):
            raise ValueError(f"frame spec {self.node_kind}: camera_info topics {self.camera_info} must be inputs")
        unknown = [t for t in self.decoders if t not in self.outputs and t not in self.ground_truth]
        if unknown:
            raise ValueError(f"frame spec {self.node_kind}: decoders for {unknown}, which are neither outputs nor "
                             f"ground truth")


def decode_disparity_image(msg, camera: StereoCameraModel | None) -> np.ndarray:
    """Image disparity ``x_l - x_r`` (px, NaN invalid) of a rosbags ``stereo_msgs/DisparityImage``.

    The message holds ``x_l - x_r - (cx_l - cx_r)`` (stereo_image_proc's convention); values below its
    ``min_disparity``, <= 0 or non-finite are invalid; the principal-point offset of ``camera`` is added back.
    """
    disparity = bag_io.image_to_array(msg.image).astype(np.float32)
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(disparity) | (disparity < msg.min_disparity) | (disparity <= 0)
    disparity[invalid] = np.nan
    if camera is not None and camera.principal_point_offset:
        disparity += np.float32(camera.principal_point_offset)
    return disparity


def decode_depth_image(msg, camera: StereoCameraModel | None) -> np.ndarray:
    """Depth in metres of a rosbags ``32FC1`` ``sensor_msgs/Image`` (NaN and +-inf kept: REP-117).

    Raises:
        ValueError: for another encoding (a depth must be metres in ``32FC1``).
    """
    if msg.encoding != "32FC1":
        raise ValueError(f"a depth image must have encoding 32FC1 (metres), got {msg.encoding!r}")
    return bag_io.image_to_array(msg).astype(np.float32)


STEREO_FRAME_SPEC = FrameSpec(
    node_kind="stereo_depth_node",
    inputs={"left/image_rect": IMAGE_TYPE, "right/image_rect": IMAGE_TYPE, "left/camera_info": CAMERA_INFO_TYPE,
            "right/camera_info": CAMERA_INFO_TYPE},
    frame_topics=("left/image_rect", "right/image_rect"),
    outputs={"disparity": DISPARITY_TYPE, "depth": IMAGE_TYPE, "points2": POINT_CLOUD_TYPE},
    optional_outputs={"disparity/stage_": DISPARITY_TYPE},
    ground_truth={"gt/depth": IMAGE_TYPE},
    decoders={"disparity": ("disparity", decode_disparity_image), "depth": ("depth", decode_depth_image),
              "gt/depth": ("depth", decode_depth_image)},
    scorers=("disparity-depth",),
    camera_info=("left/camera_info", "right/camera_info"),
    sheet_outputs=("disparity", "depth"),
)

FRAME_SPECS: dict[str, list[FrameSpec]] = {}
"""Registry: node kind -> its :class:`FrameSpec` (one per mode for a kind with input modes; the first registered is
the kind's default)."""


def register_frame_spec(spec: FrameSpec, replace: bool = False) -> None:
    """Register the frame spec of a node kind (of one of its modes, when ``spec.mode`` is set).

    Raises:
        ValueError: if the kind (in that mode) has one already (unless ``replace``), or if a kind would get a
            spec for every mode beside one for a single mode, or a mode of another parameter than the kind's
            other modes.
    """
    specs = FRAME_SPECS.setdefault(spec.node_kind, [])
    same = [index for index, known in enumerate(specs) if known.mode == spec.mode]
    if same and not replace:
        raise ValueError(f"node kind {spec.node_kind!r} already has a frame spec"
                         + (f" for {spec.mode[0]} {spec.mode[1]!r}" if spec.mode else ""))
    if same:
        specs[same[0]] = spec
        return
    if specs and (spec.mode is None or any(known.mode is None for known in specs)):
        raise ValueError(f"node kind {spec.node_kind!r}: a frame spec for every mode cannot stand beside specs for "
                         f"single modes")
    if specs and spec.mode[0] != specs[0].mode[0]:
        raise ValueError(f"node kind {spec.node_kind!r}: its frame specs' modes are chosen by parameter "
                         f"{specs[0].mode[0]!r}, not {spec.mode[0]!r}")
    specs.append(spec)


def _parameter_default(node_kind: str, name: str):
    """The declared default of a node kind's parameter (its class's ``PARAMETERS``), or None."""
    kind = bringup_spec.NODE_KINDS.get(node_kind)
    if kind is None:
        return None
    node_class = getattr(importlib.import_module(kind.module), kind.class_name)
    return next((p.default for p in getattr(node_class, "PARAMETERS", ()) if p.name == name), None)


def frame_spec(node_kind: str, parameters: Mapping | None = None) -> FrameSpec:
    """The frame spec of a node kind, for the mode its parameters select.

    Args:
        node_kind: a ``bringup_spec.NODE_KINDS`` key.
        parameters: the node's parameters (from its parameters file, with any overrides); a spec with a ``mode``
            ``(name, value)`` is chosen when ``parameters[name]`` (or, when absent, the node's declared default)
            equals ``value``. None: the kind's default spec (the first registered).

    Raises:
        ValueError: for a kind without a spec, listing the kinds that have one, or for parameters that select
            none of the kind's modes (naming the parameter and the modes with a spec).
    """
    if node_kind not in FRAME_SPECS:
        raise ValueError(f"node kind {node_kind!r} has no replay frame spec; kinds with one: "
                         f"{', '.join(sorted(FRAME_SPECS))}")
    specs = FRAME_SPECS[node_kind]
    if parameters is None or specs[0].mode is None:
        return specs[0]
    name = specs[0].mode[0]
    value = parameters.get(name, _parameter_default(node_kind, name))
    for spec in specs:
        if spec.mode == (name, value):
            return spec
    raise ValueError(f"node kind {node_kind!r} with {name} {value!r} has no replay frame spec; modes with one: "
                     f"{', '.join(spec.mode[1] for spec in specs)}")


register_frame_spec(STEREO_FRAME_SPEC)

#: The monocular depth node as bringup starts it in the stereo namespace (bringup_spec.MONO_DEFAULT_REMAPPINGS):
#: left image and camera_info in, mono/depth out, scored against the bag's GT depth. Replay it alone (a params file
#: naming only mono_depth_node) with a metric model or a ``depth_scale``: alignment needs the stereo node.
MONO_FRAME_SPEC = FrameSpec(
    node_kind="mono_depth_node",
    inputs={"left/image_rect": IMAGE_TYPE, "left/camera_info": CAMERA_INFO_TYPE},
    frame_topics=("left/image_rect",),
    outputs={"mono/depth": IMAGE_TYPE},
    ground_truth={"gt/depth": IMAGE_TYPE},
    decoders={"mono/depth": ("depth", decode_depth_image), "gt/depth": ("depth", decode_depth_image)},
    scorers=("mono-depth",),
    sheet_outputs=("mono/depth",),
)
register_frame_spec(MONO_FRAME_SPEC)


def decode_mask_image(msg, camera: StereoCameraModel | None) -> np.ndarray:
    """Class ids (H, W) uint8 of a rosbags ``mono8`` ``sensor_msgs/Image`` (a segmentation mask).

    Raises:
        ValueError: for another encoding.
    """
    if msg.encoding not in ("mono8", "8UC1"):
        raise ValueError(f"a mask image must have encoding mono8 (class ids), got {msg.encoding!r}")
    return bag_io.image_to_array(msg).astype(np.uint8)


#: The segmentation node as bringup starts it in the stereo namespace (it segments left/image_rect): mask out,
#: scored against the bag's gt/mask (mono8 class ids or 0/255) by the mask-iou scorer.
SEGMENTATION_FRAME_SPEC = FrameSpec(
    node_kind="segmentation_node",
    inputs={"left/image_rect": IMAGE_TYPE},
    frame_topics=("left/image_rect",),
    outputs={"mask": IMAGE_TYPE},
    ground_truth={"gt/mask": IMAGE_TYPE},
    decoders={"mask": ("mask", decode_mask_image), "gt/mask": ("mask", decode_mask_image)},
    scorers=("mask-iou",),
    sheet_outputs=("mask",),
)
register_frame_spec(SEGMENTATION_FRAME_SPEC)


def decode_colour_image(msg, camera: StereoCameraModel | None) -> np.ndarray:
    """(H, W, 3) uint8 BGR pixels of a rosbags colour ``sensor_msgs/Image`` (``bgr8``, ``rgb8``, ``bgra8``,
    ``rgba8``).

    Raises:
        ValueError: for another encoding (e.g. ``mono8``), naming it.
    """
    if msg.encoding not in ("bgr8", "rgb8", "bgra8", "rgba8"):
        raise ValueError(f"a colour image must have encoding bgr8, rgb8, bgra8 or rgba8, got {msg.encoding!r}")
    return bag_io.image_to_array(msg)


#: The super-resolution node (issue 12) on a super-resolution bag (``make-bag --super-resolution-scale S``): the
#: LR pair with its camera_info in, the SR pair out, scored by PSNR/SSIM per view against the bag's HR pair
#: (``gt/left/image_rect``, ``gt/right/image_rect``). A frame is out once the SR pair and its scaled camera_info
#: have arrived (all four are recorded).
SUPER_RESOLUTION_FRAME_SPEC = FrameSpec(
    node_kind="super_resolution_node",
    inputs={"left/image_rect": IMAGE_TYPE, "right/image_rect": IMAGE_TYPE, "left/camera_info": CAMERA_INFO_TYPE,
            "right/camera_info": CAMERA_INFO_TYPE},
    frame_topics=("left/image_rect", "right/image_rect"),
    outputs={"super_resolved/left/image_rect": IMAGE_TYPE, "super_resolved/right/image_rect": IMAGE_TYPE,
             "super_resolved/left/camera_info": CAMERA_INFO_TYPE,
             "super_resolved/right/camera_info": CAMERA_INFO_TYPE},
    ground_truth={"gt/left/image_rect": IMAGE_TYPE, "gt/right/image_rect": IMAGE_TYPE},
    decoders={"super_resolved/left/image_rect": ("left_image", decode_colour_image),
              "super_resolved/right/image_rect": ("right_image", decode_colour_image),
              "gt/left/image_rect": ("left_image", decode_colour_image),
              "gt/right/image_rect": ("right_image", decode_colour_image)},
    scorers=("super-resolution",),
    camera_info=("left/camera_info", "right/camera_info"),
    sheet_outputs=("super_resolved/left/image_rect",),
)
register_frame_spec(SUPER_RESOLUTION_FRAME_SPEC)


def decode_valid_mask(msg, camera: StereoCameraModel | None) -> np.ndarray:
    """(H, W) bool valid mask (True where the value is non-zero) of a rosbags ``mono8`` ``sensor_msgs/Image`` (0/255).

    Raises:
        ValueError: for another encoding.
    """
    if msg.encoding not in ("mono8", "8UC1"):
        raise ValueError(f"a valid mask must have encoding mono8 (0 invalid, 255 valid), got {msg.encoding!r}")
    return bag_io.image_to_array(msg) > 0


#: The cross-modal node (issue 14) in input_mode "nir", as bringup starts it in the stereo namespace (outputs under
#: cross_modal/, bringup_spec.CROSS_MODAL_DEFAULT_REMAPPINGS), on a NIR bag (``make-bag --nir-rgb DIR``,
#: :mod:`stereo_depth_ros.data.nir_bag`): the NIR image in, pseudo-RGB (rgb8) and monocular depth out, the
#: pseudo-RGB scored by the "cross-modal" scorer (masked PSNR, SSIM, angular error) against the bag's aligned real
#: RGB (``gt/image_rgb``) inside its valid mask (``gt/valid_mask``). A frame is out once both outputs arrived; the
#: depth is recorded and drawn, not scored (the bag has no depth reference). The "nir-rgb-pair" mode has its own
#: spec below.
CROSS_MODAL_FRAME_SPEC = FrameSpec(
    node_kind="cross_modal_node",
    inputs={"image_nir": IMAGE_TYPE},
    frame_topics=("image_nir",),
    outputs={"cross_modal/pseudo_rgb": IMAGE_TYPE, "cross_modal/depth": IMAGE_TYPE},
    ground_truth={"gt/image_rgb": IMAGE_TYPE, "gt/valid_mask": IMAGE_TYPE},
    decoders={"cross_modal/pseudo_rgb": ("pseudo_rgb_image", decode_colour_image),
              "cross_modal/depth": ("depth", decode_depth_image),
              "gt/image_rgb": ("reference_image", decode_colour_image),
              "gt/valid_mask": ("valid_mask", decode_valid_mask)},
    scorers=("cross-modal",),
    sheet_outputs=("cross_modal/pseudo_rgb", "cross_modal/depth"),
    mode=("input_mode", "nir"),
)
register_frame_spec(CROSS_MODAL_FRAME_SPEC)

#: The cross-modal node in input_mode "nir-rgb-pair" on a NIR/RGB stereo bag (``make-bag --nir-rgb DIR
#: --stereo-shift S``, :func:`stereo_depth_ros.data.nir_bag.make_nir_stereo_bag_from_folder`; or any stereo bag whose
#: left view is a NIR camera's mono8 image): the stereo node's inputs, its disparity and depth out under cross_modal/
#: (with the pseudo-RGB), scored by the "disparity-depth" scorer against the bag's gt/depth, as the stereo node's.
CROSS_MODAL_PAIR_FRAME_SPEC = FrameSpec(
    node_kind="cross_modal_node",
    inputs=dict(STEREO_FRAME_SPEC.inputs),
    frame_topics=STEREO_FRAME_SPEC.frame_topics,
    outputs={"cross_modal/disparity": DISPARITY_TYPE, "cross_modal/depth": IMAGE_TYPE,
             "cross_modal/pseudo_rgb": IMAGE_TYPE},
    ground_truth=dict(STEREO_FRAME_SPEC.ground_truth),
    decoders={"cross_modal/disparity": ("disparity", decode_disparity_image),
              "cross_modal/depth": ("depth", decode_depth_image),
              "cross_modal/pseudo_rgb": ("pseudo_rgb_image", decode_colour_image),
              "gt/depth": ("depth", decode_depth_image)},
    scorers=("disparity-depth",),
    camera_info=STEREO_FRAME_SPEC.camera_info,
    sheet_outputs=("cross_modal/pseudo_rgb", "cross_modal/disparity"),
    mode=("input_mode", "nir-rgb-pair"),
)
register_frame_spec(CROSS_MODAL_PAIR_FRAME_SPEC)


def _absolute(namespace: str, topic: str) -> str:
    return f"{namespace.rstrip('/')}/{topic}"


# ----------------------------------------------------------------------------------------------- the bag


@dataclass
class ReplayInput:
    """A checked bag for one frame spec (:func:`check_bag`).

    Attributes:
        path: bag folder.
        topics: topic -> (message type, count) of the whole bag.
        inputs: absolute topics the replay publishes (the spec's inputs and ground truth present) -> type.
        frames: stereo pairs (or frames) in the bag: header stamps of the first frame topic.
        width, height: size of the first frame image in pixels.
        camera: the stereo camera model of the first camera_info pair, or None.
        camera_problem: why there is no camera model (naming the field), or None.
        has_ground_truth: whether a ground-truth topic of the spec has messages.
    """

    path: Path
    topics: dict[str, tuple[str, int]]
    inputs: dict[str, str]
    frames: int
    width: int = 0
    height: int = 0
    camera: StereoCameraModel | None = None
    camera_problem: str | None = None
    has_ground_truth: bool = False
    start_ns: int = 0
    end_ns: int = 0

    @property
    def rate_hz(self) -> float:
        """Mean frame rate of the stamps (0 for fewer than two frames)."""
        if self.frames < 2 or self.end_ns <= self.start_ns:
            return 0.0
        return (self.frames - 1) * 1e9 / (self.end_ns - self.start_ns)


def check_bag(bag: str | Path, spec: FrameSpec, namespace: str = bringup_spec.DEFAULT_NAMESPACE) -> ReplayInput:
    """Check that a bag can drive a node of ``spec``: every input topic present with its type, not truncated,
    at least one frame; read the camera model from the first camera_info pair.

    Raises:
        FileNotFoundError: if the bag does not exist.
        ValueError: naming the bag, for missing input topics (listing those it has), a topic of the wrong type,
            a truncated or damaged bag, or no frame.
    """
    path = Path(bag)
    first_frame_topic = _absolute(namespace, spec.frame_topics[0])
    contents = bag_io.inspect_bag(path, stamp_topics=[first_frame_topic])
    expected = {_absolute(namespace, t): m for t, m in spec.inputs.items()}
    missing = [t for t in expected if t not in contents.topics]
    if missing:
        raise ValueError(f"bag {path} lacks the input topics {missing} of a {spec.node_kind}; it has "
                         f"{sorted(contents.topics) or 'no topics'}"
                         + (". Make a stereo bag with 'stereo-depth-ros make-bag'" if spec.camera_info else ""))
    ground_truth = {_absolute(namespace, t): m for t, m in spec.ground_truth.items()}
    for topic, msgtype in {**expected, **ground_truth}.items():
        if topic in contents.topics and contents.topics[topic][0] != msgtype:
            raise ValueError(f"bag {path}: topic {topic} has type {contents.topics[topic][0]}, expected {msgtype}")
    stamps = sorted(set(contents.stamps[first_frame_topic]))
    if not stamps:
        raise ValueError(f"bag {path} holds no message on {first_frame_topic}")
    inputs = {t: m for t, m in {**expected, **ground_truth}.items() if contents.topics.get(t, ("", 0))[1]}
    result = ReplayInput(path=path, topics=contents.topics, inputs=inputs, frames=len(stamps),
                         start_ns=stamps[0], end_ns=stamps[-1],
                         has_ground_truth=any(contents.topics.get(t, ("", 0))[1] for t in ground_truth))
    firsts: dict[str, object] = {}
    wanted = [first_frame_topic] + ([_absolute(namespace, t) for t in spec.camera_info] if spec.camera_info else [])
    for message in bag_io.iter_bag_messages(path, wanted):
        if message.topic not in firsts:
            firsts[message.topic] = bag_io.deserialize(message.raw, message.msgtype)
        if len(firsts) == len(wanted):
            break
    image = firsts.get(first_frame_topic)
    if image is not None and hasattr(image, "width"):
        result.width, result.height = int(image.width), int(image.height)
    if spec.camera_info:
        try:
            result.camera = StereoCameraModel.from_camera_info(*(firsts[_absolute(namespace, t)]
                                                                 for t in spec.camera_info))
        except (KeyError, ValueError) as error:
            result.camera_problem = str(error)
    return result


# ----------------------------------------------------------------------------------------------- receiving


@dataclass
class _Received:
    """Output arrivals, filled by subscription callbacks (executor threads), read by the replay loop."""

    topics: tuple[str, ...]
    condition: threading.Condition = field(default_factory=threading.Condition)
    arrivals: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_arrival_s: float = 0.0

    def add(self, topic: str, stamp_ns: int, when: float) -> None:
        with self.condition:
            self.arrivals[stamp_ns].setdefault(topic, when)
            self.counts[topic] += 1
            self.last_arrival_s = when
            self.condition.notify_all()

    def complete(self, stamp_ns: int) -> bool:
        return all(t in self.arrivals.get(stamp_ns, {}) for t in self.topics)

    def wait(self, stamp_ns: int, timeout_s: float, give_up=None) -> bool:
        """Wait until every output of ``stamp_ns`` arrived; False on time-out or when ``give_up()`` (polled
        every 50 ms) becomes true."""
        deadline = time.monotonic() + timeout_s
        with self.condition:
            while not self.complete(stamp_ns):
                left = deadline - time.monotonic()
                if left <= 0 or (give_up is not None and give_up()):
                    return False
                self.condition.wait(min(left, 0.05))
        return True


class _NodeProgress:
    """What the started nodes count (their ``counters`` and ``problems``, where they keep them): lets the
    lockstep replay stop waiting for a frame the node skipped instead of waiting for the time-out."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = [n for n in nodes if isinstance(getattr(n, "counters", None), Mapping)]
        self.all_nodes = nodes

    def skipped(self) -> int:
        return sum(int(n.counters.get(key, 0)) for n in self.nodes for key in SKIP_COUNTERS)

    def counters(self) -> dict:
        """Numeric counters of every node that keeps them, by node name."""
        return {n.get_fully_qualified_name(): {str(k): int(v) for k, v in n.counters.items()
                                                if isinstance(v, (int, np.integer))} for n in self.nodes}

    def problems(self) -> dict:
        """Problems the nodes counted, by kind, and the last message."""
        counts: dict[str, int] = defaultdict(int)
        last = None
        for node in self.all_nodes:
            for kind, count in dict(getattr(node, "problems", {}) or {}).items():
                counts[kind] += count
            last = getattr(node, "last_problem", None) or last
        return {"counts": dict(counts), "last": last}


def _message_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(0.01)


def _node_publisher(nodes: list[Node], topic: str):
    for node in nodes:
        for publisher in node.publishers:
            if publisher.topic_name == topic:
                return publisher
    return None


def parse_overrides(items: list[str] | None) -> dict:
    """``["method=sgbm", "max_depth=0.3"]`` -> ``{"method": "sgbm", "max_depth": 0.3}`` (values parsed as YAML
    scalars, as ``ros2 param set`` does).

    Raises:
        ValueError: for an item without ``=`` or with an empty name.
    """
    import yaml

    overrides = {}
    for item in items or []:
        name, separator, text = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"parameter override {item!r} must look like NAME=VALUE")
        value = yaml.safe_load(text) if text.strip() else ""
        overrides[name.strip()] = value
    return overrides


def check_pace(pace: str, rate: float | None) -> None:
    """Check a pacing and speed factor.

    Raises:
        ValueError: for a pace not in :data:`PACES`, a negative or non-finite rate, or rate 0 with ``bag``.
    """
    if pace not in PACES:
        raise ValueError(f"pace must be one of {', '.join(PACES)}, got {pace!r}")
    if rate is not None and (not math.isfinite(rate) or rate < 0):
        raise ValueError(f"rate must be a positive speed factor (or 0 for as fast as possible), got {rate}")
    if pace == "bag" and rate == 0:
        raise ValueError("--pace bag publishes at the bag's rate times --rate, which must be positive; 'as fast "
                         "as the node keeps up' is --pace lockstep")


# ----------------------------------------------------------------------------------------------- replay


def replay_bag(bag: str | Path, out_dir: str | Path, params_file: str | Path | None = None,
               pace: str = "lockstep", rate: float | None = None, overrides: dict | None = None,
               frame_timeout_s: float = 60.0, first_frame_timeout_s: float = 300.0, overwrite: bool = False,
               progress: bool = True, context: Context | None = None) -> dict:
    """Replay a bag through the nodes of a parameters file and write the report (see the module doc).

    Args:
        bag: bag folder with the input topics of the started node kind (``stereo-depth-ros make-bag``).
        out_dir: output folder; gets ``outputs/`` (bag), ``report.json``, ``report.md``, ``contact_sheet.png``.
        params_file: ROS 2 parameters YAML (None: the package's ``config/endoscope.yaml``).
        pace: ``"lockstep"`` (wait for each frame's outputs) or ``"bag"`` (the bag's rate times ``rate``, never
            waiting).
        rate: speed factor relative to the bag's stamps (2 = twice as fast); lockstep: None or 0 = as fast as
            the node keeps up; bag: None = 1.
        overrides: node parameters that win over the file, e.g. ``{"method": "sgbm"}``.
        frame_timeout_s: longest wait for one frame's outputs (lockstep), or for the last outputs after the last
            frame (bag), before counting frames dropped.
        first_frame_timeout_s: the same for the first frame (the network may prepare itself on it).
        overwrite: replace the outputs of an earlier replay in ``out_dir``.
        progress: show a tqdm progress bar.
        context: rclpy context to use (None: a new one, shut down at the end).

    Returns:
        the report (the content of ``report.json``).

    Raises:
        FileNotFoundError: if the bag or the parameters file does not exist.
        ValueError: for a bad pace or rate, a bag without the node's input topics, a truncated bag, bad
            parameters, a parameters file starting node kinds without (or with several) frame specs, or
            existing outputs without ``overwrite``.
        RuntimeError: if the nodes never subscribe to the inputs or never advertise their outputs.
    """
    check_pace(pace, rate)
    namespace = bringup_spec.DEFAULT_NAMESPACE
    plans = bringup_spec.plan_nodes(params_file, namespace=namespace)
    kinds = sorted({plan.kind.name for plan in plans})
    with_spec = [k for k in kinds if k in FRAME_SPECS]
    if len(with_spec) != 1:
        raise ValueError(f"the parameters file {plans[0].params_file} starts the node kinds {kinds}; the replay "
                         f"drives exactly one kind with a frame spec ({', '.join(sorted(FRAME_SPECS))})")
    plan = next(plan for plan in plans if plan.kind.name == with_spec[0])
    spec = frame_spec(with_spec[0], {**bringup_spec.file_parameters(plan), **dict(plan.parameter_overrides),
                                     **(overrides or {})})
    replay_input = check_bag(bag, spec, namespace)
    out_dir = Path(out_dir)
    if (out_dir / "outputs").exists() and not overwrite:
        raise ValueError(f"{out_dir / 'outputs'} already exists (an earlier replay); choose another --out or "
                         f"overwrite")

    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(context=context)
    bringup: Bringup | None = None
    try:
        tick = time.perf_counter()
        bringup = start_nodes(params_file, namespace=namespace, context=context, overrides=overrides)
        startup_s = time.perf_counter() - tick
        node_parameters = {node.get_fully_qualified_name(): {name: p.value for name, p in
                                                             node.get_parameters_by_prefix("").items()}
                           for node in bringup.nodes}
        report = replay_through_nodes(replay_input, out_dir, bringup.nodes, bringup.executor, spec, namespace,
                                      pace=pace, rate=rate, frame_timeout_s=frame_timeout_s,
                                      first_frame_timeout_s=first_frame_timeout_s, overwrite=overwrite,
                                      progress=progress)
    finally:
        if bringup is not None:
            bringup.shutdown()
        if own_context and context.ok():
            rclpy.shutdown(context=context)
    report.update({"startup_s": round(startup_s, 3), "params_file": str(bringup.plans[0].params_file),
                   "nodes": node_parameters})
    return replay_report.write_report(report, replay_input, spec, namespace, out_dir)


def replay_through_nodes(replay_input: ReplayInput, out_dir: str | Path, nodes: list[Node], executor,
                         spec: FrameSpec, namespace: str = bringup_spec.DEFAULT_NAMESPACE, pace: str = "lockstep",
                         rate: float | None = None, frame_timeout_s: float = 60.0,
                         first_frame_timeout_s: float = 300.0, overwrite: bool = False,
                         progress: bool = True) -> dict:
    """Drive already running nodes with a checked bag: subscribe to and record their outputs, wait for the graph,
    publish the bag with the pacing, and return the timing part of the report (no scoring, no files besides
    ``out_dir/outputs``). :func:`replay_bag` calls this with the nodes it starts; tests call it with their own.

    Args:
        replay_input: the bag, checked for ``spec`` (:func:`check_bag`).
        out_dir: output folder (``outputs/`` is created in it).
        nodes: the running nodes (spun by ``executor``); the replay node is added to ``executor`` and removed.
        executor: the executor spinning ``nodes``.
        spec, namespace, pace, rate, frame_timeout_s, first_frame_timeout_s, overwrite, progress: see
            :func:`replay_bag`.

    Returns:
        the timing report: ``pace``, ``rate``, ``frames_in``, ``frames_out``, ``dropped_frames``,
        ``latency_ms``, ``throughput_fps``, ... (see docs/bags_and_replay.md).

    Raises:
        ValueError: for a bad pace or rate, or existing outputs without ``overwrite``.
        RuntimeError: if no node publishes an output of the spec, or the graph never matches.
    """
    check_pace(pace, rate)
    out_dir = Path(out_dir)
    outputs_path = out_dir / "outputs"
    if outputs_path.exists() and not overwrite:
        raise ValueError(f"{outputs_path} already exists (an earlier replay); choose another --out or overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    output_topics = {_absolute(namespace, t): m for t, m in spec.outputs.items()}
    for node in nodes:
        for publisher in node.publishers:
            for prefix, msgtype in spec.optional_outputs.items():
                if publisher.topic_name.startswith(_absolute(namespace, prefix)):
                    output_topics[publisher.topic_name] = msgtype
    for topic in output_topics:
        if _node_publisher(nodes, topic) is None:
            raise RuntimeError(f"no started node publishes {topic} (outputs of a {spec.node_kind}: "
                               f"{', '.join(spec.outputs)})")
    required = tuple(_absolute(namespace, t) for t in spec.outputs)
    replay_node = Node("bag_replay", context=nodes[0].context)
    executor.add_node(replay_node)
    recorder = bag_io.RawBagRecorder(outputs_path, output_topics, overwrite=overwrite)
    try:
        received = _Received(topics=required)

        def make_callback(topic: str):
            def callback(raw: bytes) -> None:
                when = time.perf_counter()
                stamp = bag_io.header_stamp_from_cdr(raw)
                recorder.write(topic, stamp, raw)
                received.add(topic, stamp, when)
            return callback

        # Outputs first: a lazy node subscribes to its inputs only once an output has a subscriber.
        for topic, msgtype in output_topics.items():
            publisher = _node_publisher(nodes, topic)
            # reliable, unless the node publishes best effort (output_qos sensor_data), which a reliable
            # subscription would not match
            qos = OUTPUT_QOS if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE \
                else OUTPUT_QOS_BEST_EFFORT
            replay_node.create_subscription(_message_class(msgtype), topic, make_callback(topic), qos, raw=True)
        publishers = {t: replay_node.create_publisher(_message_class(m), t, INPUT_QOS)
                      for t, m in replay_input.inputs.items()}
        node_inputs = [_absolute(namespace, t) for t in spec.inputs]
        _wait_for_graph(nodes, publishers, output_topics, node_inputs, namespace)
        progress_of_nodes = _NodeProgress(nodes)
        report = _publish(replay_input, spec, namespace, publishers, received, pace, rate, frame_timeout_s,
                          first_frame_timeout_s, progress, progress_of_nodes)
        report["node_problems"] = progress_of_nodes.problems()
        report["node_counters"] = progress_of_nodes.counters()
    finally:
        recorder.close()
        executor.remove_node(replay_node)
        replay_node.destroy_node()
    report.update({"node_kind": spec.node_kind, "bag": str(replay_input.path), "outputs_bag": str(outputs_path),
                   "namespace": namespace, "output_topics": sorted(output_topics),
                   "image_size": [replay_input.width, replay_input.height]})
    return report


def _wait_for_graph(nodes: list[Node], publishers: dict, output_topics: dict, node_inputs: list[str],
                    namespace: str) -> None:
    """Wait until every output publisher has matched our recording subscription, then until the nodes
    subscribe to every input we publish (reliably, for nodes that adapt their QoS)."""
    for topic in output_topics:
        publisher = _node_publisher(nodes, topic)
        _wait_until(lambda p=publisher: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                    f"the recorder's subscription to {topic} matches the node's publisher")
    inputs = [t for t in node_inputs if t in publishers]
    for topic in inputs:
        _wait_until(lambda p=publishers[topic]: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                    f"a node subscribes to {topic} (are the bag's topics the ones the nodes subscribe to?)")
    # A node with input_qos 'auto' first subscribes best effort and switches to reliable once it sees our
    # reliable publishers; waiting for the switch avoids losing the first frames during it.
    prefix = namespace.rstrip("/") + "/"
    for node in nodes:
        reliability = getattr(node, "input_reliability", None)
        if reliability is None or not node.has_parameter("input_qos") \
                or node.get_parameter("input_qos").value != "auto":
            continue
        relative = {t: t[len(prefix):] if t.startswith(prefix) else t for t in inputs}
        try:
            _wait_until(lambda: all(reliability(relative[t]) == ReliabilityPolicy.RELIABLE for t in inputs),
                        RELIABLE_INPUT_TIMEOUT_S, "the node's input subscriptions are reliable")
        except (RuntimeError, KeyError):
            pass  # best effort still receives
        for topic in inputs:
            _wait_until(lambda p=publishers[topic]: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                        f"a node subscribes to {topic}")


def _publish(replay_input: ReplayInput, spec: FrameSpec, namespace: str, publishers: dict, received: _Received,
             pace: str, rate: float | None, frame_timeout_s: float, first_frame_timeout_s: float, progress: bool,
             nodes: _NodeProgress) -> dict:
    """Publish the bag in log-time order. A frame is one message of each frame topic with one stamp; once all
    are out, the frame is outstanding. Lockstep: before the next frame message of another stamp is published,
    the loop waits (bounded) for the outstanding frame's outputs (waiting only then lets the messages that follow
    the frame in the bag, e.g. camera_info recorded a little later, go out first). Bag: never waits; after the
    last frame, waits for the outputs still on their way."""
    classes = {t: _message_class(m) for t, m in replay_input.inputs.items()}
    frame_topics = {_absolute(namespace, t) for t in spec.frame_topics}
    speed = rate if rate else (1.0 if pace == "bag" else None)
    published = defaultdict(int)
    pending: dict[int, set[str]] = defaultdict(set)
    frames: list[dict] = []
    outstanding: dict | None = None
    anchor_wall = anchor_log = None
    bar = tqdm(total=replay_input.frames, desc=f"replay ({pace})", unit="frame", disable=not progress)

    def finish(frame: dict) -> None:
        timeout = first_frame_timeout_s if not received.arrivals else frame_timeout_s
        skipped_before = frame.pop("skipped_before")
        received.wait(frame["stamp_ns"], timeout, give_up=lambda: nodes.skipped() > skipped_before)
        frames.append(frame)
        bar.update()

    start = time.perf_counter()
    try:
        for message in bag_io.iter_bag_messages(replay_input.path, list(replay_input.inputs)):
            if speed:
                now = time.perf_counter()
                if anchor_wall is None:
                    anchor_wall, anchor_log = now, message.log_time_ns
                target = anchor_wall + (message.log_time_ns - anchor_log) / 1e9 / speed
                if target > now:
                    time.sleep(target - now)
                elif now - target > LATE_RESYNC_S:  # we fell behind: keep the spacing from here on, no burst
                    anchor_wall, anchor_log = now, message.log_time_ns
            msg = deserialize_message(message.raw, classes[message.topic])
            in_frame = message.topic in frame_topics
            stamp = bag_io.stamp_to_ns(msg.header.stamp) if in_frame else None
            if in_frame and outstanding is not None and stamp != outstanding["stamp_ns"]:
                if pace == "lockstep":
                    finish(outstanding)
                else:
                    frames.append(outstanding)
                    bar.update()
                outstanding = None
            publishers[message.topic].publish(msg)
            published[message.topic] += 1
            if not in_frame:
                continue
            pending[stamp].add(message.topic)
            if len(pending[stamp]) == len(frame_topics):
                del pending[stamp]
                outstanding = {"stamp_ns": stamp, "published_s": time.perf_counter(),
                               "skipped_before": nodes.skipped()}
        if outstanding is not None:
            if pace == "lockstep":
                finish(outstanding)
            else:
                frames.append(outstanding)
                bar.update()
    finally:
        bar.close()
    publish_end = time.perf_counter()
    if pace == "bag":
        _drain(frames, received, frame_timeout_s if received.arrivals else first_frame_timeout_s, nodes)
    # Outputs that arrive late (after a time-out) are still recorded; give them a moment.
    deadline = time.monotonic() + min(frame_timeout_s, 5.0 if pace == "lockstep" else 0.0)
    while time.monotonic() < deadline and not all(received.complete(f["stamp_ns"]) for f in frames):
        time.sleep(0.05)
    wall_s = time.perf_counter() - start
    report = _timing_report(frames, received, published, pending, wall_s)
    report.update({"pace": pace, "rate": rate, "publish_time_s": round(publish_end - start, 3),
                   "bag_rate_hz": round(replay_input.rate_hz, 3)})
    return report


def _drain(frames: list[dict], received: _Received, timeout_s: float, nodes: _NodeProgress) -> None:
    """After live (bag-paced) publishing: wait until every frame is out, or the last frame is out (or skipped)
    and nothing arrived for :data:`SETTLE_S`, or ``timeout_s`` passed."""
    if not frames:
        return
    last = frames[-1]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(received.complete(f["stamp_ns"]) for f in frames):
            return
        last_done = received.complete(last["stamp_ns"]) or nodes.skipped() > last["skipped_before"]
        if last_done and time.perf_counter() - received.last_arrival_s > SETTLE_S:
            return
        time.sleep(0.05)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None, "mean": None}
    array = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p95": round(float(np.percentile(array, 95)), 2),
            "max": round(float(array.max()), 2), "mean": round(float(array.mean()), 2)}


def _timing_report(frames: list[dict], received: _Received, published: dict, pending: dict,
                   wall_s: float) -> dict:
    for frame in frames:
        frame.pop("skipped_before", None)
        arrivals = dict(received.arrivals.get(frame["stamp_ns"], {}))
        frame["latency_ms"] = {t: 1000.0 * (w - frame["published_s"]) for t, w in arrivals.items()}
        frame["complete"] = received.complete(frame["stamp_ns"])
    complete = [f for f in frames if f["complete"]]
    frame_latency = [max(f["latency_ms"][t] for t in received.topics) for f in complete]
    by_topic = {t: _percentiles([f["latency_ms"][t] for f in frames if t in f["latency_ms"]])
                for t in received.topics}
    throughput = 0.0
    if complete:
        first = frames[0]["published_s"]
        last = max(f["published_s"] + max(f["latency_ms"].values()) / 1000.0 for f in complete)
        throughput = len(complete) / max(last - first, 1e-9)
    input_stamps = {f["stamp_ns"] for f in frames}
    output_stamps = set(received.arrivals)
    return {
        "frames_in": len(frames),
        "frames_out": len(complete),
        "dropped_frames": len(frames) - len(complete),
        "unpaired_images": sum(len(v) for v in pending.values()),
        "messages_in": dict(published),
        "messages_out": {t: received.counts.get(t, 0) for t in sorted(set(received.topics) | set(received.counts))},
        "stamps_preserved": output_stamps <= input_stamps,
        "unknown_output_stamps": len(output_stamps - input_stamps),
        "latency_ms": _percentiles(frame_latency),
        "latency_ms_by_topic": by_topic,
        "throughput_fps": round(throughput, 3),
        "wall_time_s": round(wall_s, 3),
        "per_frame": [{"stamp_ns": f["stamp_ns"], "complete": f["complete"],
                       "latency_ms": round(max(f["latency_ms"][t] for t in received.topics), 2)
                       if f["complete"] else None} for f in frames],
    }
