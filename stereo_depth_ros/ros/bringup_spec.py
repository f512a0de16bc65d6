"""What the launch file and ``stereo_depth_bringup`` start: one description both consume (no rclpy, no launch).

``launch/endoscope.launch.py`` and :mod:`stereo_depth_ros.ros.bringup` both call :func:`plan_nodes`, so they
start the same nodes, with the same names, namespace, parameters file and topic remappings:

- Which nodes: every node the parameters file names (a key ``/**/stereo_depth_node``, ``/stereo/stereo_depth_node``
  or the nested ``stereo: stereo_depth_node:`` form, each holding ``ros__parameters``). Keys whose node part is a
  wildcard (``/**``) only give parameters. A file that names no node starts :data:`DEFAULT_NODES`.
- Namespace: ``/stereo`` by default, so the node's relative topics resolve to ``/stereo/left/image_rect``,
  ``/stereo/disparity`` and so on (the topics ``stereo-depth-ros make-bag`` writes).
- Parameters: the whole file is handed to the node as a ROS 2 parameters file (``--params-file``, what launch_ros
  does with a file path), so rcl applies its usual matching; then explicit overrides (``use_sim_time``).
- Remappings: each node kind names the launch arguments that remap its own inputs (:attr:`NodeKind.remaps`; the
  stereo node: ``left_image``, ``right_image``, ``left_camera_info``, ``right_camera_info``; default: the relative
  names, i.e. no remapping). A node gets only its own kind's remaps.

- Optional nodes: a launch argument (bringup option) of :data:`OPTIONAL_NODES` adds a node with its own
  parameters file unless the file names it already: ``cross_modal:=true`` (``config/nir_rgb.yaml``) beside the
  stereo node, ``super_resolution:=true`` (``config/super_resolution.yaml``) *in front of* it: the stereo node then
  reads the super-resolved pair, and the stereo node's camera remap arguments (``left_image``, ...) name the
  super-resolution node's inputs instead (the camera now feeds the chain's head).

A key naming a node without namespace (``stereo_depth_node:``) only matches a node in the root namespace, which
rcl would silently ignore for a node in ``/stereo``; :func:`plan_nodes` refuses it with a message saying how to
write it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from stereo_depth_ros.resources import PACKAGE, package_root, share_file  # noqa: F401 (re-exported)
from stereo_depth_ros.yaml_files import read_yaml

DEFAULT_NAMESPACE = "/stereo"
DEFAULT_PARAMS_FILE_NAME = "endoscope.yaml"
RVIZ_CONFIG_NAME = "endoscope.rviz"


@dataclass(frozen=True)
class RemapArgument:
    """A launch argument (and bringup option) that remaps one input topic of a node kind.

    Attributes:
        argument: launch argument name, e.g. ``left_image``.
        topic: the node's relative topic name, e.g. ``left/image_rect``; the default target (no remapping).
        description: what the argument is, for ``ros2 launch --show-args``.
    """

    argument: str
    topic: str
    description: str


@dataclass(frozen=True)
class NodeKind:
    """A node this package can start: its executable (console script), its Python class and the launch arguments
    that remap its inputs.

    Attributes:
        name: node name as written in a parameters file.
        executable: console script (``setup.py`` entry point).
        module, class_name: where the node class lives.
        remaps: one :class:`RemapArgument` per input topic of the node (its ``INPUT_TOPICS``).
    """

    name: str
    executable: str
    module: str
    class_name: str
    remaps: tuple[RemapArgument, ...] = ()
    #: ``(relative topic, target)`` remappings applied after the remap arguments' (an argument for the same
    #: topic wins): how the kind's generic topic names fit the bringup namespace beside the other nodes.
    default_remappings: tuple[tuple[str, str], ...] = ()


#: The stereo node's inputs.
STEREO_REMAPS = (
    RemapArgument("left_image", "left/image_rect",
                  "Rectified left image topic (sensor_msgs/Image); relative names resolve in the namespace"),
    RemapArgument("right_image", "right/image_rect", "Rectified right image topic (sensor_msgs/Image)"),
    RemapArgument("left_camera_info", "left/camera_info", "Left camera_info topic (sensor_msgs/CameraInfo)"),
    RemapArgument("right_camera_info", "right/camera_info",
                  "Right camera_info topic (sensor_msgs/CameraInfo, P[3] = -fx * baseline)"),
)

#: The monocular depth node's synchronised inputs (its generic names ``image``, ``camera_info``).
MONO_REMAPS = (
    RemapArgument("mono_image", "image", "Image topic of the monocular depth node (sensor_msgs/Image); default in "
                                         "bringup: the stereo pair's left/image_rect"),
    RemapArgument("mono_camera_info", "camera_info", "camera_info of that image (sensor_msgs/CameraInfo); default "
                                                     "in bringup: left/camera_info"),
)
#: In the stereo namespace the monocular node reads the left view and the stereo node's depth and publishes under
#: mono/ (so its depth does not collide with the stereo node's); depth_filled stays beside the stereo outputs. Its
#: unsynchronised input ``stereo_depth`` (the depth it aligns to and fuses with) reads the stereo node's ``depth``.
MONO_DEFAULT_REMAPPINGS = (("image", "left/image_rect"), ("camera_info", "left/camera_info"),
                           ("stereo_depth", "depth"), ("depth", "mono/depth"), ("points2", "mono/points2"))

#: The segmentation node's input (its generic name ``image``); in bringup it segments the left view, so that its
#: mask lines up with the stereo node's organised cloud (mask_fusion_node).
SEGMENTATION_REMAPS = (
    RemapArgument("segmentation_image", "image", "Image topic of the segmentation node (sensor_msgs/Image); default "
                                                 "in bringup: the stereo pair's left/image_rect"),
)
SEGMENTATION_DEFAULT_REMAPPINGS = (("image", "left/image_rect"),)
#: The fusion node's inputs: the stereo node's points2 and the segmentation node's mask (same namespace).
FUSION_REMAPS = (
    RemapArgument("fusion_points", "points2", "Organised point cloud of the left view (sensor_msgs/PointCloud2) "
                                              "that mask_fusion_node splits"),
    RemapArgument("fusion_mask", "mask", "Instrument mask of the left view (mono8 class ids) for mask_fusion_node"),
)

#: The super-resolution node's inputs (issue 12): the low-resolution rectified pair. Its outputs are
#: super_resolved/{left,right}/{image_rect,camera_info}; the stereo node runs on them when its own remap arguments
#: point there (left_image:=super_resolved/left/image_rect, ..., docs/ros_interface.md).
SR_REMAPS = (
    RemapArgument("sr_left_image", "left/image_rect", "Low-resolution rectified left image of super_resolution_node"),
    RemapArgument("sr_right_image", "right/image_rect", "Low-resolution rectified right image of "
                                                        "super_resolution_node"),
    RemapArgument("sr_left_camera_info", "left/camera_info", "camera_info of the low-resolution left image"),
    RemapArgument("sr_right_camera_info", "right/camera_info", "camera_info of the low-resolution right image"),
)

#: The cross-modal node's inputs (issue 14), in its INPUT_TOPICS order: ``image_nir`` (+ ``camera_info``) in
#: input_mode "nir", the NIR (left) + RGB (right) pair with camera_info in "nir-rgb-pair".
CROSS_MODAL_REMAPS = (
    RemapArgument("nir_image", "image_nir", "NIR image (mono8 or mono16) of cross_modal_node in input_mode nir"),
    RemapArgument("nir_camera_info", "camera_info", "camera_info of that NIR image (cross_modal_node, input_mode "
                                                    "nir, with_camera_info true)"),
    RemapArgument("nir_left_image", "left/image_rect", "Rectified NIR image, the left view of cross_modal_node's "
                                                       "NIR/RGB pair (input_mode nir-rgb-pair)"),
    RemapArgument("rgb_right_image", "right/image_rect", "Rectified RGB image (rgb8/bgr8), the right view of "
                                                         "cross_modal_node's NIR/RGB pair"),
    RemapArgument("nir_left_camera_info", "left/camera_info", "camera_info of the NIR (left) camera of the pair"),
    RemapArgument("rgb_right_camera_info", "right/camera_info", "camera_info of the RGB (right) camera of the pair "
                                                               "(P[3] = -fx * baseline)"),
)
#: In the stereo namespace the cross-modal node publishes under cross_modal/, beside a stereo node's outputs.
CROSS_MODAL_DEFAULT_REMAPPINGS = tuple((topic, f"cross_modal/{topic}") for topic in (
    "pseudo_rgb", "depth", "disparity", "disparity/image", "disparity/confidence", "points2"))

#: Node name (as written in a parameters file) -> how to start it.
NODE_KINDS: dict[str, NodeKind] = {
    "stereo_depth_node": NodeKind("stereo_depth_node", "stereo_depth_node", "stereo_depth_ros.ros.stereo_node",
                                  "StereoDepthNode", STEREO_REMAPS),
    "mono_depth_node": NodeKind("mono_depth_node", "mono_depth_node", "stereo_depth_ros.ros.mono_node",
                                "MonoDepthNode", MONO_REMAPS, MONO_DEFAULT_REMAPPINGS),
    "segmentation_node": NodeKind("segmentation_node", "segmentation_node", "stereo_depth_ros.ros.segmentation_node",
                                  "SegmentationNode", SEGMENTATION_REMAPS, SEGMENTATION_DEFAULT_REMAPPINGS),
    "mask_fusion_node": NodeKind("mask_fusion_node", "mask_fusion_node", "stereo_depth_ros.ros.segmentation_node",
                                 "MaskFusionNode", FUSION_REMAPS),
    "super_resolution_node": NodeKind("super_resolution_node", "super_resolution_node",
                                      "stereo_depth_ros.ros.sr_node", "SuperResolutionNode", SR_REMAPS),
    "cross_modal_node": NodeKind("cross_modal_node", "cross_modal_node", "stereo_depth_ros.ros.cross_modal_node",
                                 "CrossModalNode", CROSS_MODAL_REMAPS, CROSS_MODAL_DEFAULT_REMAPPINGS),
}
DEFAULT_NODES = ("stereo_depth_node",)

#: The super-resolution node's outputs that take the place of the stereo node's inputs in the chain.
SR_OUTPUT_PREFIX = "super_resolved/"


@dataclass(frozen=True)
class OptionalNode:
    """A node that a boolean launch argument (and ``stereo_depth_bringup`` option) adds to the planned graph.

    Attributes:
        argument: launch argument name, e.g. ``super_resolution`` (bringup: ``--super-resolution``); default false.
        node: the node name it adds (a key of :data:`NODE_KINDS`), unless the parameters file names it already.
        params_file_name: the node's parameters file in the package's ``config/`` (used when it is added).
        description: what the argument does, for ``ros2 launch --show-args`` and ``--help``.
        feeds: the node kind this node runs in front of (None: it runs beside the others). The fed node's inputs
            are remapped to :attr:`feed_remappings`, and its camera remap arguments are handed to this node's
            input of the same topic (where this node's own argument is not given).
        feed_remappings: ``(fed node's relative input, this node's relative output)`` pairs.
    """

    argument: str
    node: str
    params_file_name: str
    description: str
    feeds: str | None = None
    feed_remappings: tuple[tuple[str, str], ...] = ()


#: Launch argument -> the node it adds. ``super_resolution`` chains super_resolution_node in front of the stereo
#: node (issue 12): the low-resolution camera pair -> super_resolved/... -> stereo_depth_node.
OPTIONAL_NODES: dict[str, OptionalNode] = {
    "cross_modal": OptionalNode(
        "cross_modal", "cross_modal_node", "nir_rgb.yaml",
        "Also start cross_modal_node (NIR-to-RGB pseudo-RGB and depth, docs/ros_interface.md) with "
        "config/nir_rgb.yaml, unless params_file names it already"),
    "super_resolution": OptionalNode(
        "super_resolution", "super_resolution_node", "super_resolution.yaml",
        "Start super_resolution_node (config/super_resolution.yaml, unless params_file names it) in front of "
        "stereo_depth_node: the stereo node reads super_resolved/{left,right}/{image_rect,camera_info}, and "
        "left_image, right_image, left_camera_info, right_camera_info name the camera pair the chain reads",
        feeds="stereo_depth_node",
        feed_remappings=tuple((topic, SR_OUTPUT_PREFIX + topic) for topic in (
            "left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info"))),
}


def remap_arguments(kinds: dict[str, NodeKind] | None = None) -> tuple[RemapArgument, ...]:
    """Every remap argument of the node kinds (first occurrence of each argument name, in kind order): what the
    launch file declares and ``stereo_depth_bringup`` offers as options.

    Raises:
        ValueError: when two kinds use one argument name for different topics (the default would be ambiguous).
    """
    arguments: dict[str, RemapArgument] = {}
    for kind in (kinds or NODE_KINDS).values():
        for remap in kind.remaps:
            known = arguments.setdefault(remap.argument, remap)
            if known.topic != remap.topic:
                raise ValueError(f"remap argument {remap.argument!r} names topic {known.topic!r} in one node kind "
                                 f"and {remap.topic!r} in {kind.name}")
    return tuple(arguments.values())


#: Every node kind's remap arguments.
REMAP_ARGUMENTS = remap_arguments()

#: Launch arguments besides the remaps: name -> (default, description). The params_file default is resolved at
#: run time by :func:`default_params_file` (an empty value means "the package's config/endoscope.yaml").
LAUNCH_ARGUMENTS = {
    "namespace": (DEFAULT_NAMESPACE, "Namespace of the stereo nodes; their topics are <namespace>/left/image_rect, "
                                     "<namespace>/disparity, ..."),
    "params_file": ("", "ROS 2 parameters YAML for the nodes; empty = the package's config/endoscope.yaml. Every "
                        "node it names is started"),
    "use_sim_time": ("false", "Use the /clock topic (true when playing a bag with 'ros2 bag play --clock')"),
    "rviz": ("true", "Start RViz with rviz/endoscope.rviz"),
}


@dataclass(frozen=True)
class NodePlan:
    """One node to start, as both the launch file and bringup start it.

    Attributes:
        name: node name.
        kind: executable and class.
        namespace: absolute namespace, e.g. ``/stereo``.
        params_file: parameters YAML handed to the node as ``--params-file``.
        parameter_overrides: parameters that win over the file (e.g. ``use_sim_time``).
        remappings: ``(from, to)`` topic remappings (only the ones that change a name).
    """

    name: str
    kind: NodeKind
    namespace: str
    params_file: Path
    parameter_overrides: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    @property
    def fully_qualified_name(self) -> str:
        """``/namespace/name``."""
        return f"{self.namespace.rstrip('/')}/{self.name}"

    def ros_arguments(self) -> list[str]:
        """The ``--ros-args`` command-line arguments giving the params file and remappings (for ``cli_args``)."""
        arguments = ["--ros-args", "--params-file", str(self.params_file)]
        for source, target in self.remappings:
            arguments += ["-r", f"{source}:={target}"]
        return arguments


def default_params_file() -> Path:
    """The package's ``config/endoscope.yaml`` (see :func:`share_file`)."""
    return share_file("config", DEFAULT_PARAMS_FILE_NAME)


def rviz_config_file() -> Path:
    """The package's ``rviz/endoscope.rviz`` (see :func:`share_file`)."""
    return share_file("rviz", RVIZ_CONFIG_NAME)


def normalize_namespace(namespace: str) -> str:
    """``stereo`` -> ``/stereo``; ``""`` or ``/`` -> ``/``.

    Raises:
        ValueError: for characters ROS does not allow in a namespace.
    """
    namespace = "/" + namespace.strip().strip("/")
    if namespace != "/" and not re.fullmatch(r"(/[A-Za-z_][A-Za-z0-9_]*)+", namespace):
        raise ValueError(f"invalid namespace {namespace!r}: use /-separated names of letters, digits and _")
    return namespace


def _key_regex(key: str) -> re.Pattern:
    # rcl's parameter-file node keys: "**" matches any number of /-separated parts, "*" one part.
    parts = key.strip("/").split("/")
    pattern = ""
    for part in parts:
        if part == "**":
            pattern += r"(/[^/]+)*"
        else:
            pattern += "/" + re.escape(part).replace(r"\*", "[^/]*")
    return re.compile(pattern or "/")


def read_params_file(path: str | Path) -> dict[str, dict]:
    """Read a ROS 2 parameters YAML into ``{node key: parameters}``.

    Nested namespaces (``stereo: stereo_depth_node: ros__parameters: ...``) are flattened to
    ``/stereo/stereo_depth_node``; keys keep their wildcards (``/**``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, for invalid YAML or an entry that has no ``ros__parameters`` mapping.
    """
    path = Path(path)
    content = read_yaml(path, "parameters file")
    if not isinstance(content, dict) or not content:
        raise ValueError(f"parameters file {path} must map node names to 'ros__parameters' (ROS 2 format)")
    entries: dict[str, dict] = {}

    def walk(prefix: str, mapping: dict) -> None:
        for key, value in mapping.items():
            key = str(key)
            name = f"{prefix}/{key.strip('/')}" if prefix else "/" + key.strip("/")
            if not isinstance(value, dict):
                raise ValueError(f"parameters file {path}: {name!r} must hold a 'ros__parameters' mapping, got "
                                 f"{type(value).__name__}")
            if "ros__parameters" in value:
                parameters = value["ros__parameters"]
                if not isinstance(parameters, dict):
                    raise ValueError(f"parameters file {path}: {name}/ros__parameters must be a mapping")
                if len(value) > 1:
                    raise ValueError(f"parameters file {path}: {name!r} has keys besides 'ros__parameters': "
                                     f"{sorted(k for k in value if k != 'ros__parameters')}")
                entries[name] = parameters
            else:
                walk(name, value)

    walk("", content)
    return entries


def plan_nodes(params_file: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE,
               remaps: dict[str, str] | None = None, use_sim_time: bool | None = None,
               optional: tuple[str, ...] | list[str] = ()) -> list[NodePlan]:
    """The nodes to start for a parameters file.

    Args:
        params_file: ROS 2 parameters YAML; None or "" for :func:`default_params_file`.
        namespace: namespace of the nodes (``/stereo``).
        remaps: launch-argument name (``left_image``, ...; see :data:`REMAP_ARGUMENTS`) or a node's relative
            topic (``left/image_rect``) -> topic to use instead. Values equal to the default are no remapping.
        use_sim_time: when not None, a ``use_sim_time`` override for every node.
        optional: :data:`OPTIONAL_NODES` arguments that are true (``("super_resolution",)``): each adds its node
            with its own parameters file after the file's nodes (unless the file names it) and, for a node that
            feeds another, chains the two (see :class:`OptionalNode`).

    Returns:
        one :class:`NodePlan` per node, in the file's order, then the optional nodes.

    Raises:
        FileNotFoundError: if the parameters file (or an optional node's) does not exist.
        ValueError: for an unknown node name (listing the known ones), a node key whose namespace cannot match
            ``namespace`` (e.g. ``stereo_depth_node:`` without ``/**/``), an unknown remap name, an unknown
            optional argument, an optional node that feeds a node not started, or an invalid namespace.
    """
    unknown = sorted(set(optional) - set(OPTIONAL_NODES))
    if unknown:
        raise ValueError(f"unknown optional node argument(s) {unknown}; known: {sorted(OPTIONAL_NODES)}")
    plans = _plan_file_nodes(params_file, namespace, remaps or {}, use_sim_time)
    for argument in OPTIONAL_NODES:  # a fixed order, whatever the caller's
        if argument not in optional:
            continue
        extra = OPTIONAL_NODES[argument]
        if extra.node not in {plan.name for plan in plans}:
            plans += [plan for plan in _plan_file_nodes(share_file("config", extra.params_file_name), namespace,
                                                        remaps or {}, use_sim_time) if plan.name == extra.node]
        if extra.feeds is not None:
            plans = _chain(plans, extra, remaps or {})
    return plans


def _chain(plans: list[NodePlan], extra: OptionalNode, remaps: dict[str, str]) -> list[NodePlan]:
    """Put ``extra.node`` in front of ``extra.feeds``: the fed node reads ``extra.feed_remappings``; the fed
    kind's remap arguments given in ``remaps`` go to the head's input of the same topic (unless the head's own
    argument for it is given)."""
    names = [plan.name for plan in plans]
    if extra.feeds not in names:
        raise ValueError(f"{extra.argument}:=true puts {extra.node} in front of {extra.feeds}, which the parameters "
                         f"file does not start (it starts {names})")
    head_kind = NODE_KINDS[extra.node]
    # the camera topics given for the fed node, then the head's own arguments (they win)
    targets = dict(resolve_remaps(remaps, NODE_KINDS[extra.feeds]))
    targets.update(resolve_remaps({r.argument: remaps[r.argument] for r in head_kind.remaps if r.argument in remaps},
                                  head_kind))
    head_remappings = tuple((r.topic, targets[r.topic]) for r in head_kind.remaps if r.topic in targets)
    chained = []
    for plan in plans:
        if plan.name == extra.feeds:
            plan = replace(plan, remappings=_with_defaults(extra.feed_remappings, plan.kind))
        elif plan.name == extra.node:
            plan = replace(plan, remappings=_with_defaults(head_remappings, plan.kind))
        chained.append(plan)
    return chained


def _plan_file_nodes(params_file: str | Path | None, namespace: str, remaps: dict[str, str],
                     use_sim_time: bool | None) -> list[NodePlan]:
    """The nodes one parameters file names (:func:`plan_nodes` without the optional nodes)."""
    path = Path(params_file) if params_file else default_params_file()
    namespace = normalize_namespace(namespace)
    entries = read_params_file(path)
    names: list[str] = []
    for key in entries:
        node_part = key.rsplit("/", 1)[-1]
        if "*" in node_part:
            continue  # wildcard keys give parameters to every node, they do not name one
        if node_part not in NODE_KINDS:
            raise ValueError(f"parameters file {path} names node {node_part!r} ({key}), which this package does not "
                             f"have; known nodes: {sorted(NODE_KINDS)}")
        fqn = f"{namespace.rstrip('/')}/{node_part}"
        if not _key_regex(key).fullmatch(fqn):
            hint = (f"'/**/{node_part}:' (any namespace) or '{fqn}:'")
            raise ValueError(f"parameters file {path}: key {key!r} does not match the node {fqn} (namespace "
                             f"{namespace}), so ROS would not apply its parameters; write {hint}")
        if node_part not in names:
            names.append(node_part)
    if not names:
        names = list(DEFAULT_NODES)
    resolve_remaps(remaps or {})  # unknown names are an error even when no started node takes them
    overrides = {} if use_sim_time is None else {"use_sim_time": bool(use_sim_time)}
    return [NodePlan(name=name, kind=NODE_KINDS[name], namespace=namespace, params_file=path.resolve(),
                     parameter_overrides=dict(overrides), remappings=_with_defaults(
                         resolve_remaps(remaps or {}, NODE_KINDS[name]), NODE_KINDS[name]))
            for name in names]


def _with_defaults(remappings: tuple[tuple[str, str], ...], kind: NodeKind) -> tuple[tuple[str, str], ...]:
    """The remap arguments' remappings, then the kind's default remappings of the topics they leave alone."""
    given = {source for source, _ in remappings}
    return remappings + tuple(pair for pair in kind.default_remappings if pair[0] not in given)


def file_parameters(plan: NodePlan) -> dict:
    """The parameters the plan's file gives its node: every entry whose key matches the node's fully qualified
    name (wildcards included), later entries winning, as rcl merges them.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_params_file`.
    """
    merged: dict = {}
    for key, parameters in read_params_file(plan.params_file).items():
        if _key_regex(key).fullmatch(plan.fully_qualified_name):
            merged.update(parameters)
    return merged


def resolve_remaps(remaps: dict[str, str], kind: NodeKind | None = None) -> tuple[tuple[str, str], ...]:
    """``{launch argument or relative topic: target}`` -> ``((relative topic, target), ...)`` for one node kind:
    only its own inputs, without the identity ones (empty targets are ignored), in the kind's remap order.

    Args:
        remaps: remap argument names (any kind's, :data:`REMAP_ARGUMENTS`) or relative input topics -> target.
        kind: the node kind (None: the first of :data:`DEFAULT_NODES`).

    Raises:
        ValueError: for a name that is neither a remap argument nor an input topic of any node kind.
    """
    kind = kind or NODE_KINDS[DEFAULT_NODES[0]]
    every = {r.argument for r in REMAP_ARGUMENTS} | {r.topic for r in REMAP_ARGUMENTS}
    own = {r.argument: r for r in kind.remaps} | {r.topic: r for r in kind.remaps}
    targets: dict[str, str] = {}
    for name, target in remaps.items():
        if name not in every:
            raise ValueError(f"unknown topic remap {name!r}; use one of "
                             f"{[r.argument for r in REMAP_ARGUMENTS]} (or their topics)")
        if name in own and target and target.strip() and target.strip() != own[name].topic:
            targets[own[name].topic] = target.strip()
    return tuple((r.topic, targets[r.topic]) for r in kind.remaps if r.topic in targets)


def parse_bool(text: str | bool) -> bool:
    """Launch-style boolean: true/false, 1/0, yes/no, on/off (any case).

    Raises:
        ValueError: for anything else.
    """
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")
