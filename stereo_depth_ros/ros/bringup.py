"""Start the package's nodes in one process (``stereo_depth_bringup``), as ``launch/endoscope.launch.py`` does.

    stereo_depth_bringup                                   # config/endoscope.yaml, namespace /stereo
    stereo_depth_bringup --params-file my.yaml --left-image /camera/left/image_rect ...
    stereo_depth_bringup --super-resolution                # super_resolution_node in front of the stereo node

Every node named in the parameters file is created in this process (see
:mod:`stereo_depth_ros.ros.bringup_spec` for which nodes, names, namespace, parameters and remappings; the launch
file uses the same plan) and spun on one ``MultiThreadedExecutor``. Useful without the ``launch`` package, for
debugging in one process, and for :mod:`stereo_depth_ros.ros.replay`, which adds its own node to the executor.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from stereo_depth_ros.ros import bringup_spec
from stereo_depth_ros.ros.bringup_spec import NodePlan


@dataclass
class Bringup:
    """Running nodes: the executor, the nodes, and the thread spinning the executor (None when not spinning).

    Unpacks as ``executor, nodes, thread = start_nodes(...)``. Call :meth:`shutdown` (or use it as a context
    manager) to stop everything.

    Attributes:
        executor: the ``MultiThreadedExecutor`` the nodes are added to; more nodes may be added.
        nodes: the started nodes, in the parameters file's order.
        thread: daemon thread running ``executor.spin()``, or None if ``spin=False``.
        context: the rclpy context the nodes live in.
        plans: what was started (names, namespace, params file, remappings).
        owns_context: whether :func:`start_nodes` initialised the context (then :meth:`shutdown` shuts it down).
    """

    executor: MultiThreadedExecutor
    nodes: list[Node]
    thread: threading.Thread | None
    context: Context
    plans: list[NodePlan] = field(default_factory=list)
    owns_context: bool = False
    _stopped: bool = False

    def __iter__(self):
        return iter((self.executor, self.nodes, self.thread))

    def __enter__(self) -> "Bringup":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop the executor, join the spin thread, destroy the nodes and, if :func:`start_nodes` initialised
        the context, shut it down. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.executor.shutdown(timeout_sec=timeout_s)
        if self.thread is not None:
            self.thread.join(timeout_s)
        for node in self.nodes:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if self.owns_context and self.context.ok():
            rclpy.shutdown(context=self.context)


def shutdown(bringup: Bringup, timeout_s: float = 10.0) -> None:
    """Stop a :class:`Bringup` (same as ``bringup.shutdown()``)."""
    bringup.shutdown(timeout_s)


def node_class(plan: NodePlan) -> type:
    """The Python class of a planned node (imported on demand).

    Raises:
        RuntimeError: if the class cannot be imported (naming the module).
    """
    try:
        module = importlib.import_module(plan.kind.module)
        return getattr(module, plan.kind.class_name)
    except (ImportError, AttributeError) as error:
        raise RuntimeError(f"cannot load node {plan.name}: {plan.kind.module}.{plan.kind.class_name}: {error}"
                           ) from error


def create_node(plan: NodePlan, context: Context | None = None, overrides: dict | None = None) -> Node:
    """Create one planned node with its params file, remappings and overrides (``overrides`` win over
    ``plan.parameter_overrides``, which win over the file).

    Raises:
        ValueError: for an override the node does not declare (a parameter in the file that it does not declare
            is only logged as a warning, since ROS ignores it).
    """
    values = dict(plan.parameter_overrides)
    values.update(overrides or {})
    parameters = [Parameter(name, value=value) for name, value in values.items()]
    node = node_class(plan)(node_name=plan.name, namespace=plan.namespace, cli_args=plan.ros_arguments(),
                            parameter_overrides=parameters, context=context)
    # ROS ignores parameters a node does not declare, so a misspelt name would go unnoticed: an error for the
    # overrides given here, a warning for the file (which the launch file hands over unchecked as well).
    unknown_overrides = sorted(name for name in overrides or {} if not node.has_parameter(name))
    if unknown_overrides:
        node.destroy_node()
        raise ValueError(f"{unknown_overrides} are not parameters of {plan.fully_qualified_name}")
    unknown = sorted(name for name in bringup_spec.file_parameters(plan) if not node.has_parameter(name))
    if unknown:
        node.get_logger().warning(f"parameters {unknown} in {plan.params_file} are not parameters of "
                                  f"{plan.fully_qualified_name} and have no effect")
    return node


def start_nodes(params_file: str | Path | None = None, namespace: str = bringup_spec.DEFAULT_NAMESPACE,
                remappings: dict[str, str] | None = None, context: Context | None = None,
                overrides: dict | None = None, use_sim_time: bool = False, spin: bool = True,
                num_threads: int | None = None, optional: tuple[str, ...] | list[str] = ()) -> Bringup:
    """Create every node the parameters file names and spin them on a ``MultiThreadedExecutor``.

    Args:
        params_file: ROS 2 parameters YAML (None: the package's ``config/endoscope.yaml``).
        namespace: namespace of the nodes (default ``/stereo``).
        remappings: camera input remaps, by launch-argument name (``left_image``, ``right_image``,
            ``left_camera_info``, ``right_camera_info``) or relative topic (``left/image_rect``) -> topic.
        context: rclpy context (None: the default context); initialised here if it is not yet.
        overrides: parameter name -> value for every node, winning over the file (e.g. ``{"method": "sgbm"}``).
        use_sim_time: the ``use_sim_time`` parameter of every node (the launch file's argument, default false).
        spin: start a daemon thread spinning the executor.
        num_threads: executor threads (None: rclpy's default).
        optional: optional nodes to add, by launch-argument name (``bringup_spec.OPTIONAL_NODES``:
            ``cross_modal``, ``super_resolution``), as the launch file's boolean arguments.

    Returns:
        :class:`Bringup` (unpacks as ``executor, nodes, thread``).

    Raises:
        FileNotFoundError: if the parameters file does not exist.
        ValueError: for an unknown node name or a bad key, remap or namespace (see
            :func:`stereo_depth_ros.ros.bringup_spec.plan_nodes`), or a node's own parameter check.
        RuntimeError: if a node class cannot be loaded.
    """
    plans = bringup_spec.plan_nodes(params_file, namespace=namespace, remaps=remappings or {},
                                    use_sim_time=use_sim_time, optional=optional)
    if context is None:
        context = rclpy.get_default_context()
    owns_context = not context.ok()
    if owns_context:
        rclpy.init(context=context)
    nodes: list[Node] = []
    try:
        for plan in plans:
            nodes.append(create_node(plan, context=context, overrides=overrides))
        executor = MultiThreadedExecutor(num_threads=num_threads, context=context)
        for node in nodes:
            executor.add_node(node)
    except BaseException:
        for node in nodes:
            node.destroy_node()
        if owns_context and context.ok():
            rclpy.shutdown(context=context)
        raise
    thread = None
    if spin:
        thread = threading.Thread(target=_spin, args=(executor,), name="stereo_depth_bringup", daemon=True)
        thread.start()
    return Bringup(executor=executor, nodes=nodes, thread=thread, context=context, plans=plans,
                   owns_context=owns_context)


def _spin(executor: MultiThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``stereo_depth_bringup`` (the launch file's arguments, as options)."""
    parser = argparse.ArgumentParser(prog="stereo_depth_bringup", description=__doc__.splitlines()[0])
    parser.add_argument("--params-file", type=Path, default=None,
                        help="ROS 2 parameters YAML; every node it names is started (default: the package's "
                             "config/endoscope.yaml)")
    parser.add_argument("--namespace", default=bringup_spec.DEFAULT_NAMESPACE,
                        help="namespace of the nodes (default %(default)s)")
    parser.add_argument("--use-sim-time", action="store_true", help="use /clock (with 'ros2 bag play --clock')")
    for extra in bringup_spec.OPTIONAL_NODES.values():
        parser.add_argument("--" + extra.argument.replace("_", "-"), dest=extra.argument, action="store_true",
                            help=extra.description)
    for remap in bringup_spec.REMAP_ARGUMENTS:
        parser.add_argument("--" + remap.argument.replace("_", "-"), dest=remap.argument, default=None,
                            metavar="TOPIC", help=f"{remap.description} (default: {remap.topic})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``stereo_depth_bringup``: start the nodes and spin until Ctrl-C; returns the exit code (2 on bad input)."""
    args_with_ros = sys.argv if argv is None else ["stereo_depth_bringup", *argv]
    from rclpy.utilities import remove_ros_args

    args = build_parser().parse_args(remove_ros_args(args_with_ros)[1:])
    remaps = {r.argument: getattr(args, r.argument) for r in bringup_spec.REMAP_ARGUMENTS
              if getattr(args, r.argument)}
    rclpy.init(args=args_with_ros)
    try:
        bringup = start_nodes(args.params_file, namespace=args.namespace, remappings=remaps,
                              use_sim_time=args.use_sim_time, spin=False,
                              optional=tuple(name for name in bringup_spec.OPTIONAL_NODES if getattr(args, name)))
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"stereo_depth_bringup: error: {error}", file=sys.stderr)
        if rclpy.ok():
            rclpy.shutdown()
        return 2
    names = ", ".join(plan.fully_qualified_name for plan in bringup.plans)
    bringup.nodes[0].get_logger().info(f"bringup: started {names} with {bringup.plans[0].params_file}")
    try:
        bringup.executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        bringup.owns_context = True
        bringup.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
