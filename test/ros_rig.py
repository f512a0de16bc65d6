"""Shared rclpy test tools: a private ROS context per test module, and a rig that runs one node under test beside a
helper node that publishes its inputs and records its outputs, both spun by one executor on the test's thread.

Import this only after ``pytest.importorskip("rclpy", ...)`` (or inside a ``try`` that skips without ROS 2).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from typing import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

WAIT_S = 20.0
"""Default bound in seconds for every wait on the executor."""

_namespaces = itertools.count()


def ros_context(domain_id: int):
    """Generator for a module-scoped fixture: a fresh rclpy context on ``domain_id``, shut down afterwards."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    yield context
    rclpy.try_shutdown(context=context)


def closing_factory(make: Callable):
    """Generator for a fixture that hands out ``make(...)`` rigs and closes every one after the test."""
    made = []

    def factory(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]
    yield factory
    for rig in made:
        rig.close()


class NodeRig:
    """``node_class`` in a namespace of its own plus a helper node, on one single-threaded executor.

    Args:
        context: the rclpy context.
        node_class: the node under test (a ``PerceptionNode`` subclass).
        parameters: parameter overrides, name -> value.
        prefix: start of the namespace (``/<prefix>_<pid>_<n>``) and of the helper's name.
        node_kwargs: further keyword arguments for ``node_class``.

    Attributes:
        wait_s: default bound in seconds of :meth:`spin_until` and :meth:`wait_for` (a subclass may change it).
        received: topic -> messages recorded by :meth:`record`, in arrival order.
        receive_times: topic -> ``(header stamp, time.monotonic() at arrival)`` of each.
    """

    wait_s = WAIT_S

    def __init__(self, context, node_class, parameters: dict | None = None, prefix: str = "node_test",
                 node_kwargs: dict | None = None) -> None:
        self.namespace = f"/{prefix}_{os.getpid()}_{next(_namespaces)}"
        overrides = [Parameter(name, value=value) for name, value in (parameters or {}).items()]
        self.node = node_class(context=context, namespace=self.namespace, parameter_overrides=overrides,
                               **(node_kwargs or {}))
        self.helper = rclpy.create_node(f"{prefix}_helper", context=context, namespace=self.namespace)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.helper)
        self.received: dict[str, list] = defaultdict(list)
        self.receive_times: dict[str, list] = defaultdict(list)

    def record(self, topic: str, msg_type, depth: int = 10):
        """Subscribe ``topic`` from the helper and record every message (and when it arrived); returns the
        subscription."""
        def callback(msg) -> None:
            self.received[topic].append(msg)
            self.receive_times[topic].append((msg.header.stamp, time.monotonic()))
        return self.helper.create_subscription(msg_type, topic, callback, depth)

    def spin_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Spin until ``predicate()`` is true or ``timeout`` seconds (None: :attr:`wait_s`) passed; returns its
        last value."""
        deadline = time.monotonic() + (self.wait_s if timeout is None else timeout)
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        """Spin for ``seconds``."""
        self.spin_until(lambda: False, timeout=seconds)

    def wait_for(self, topic: str, stamp, timeout: float | None = None):
        """The first recorded message on ``topic`` with header stamp ``stamp`` (None after ``timeout`` seconds;
        None: :attr:`wait_s`)."""
        def find():
            return next((m for m in self.received[topic] if m.header.stamp == stamp), None)
        self.spin_until(lambda: find() is not None, timeout)
        return find()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.helper.destroy_node()


def exchange(context, node_class, parameters: dict, inputs: dict, outputs: dict, timeout: float = WAIT_S,
             prefix: str = "exchange_test") -> dict:
    """Start ``node_class`` in a fresh namespace, subscribe its ``outputs`` (topic -> type) and publish ``inputs``
    (topic -> message) every 0.5 s once the node has subscribed, until every output arrived once or ``timeout``
    seconds passed; the node is destroyed afterwards.

    Returns:
        topic -> the first message received on it.

    Raises:
        AssertionError: naming the outputs that never came and the node's problems.
    """
    namespace = f"/{prefix}_{os.getpid()}_{next(_namespaces)}"
    node = node_class(context=context, namespace=namespace,
                      parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
    helper = Node(f"helper_{next(_namespaces)}", namespace=namespace, context=context)
    received: dict = {}
    for topic, msg_type in outputs.items():
        helper.create_subscription(msg_type, topic, lambda msg, t=topic: received.setdefault(t, msg), 5)
    publishers = {topic: helper.create_publisher(type(msg), topic, 5) for topic, msg in inputs.items()}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(helper)
    deadline = time.monotonic() + timeout
    last_publish = 0.0
    try:
        while time.monotonic() < deadline and len(received) < len(outputs):
            executor.spin_once(timeout_sec=0.05)
            if node.inputs_subscribed and time.monotonic() - last_publish > 0.5:
                for topic, msg in inputs.items():
                    publishers[topic].publish(msg)
                last_publish = time.monotonic()
        problems = dict(node.problems)
    finally:
        executor.shutdown()
        node.destroy_node()
        helper.destroy_node()
    missing = sorted(set(outputs) - set(received))
    assert not missing, f"no message on {missing} within {timeout} s (problems: {problems})"
    return received
