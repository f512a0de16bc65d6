"""Bringup (one process) and the launch file start the same nodes with the same parameters and remappings.

The launch file is evaluated with the real ``launch``/``launch_ros`` packages when they are installed, otherwise
with small stand-ins that have the same API for what the file uses (DeclareLaunchArgument, LaunchConfiguration,
OpaqueFunction, IfCondition, LaunchDescription, Node). In both cases the ``Node`` action class is replaced by a
recorder, so the test sees exactly the keyword arguments the launch file gives each node.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from stereo_depth_ros.ros import bringup_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO_ROOT / "launch" / "endoscope.launch.py"

TEST_PARAMS = """\
/**:
  ros__parameters:
    queue_size: 7
/**/stereo_depth_node:
  ros__parameters:
    method: sgbm
    max_disparity: 64
    max_depth: 0.25
    use_color: false
"""


def _stub_launch_modules() -> dict[str, types.ModuleType]:
    """Minimal stand-ins for launch and launch_ros with the semantics the launch file relies on."""
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    conditions = types.ModuleType("launch.conditions")
    substitutions = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchContext:
        def __init__(self):
            self.launch_configurations = {}

    class LaunchDescription:
        def __init__(self, entities=()):
            self.entities = list(entities)

    class DeclareLaunchArgument:
        def __init__(self, name, default_value=None, description="", **kwargs):
            self.name, self.default_value, self.description = name, default_value, description

    class LaunchConfiguration:
        def __init__(self, name):
            self.variable_name = name

        def perform(self, context):
            return context.launch_configurations[self.variable_name]

    class OpaqueFunction:
        def __init__(self, function, args=None, kwargs=None):
            self.function, self.args, self.kwargs = function, args or [], kwargs or {}

        def execute(self, context):
            return self.function(context, *self.args, **self.kwargs)

    class IfCondition:
        def __init__(self, predicate):
            self.predicate = predicate

        def evaluate(self, context):
            return bringup_spec.parse_bool(self.predicate.perform(context))

    class Node:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    launch.LaunchContext, launch.LaunchDescription = LaunchContext, LaunchDescription
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    conditions.IfCondition = IfCondition
    substitutions.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = Node
    launch.actions, launch.conditions, launch.substitutions = actions, conditions, substitutions
    launch_ros.actions = ros_actions
    return {"launch": launch, "launch.actions": actions, "launch.conditions": conditions,
            "launch.substitutions": substitutions, "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


class RecordingNode:
    """Replaces launch_ros.actions.Node in the launch module: keeps the keyword arguments."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.condition = kwargs.get("condition")


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file as a module (real launch packages when present, else the stand-ins), and the launch
    package it was evaluated with."""
    if importlib.util.find_spec("launch") is None or importlib.util.find_spec("launch_ros") is None:
        for name, module in _stub_launch_modules().items():
            monkeypatch.setitem(sys.modules, name, module)
    import launch

    spec = importlib.util.spec_from_file_location("endoscope_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "Node", RecordingNode)
    return module, launch


def _default_text(argument, context) -> str:
    if isinstance(argument.default_value, str):
        return argument.default_value
    from launch.utilities import perform_substitutions  # real launch: a list of substitutions

    return perform_substitutions(context, argument.default_value)


def evaluate_launch(module, launch, **configuration) -> tuple[dict, list[RecordingNode], RecordingNode, object]:
    """Declared arguments (name -> argument), the stereo nodes, the RViz node and the context, for the given
    launch-argument values (the others keep their defaults)."""
    description = module.generate_launch_description()
    context = launch.LaunchContext()
    arguments = {}
    opaque = []
    rviz = None
    for entity in description.entities:
        if hasattr(entity, "default_value") and hasattr(entity, "description"):
            arguments[entity.name] = entity
            context.launch_configurations[entity.name] = _default_text(entity, context)
        elif isinstance(entity, RecordingNode):
            rviz = entity
        elif hasattr(entity, "execute"):
            opaque.append(entity)
    context.launch_configurations.update(configuration)
    nodes = [action for entity in opaque for action in (entity.execute(context) or [])]
    return arguments, nodes, rviz, context


def test_launch_arguments_are_declared_with_descriptions(launch_module):
    module, launch = launch_module
    arguments, nodes, rviz, context = evaluate_launch(module, launch)
    expected = {"namespace", "params_file", "use_sim_time", "rviz", "left_image", "right_image", "left_camera_info",
                "right_camera_info"}
    assert expected <= set(arguments)
    for name in expected:
        assert len(arguments[name].description) > 15, f"launch argument {name} needs a description"
    assert context.launch_configurations["namespace"] == "/stereo"
    assert [n.kwargs["executable"] for n in nodes] == ["stereo_depth_node"]
    assert rviz.kwargs["executable"] == "rviz2"
    assert rviz.kwargs["arguments"][1].endswith("rviz/endoscope.rviz") and Path(rviz.kwargs["arguments"][1]).is_file()
    assert rviz.condition.evaluate(context) is True
    context.launch_configurations["rviz"] = "false"
    assert rviz.condition.evaluate(context) is False


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    scripts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value:
            name, target = node.value.split(" = ", 1)
            scripts[name.strip()] = target.strip()
    return scripts


def test_launch_and_bringup_start_the_same_nodes(launch_module, tmp_path):
    import rclpy
    from rclpy.context import Context
    from stereo_msgs.msg import DisparityImage

    from stereo_depth_ros.ros.bringup import start_nodes

    module, launch = launch_module
    params = tmp_path / "params.yaml"
    params.write_text(TEST_PARAMS)
    remaps = {"left_image": "/camera/left/image_rect_color", "right_camera_info": "/camera/right/info"}
    _, launched, _, _ = evaluate_launch(module, launch, params_file=str(params), **remaps)
    plans = bringup_spec.plan_nodes(params, remaps=remaps, use_sim_time=False)
    assert len(launched) == len(plans) == 1

    scripts = _console_scripts()
    context = Context()
    bringup = start_nodes(params, remappings=remaps, context=context)
    try:
        assert bringup.plans == plans
        for launch_node, plan, node in zip(launched, plans, bringup.nodes):
            kwargs = launch_node.kwargs
            # the launch executable is the console script of the class bringup instantiates
            assert kwargs["package"] == "stereo_depth_ros"
            assert scripts[kwargs["executable"]] == f"{type(node).__module__}:main"
            assert kwargs["name"] == node.get_name() == plan.name
            assert kwargs["namespace"] == node.get_namespace() == "/stereo"
            assert kwargs["parameters"] == [str(params.resolve()), {"use_sim_time": False}]
            assert dict(kwargs["remappings"]) == {"left/image_rect": "/camera/left/image_rect_color",
                                                  "right/camera_info": "/camera/right/info"}
            # bringup applied the same file (wildcard and node keys) and the same remaps
            assert node.get_parameter("method").value == "sgbm"
            assert node.get_parameter("max_disparity").value == 64
            assert node.get_parameter("max_depth").value == 0.25
            assert node.get_parameter("queue_size").value == 7
            assert node.get_parameter("use_color").value is False
            assert node.get_parameter("use_sim_time").value is False
            # The node subscribes its inputs once an output has a subscriber (lazy): give it one.
            probe = rclpy.create_node("launch_test_probe", context=context)
            probe.create_subscription(DisparityImage, "/stereo/disparity", lambda msg: None, 1)
            deadline = time.monotonic() + 20.0
            while not node.inputs_subscribed and time.monotonic() < deadline:
                time.sleep(0.05)
            subscribed = {s.topic_name for s in node.subscriptions}
            probe.destroy_node()
            assert {"/camera/left/image_rect_color", "/stereo/right/image_rect", "/stereo/left/camera_info",
                    "/camera/right/info"} <= subscribed
            assert "/stereo/left/image_rect" not in subscribed
            assert {"/stereo/disparity", "/stereo/depth", "/stereo/points2"} <= {p.topic_name for p in node.publishers}
    finally:
        bringup.shutdown()
    assert not context.ok(), "bringup initialised the context, so its shutdown must shut it down"


def test_bringup_defaults_and_overrides():
    from rclpy.context import Context

    from stereo_depth_ros.ros.bringup import start_nodes

    context = Context()
    executor, nodes, thread = start_nodes(context=context, overrides={"method": "sgbm", "max_depth": 0.125})
    try:
        node = nodes[0]
        config = yaml.safe_load((REPO_ROOT / "config" / "endoscope.yaml").read_text())
        from_file = config["/**/stereo_depth_node"]["ros__parameters"]
        assert node.get_fully_qualified_name() == "/stereo/stereo_depth_node"
        assert node.get_parameter("method").value == "sgbm"  # override wins over the file's coarse-to-fine
        assert node.get_parameter("max_depth").value == 0.125
        assert node.get_parameter("queue_size").value == from_file["queue_size"]
        assert node.get_parameter("input_qos").value == from_file["input_qos"]
        assert thread.is_alive() and node in executor.get_nodes()
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        if context.ok():
            import rclpy

            rclpy.shutdown(context=context)
    context = Context()
    with pytest.raises(ValueError, match="max_dispartiy"):  # a misspelt override is an error, not ignored
        start_nodes(context=context, overrides={"method": "sgbm", "max_dispartiy": 64})
    assert not context.ok()


def test_config_file_matches_the_node_parameters():
    from stereo_depth_ros.ros.stereo_node import PARAMETER_SPECS

    entries = bringup_spec.read_params_file(REPO_ROOT / "config" / "endoscope.yaml")
    parameters = entries["/**/stereo_depth_node"]
    assert set(parameters) <= set(PARAMETER_SPECS)
    for name, value in parameters.items():
        assert type(value) is type(PARAMETER_SPECS[name].default), f"{name}: {value!r} has the wrong type"


def test_every_node_kind_remaps_exactly_its_inputs():
    for kind in bringup_spec.NODE_KINDS.values():
        node_class = getattr(importlib.import_module(kind.module), kind.class_name)
        assert [r.topic for r in kind.remaps] == list(node_class.INPUT_TOPICS), kind.name
        assert all(len(r.description) > 15 for r in kind.remaps)
    assert {r.argument for r in bringup_spec.REMAP_ARGUMENTS} >= {"left_image", "right_image", "left_camera_info",
                                                                   "right_camera_info"}
    stereo = bringup_spec.NODE_KINDS["stereo_depth_node"]
    other = bringup_spec.NodeKind("threshold_node", "threshold_node", "m", "C",
                                  (bringup_spec.RemapArgument("gray_image", "gray_image", "Image to threshold"),))
    remaps = {"left_image": "/cam/left", "gray_image": "/cam/mono"}
    with pytest.raises(ValueError, match="unknown topic remap 'gray_image'"):  # not an argument of any known kind
        bringup_spec.resolve_remaps(remaps, stereo)
    kinds = {stereo.name: stereo, other.name: other}
    assert [r.argument for r in bringup_spec.remap_arguments(kinds)][-1] == "gray_image"
    clash = bringup_spec.NodeKind("x", "x", "m", "C", (bringup_spec.RemapArgument("left_image", "left", "Left"),))
    with pytest.raises(ValueError, match="left_image"):
        bringup_spec.remap_arguments({stereo.name: stereo, "x": clash})


def test_super_resolution_argument_chains_the_sr_node_in_front_of_the_stereo_node(launch_module, tmp_path):
    from stereo_depth_ros.ros.bringup import build_parser

    module, launch = launch_module
    arguments, nodes, _, _ = evaluate_launch(module, launch)
    switch = arguments["super_resolution"]
    assert switch.default_value == "false" and len(switch.description) > 15
    assert [n.kwargs["name"] for n in nodes] == ["stereo_depth_node"]
    camera = {"left_image": "/camera/left/image_lr", "right_camera_info": "/camera/right/info_lr"}
    _, nodes, _, _ = evaluate_launch(module, launch, super_resolution="true", **camera)
    plans = bringup_spec.plan_nodes(remaps=camera, use_sim_time=False, optional=("super_resolution",))
    assert [n.kwargs["name"] for n in nodes] == [plan.name for plan in plans] == ["stereo_depth_node",
                                                                                  "super_resolution_node"]
    stereo, sr = (dict(n.kwargs["remappings"]) for n in nodes)
    # the stereo node reads the super-resolved pair; the camera topics go to the chain's head
    assert stereo == {topic: "super_resolved/" + topic for topic in ("left/image_rect", "right/image_rect",
                                                                     "left/camera_info", "right/camera_info")}
    assert sr == {"left/image_rect": "/camera/left/image_lr", "right/camera_info": "/camera/right/info_lr"}
    assert [dict(plan.remappings) for plan in plans] == [stereo, sr]
    assert nodes[1].kwargs["parameters"][0].endswith("config/super_resolution.yaml")
    assert nodes[0].kwargs["parameters"][0].endswith("config/endoscope.yaml")
    # the SR node's own argument wins over the camera's; bringup offers the same switch
    own = bringup_spec.plan_nodes(remaps={**camera, "sr_left_image": "/other/left"}, optional=("super_resolution",))
    assert dict(own[1].remappings)["left/image_rect"] == "/other/left"
    assert build_parser().parse_args(["--super-resolution"]).super_resolution is True
    assert build_parser().parse_args([]).super_resolution is False
    # a file that names the SR node keeps its parameters for it, and is still chained
    both = tmp_path / "both.yaml"
    both.write_text("/**/stereo_depth_node:\n  ros__parameters: {}\n/**/super_resolution_node:\n"
                    "  ros__parameters:\n    model: stereo-sr-x4\n")
    plans = bringup_spec.plan_nodes(both, optional=("super_resolution",))
    assert [plan.params_file for plan in plans] == [both.resolve()] * 2
    assert dict(plans[0].remappings)["right/image_rect"] == "super_resolved/right/image_rect"
    sr_only = tmp_path / "sr_only.yaml"
    sr_only.write_text("/**/super_resolution_node:\n  ros__parameters: {}\n")
    with pytest.raises(ValueError, match="in front of stereo_depth_node"):
        bringup_spec.plan_nodes(sr_only, optional=("super_resolution",))
    with pytest.raises(ValueError, match="unknown optional"):
        bringup_spec.plan_nodes(optional=("superresolution",))
    config = bringup_spec.plan_nodes(REPO_ROOT / "config" / "super_resolution.yaml")
    assert [plan.name for plan in config] == ["super_resolution_node"]
    from stereo_depth_ros.ros.node_base import COMMON_PARAMETERS
    from stereo_depth_ros.ros.sr_node import SuperResolutionNode

    declared = {spec.name for spec in SuperResolutionNode.PARAMETERS + COMMON_PARAMETERS}
    assert set(bringup_spec.file_parameters(config[0])) <= declared


def test_plan_errors(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("/**/stereo_depth_node:\n  ros__parameters: {}\n/**/optical_flow_node:\n  ros__parameters: {}\n")
    with pytest.raises(ValueError, match="optical_flow_node.*known nodes"):
        bringup_spec.plan_nodes(unknown)
    bare = tmp_path / "bare.yaml"
    bare.write_text("stereo_depth_node:\n  ros__parameters:\n    method: sgbm\n")
    with pytest.raises(ValueError, match=r"/\*\*/stereo_depth_node"):
        bringup_spec.plan_nodes(bare)
    assert bringup_spec.plan_nodes(bare, namespace="/")[0].namespace == "/"  # root namespace: it matches
    other = tmp_path / "other.yaml"
    other.write_text("/robot/stereo_depth_node:\n  ros__parameters: {}\n")
    with pytest.raises(ValueError, match="does not match"):
        bringup_spec.plan_nodes(other)
    assert bringup_spec.plan_nodes(other, namespace="robot")[0].fully_qualified_name == "/robot/stereo_depth_node"
    nested = tmp_path / "nested.yaml"
    nested.write_text("stereo:\n  stereo_depth_node:\n    ros__parameters:\n      method: sgbm\n")
    assert bringup_spec.read_params_file(nested) == {"/stereo/stereo_depth_node": {"method": "sgbm"}}
    assert [p.name for p in bringup_spec.plan_nodes(nested)] == ["stereo_depth_node"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**:\n  parameters:\n    a: 1\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        bringup_spec.plan_nodes(broken)
    with pytest.raises(FileNotFoundError):
        bringup_spec.plan_nodes(tmp_path / "absent.yaml")
    with pytest.raises(ValueError, match="unknown topic remap"):
        bringup_spec.plan_nodes(nested, remaps={"left_imag": "/x"})
    wildcard_only = tmp_path / "wildcard.yaml"
    wildcard_only.write_text("/**:\n  ros__parameters:\n    method: sgbm\n")
    assert [p.name for p in bringup_spec.plan_nodes(wildcard_only)] == list(bringup_spec.DEFAULT_NODES)


def test_bringup_command_reports_bad_params_file(tmp_path, capsys):
    from stereo_depth_ros.ros import bringup

    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/depth_anything:\n  ros__parameters: {}\n")
    assert bringup.main(["--params-file", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "depth_anything" in error and "Traceback" not in error


def test_rviz_config_shows_the_outputs():
    config = yaml.safe_load((REPO_ROOT / "rviz" / "endoscope.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "stereo_left_optical_frame"
    displays = {d["Name"]: d for d in manager["Displays"]}
    cloud = [d for d in displays.values() if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert len(cloud) == 1
    assert cloud[0]["Topic"]["Value"] == "/stereo/points2" and cloud[0]["Color Transformer"] == "RGB8"
    images = {d["Topic"]["Value"] for d in displays.values() if d["Class"] == "rviz_default_plugins/Image"}
    assert {"/stereo/left/image_rect", "/stereo/depth"} <= images
    assert any("disparity" in topic for topic in images)
    for display in displays.values():
        assert display["Topic"]["Reliability Policy"] == "Reliable", display["Name"]
