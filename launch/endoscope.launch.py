"""Launch the stereo depth node(s) for a stereo endoscope (or any rectified stereo camera) and, optionally, RViz.

    ros2 launch stereo_depth_ros endoscope.launch.py
    ros2 launch stereo_depth_ros endoscope.launch.py left_image:=/camera/left/image_rect_color \
        right_image:=/camera/right/image_rect_color left_camera_info:=/camera/left/camera_info \
        right_camera_info:=/camera/right/camera_info rviz:=false
    ros2 launch stereo_depth_ros endoscope.launch.py use_sim_time:=true   # with: ros2 bag play BAG --clock
    ros2 launch stereo_depth_ros endoscope.launch.py cross_modal:=true    # + the NIR-to-RGB node (NIR/RGB rig)
    ros2 launch stereo_depth_ros endoscope.launch.py super_resolution:=true   # LR pair -> stereo SR -> stereo node

Which nodes start, their names, namespace, parameters and remappings come from
``stereo_depth_ros.ros.bringup_spec.plan_nodes``, the same function the single-process ``stereo_depth_bringup``
uses, so both start the same graph. Every node named in ``params_file`` is started (default
``config/endoscope.yaml``); the topics resolve under ``namespace`` (``/stereo/left/image_rect``,
``/stereo/disparity``, ``/stereo/depth``, ``/stereo/points2``). Every node kind's remap arguments are declared
(``bringup_spec.REMAP_ARGUMENTS``); each node takes only those of its own kind (``NodeKind.remaps``). The boolean
arguments of ``bringup_spec.OPTIONAL_NODES`` add a node with its own config file: ``cross_modal`` beside the
stereo node, ``super_resolution`` in front of it (the stereo node reads the super-resolved pair).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from stereo_depth_ros.ros import bringup_spec


def _stereo_nodes(context, *args, **kwargs):
    """Resolve the launch arguments and create one launch_ros Node per planned node."""
    def value(name):
        return LaunchConfiguration(name).perform(context)

    plans = bringup_spec.plan_nodes(
        params_file=value("params_file") or None,
        namespace=value("namespace"),
        remaps={remap.argument: value(remap.argument) for remap in bringup_spec.REMAP_ARGUMENTS},
        use_sim_time=bringup_spec.parse_bool(value("use_sim_time")),
        optional=tuple(name for name in bringup_spec.OPTIONAL_NODES if bringup_spec.parse_bool(value(name))))
    return [Node(package=bringup_spec.PACKAGE, executable=plan.kind.executable, name=plan.name,
                 namespace=plan.namespace, parameters=[str(plan.params_file), plan.parameter_overrides],
                 remappings=list(plan.remappings), output="screen", emulate_tty=True)
            for plan in plans]


def generate_launch_description():
    """Launch arguments (see ``ros2 launch stereo_depth_ros endoscope.launch.py --show-args``), the stereo
    node(s) and RViz."""
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, (default, description) in bringup_spec.LAUNCH_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(remap.argument, default_value=remap.topic, description=remap.description)
                  for remap in bringup_spec.REMAP_ARGUMENTS]
    arguments += [DeclareLaunchArgument(extra.argument, default_value="false", description=extra.description)
                  for extra in bringup_spec.OPTIONAL_NODES.values()]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2",
                arguments=["-d", str(bringup_spec.rviz_config_file())],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")), output="screen")
    return LaunchDescription(arguments + [OpaqueFunction(function=_stereo_nodes), rviz])
