"""The base class of every perception node of this package: :class:`PerceptionNode`.

A node family (stereo depth now; monocular depth, super-resolution, instrument segmentation and NIR-to-RGB next)
subclasses it and writes only what is its own:

- ``INPUT_TOPICS``: relative topic -> message type, in the order :meth:`PerceptionNode.process` receives them
  (one input: no synchroniser; several: exact or approximate time synchronisation, :mod:`.sync`);
- ``OUTPUT_TOPICS``: relative topic -> message type (more can be added at run time with
  :meth:`PerceptionNode.add_output`);
- ``PARAMETERS``: its own :class:`~stereo_depth_ros.ros.parameters.ParameterSpec` table, declared after
  :data:`COMMON_PARAMETERS`; :meth:`~PerceptionNode.check_parameters` for checks across parameters;
- :meth:`~PerceptionNode.setup` (build the model), :meth:`~PerceptionNode.prepare` (build the backend for an
  input size), :meth:`~PerceptionNode.process` (one input set -> ``[(topic, message), ...]``, building only the
  outputs for which :meth:`~PerceptionNode.wanted` is true).

What the base class does for every node:

- Parameters from one table, with descriptors (ranges, choices, read-only) and validation on set
  (:mod:`.parameters`).
- Lazy like image_pipeline's nodes: while no output has a subscriber the node holds no input subscription and
  runs no inference. A timer polls the outputs' subscription counts every :data:`LAZY_CHECK_PERIOD_S` seconds;
  the first subscriber makes the node subscribe its inputs, the last one leaving makes it unsubscribe.
- Threading: subscriptions, the synchroniser, timers and parameter callbacks run on the executor's thread(s) (one
  mutually exclusive callback group). A complete input set goes into a one-slot mailbox; one worker thread takes
  the newest set, runs :meth:`~PerceptionNode.process` and publishes the outputs itself. A set still waiting
  when a newer one arrives is dropped and counted, so when input comes faster than the node can process, the
  node works on the newest set and the latency stays near one processing time instead of growing with a queue.
- Problems (bad input, estimator errors, inputs that never synchronise) are counted per kind in
  :attr:`~PerceptionNode.problems`, kept in :attr:`~PerceptionNode.last_problem` and logged as warnings
  throttled per kind; the set is skipped, the node goes on.
- ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` once a second (:mod:`.diagnostics`).
- ``destroy_node`` stops and joins the worker thread first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rcl_interfaces.msg import SetParametersResult

from stereo_depth_ros.ros.diagnostics import NodeStatistics, diagnostic_status
from stereo_depth_ros.ros.parameters import ParameterSpec, parameter_table, validate_parameters
from stereo_depth_ros.ros.qos import INPUT_QOS_MODES, OUTPUT_QOS_MODES, AdaptiveSubscription, output_qos, \
    reliability_name
from stereo_depth_ros.ros.sync import SimpleFilter, SyncMonitor, make_synchronizer, stamp_nanoseconds

#: Seconds between two looks at the outputs' subscription counts (laziness).
LAZY_CHECK_PERIOD_S = 0.2
#: Seconds between two looks at the input publishers' QoS (``input_qos: auto``).
QOS_CHECK_PERIOD_S = 1.0
#: Seconds between two ``/diagnostics`` messages.
DIAGNOSTICS_PERIOD_S = 1.0
DIAGNOSTICS_TOPIC = "/diagnostics"
#: Seconds between two log messages of the same kind of problem.
PROBLEM_THROTTLE_S = 5.0
#: Seconds ``destroy_node`` waits for the worker thread to finish the set it is processing.
WORKER_JOIN_TIMEOUT_S = 60.0

#: Parameters every node declares, before its own table.
COMMON_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("approximate_sync", False, "Synchronise the inputs approximately (stamps within 'slop') instead "
                  "of exactly. Ignored by nodes with one input."),
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


class SkipSet(Exception):
    """Raised by :meth:`PerceptionNode.process` to skip an input set as a counted, logged problem.

    ``stereo_depth_ros.ros.conversions.InputError`` (bad messages) is handled the same way; any other exception is
    counted as kind ``"internal"``.

    Attributes:
        kind: short key of the problem ("estimator", "calibration", ...), the counter and child logger name.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PerceptionNode(Node):
    """Base class of the package's nodes (see the module docstring for what it does and what subclasses write).

    Args:
        node_name: ROS node name; None = the class's ``DEFAULT_NODE_NAME``.
        **kwargs: passed to ``rclpy.node.Node`` (``namespace``, ``parameter_overrides``, ``cli_args`` for
            remapping, ``context``, ...). ``automatically_declare_parameters_from_overrides`` must not be set: the
            node declares its parameters itself, with descriptors.

    Attributes:
        settings: parameter name -> current value (common and the subclass's).
        counters: ``Counter`` of "sets" (complete input sets received), "processed", "skipped", "dropped" (older
            sets replaced by a newer one before processing) and "published_<topic>".
        problems: ``Counter`` of problems by kind ("encoding", "image_size", "unsynchronized", "estimator",
            "internal", ...).
        last_problem: the last problem's message (names the topic and field), or None.
        last_timing: seconds spent on the last processed set, by step (what the subclass timed with
            :meth:`timed`, plus "publish" and "total").
        statistics: :class:`~stereo_depth_ros.ros.diagnostics.NodeStatistics` (rates, latencies) behind
            ``/diagnostics``.

    Raises:
        ValueError: at start-up, for invalid parameters (naming them) or kwargs.
        rclpy.exceptions.InvalidParameterValueException: for an override outside a parameter's range.
    """

    #: Node name used when none is given.
    DEFAULT_NODE_NAME: ClassVar[str] = "perception_node"
    #: Relative input topic -> message type, in the order process() receives the messages.
    INPUT_TOPICS: ClassVar[dict[str, type]] = {}
    #: Relative output topic -> message type.
    OUTPUT_TOPICS: ClassVar[dict[str, type]] = {}
    #: The subclass's own parameters (declared after COMMON_PARAMETERS).
    PARAMETERS: ClassVar[tuple[ParameterSpec, ...]] = ()

    def __init__(self, node_name: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("automatically_declare_parameters_from_overrides"):
            raise ValueError(f"{type(self).__name__} declares its own parameters; do not pass "
                             "automatically_declare_parameters_from_overrides=True")
        if not self.INPUT_TOPICS or not self.OUTPUT_TOPICS:
            raise ValueError(f"{type(self).__name__} must define INPUT_TOPICS and OUTPUT_TOPICS")
        super().__init__(node_name or self.DEFAULT_NODE_NAME, **kwargs)
        self._destroyed = False
        self._worker: threading.Thread | None = None
        self._input_subscriptions: dict[str, AdaptiveSubscription] = {}
        try:
            self._start()
        except BaseException:
            self.destroy_node()
            raise

    # ------------------------------------------------------------------------------------------------ subclass API

    def setup(self) -> None:
        """Build what the node needs (its model) from :attr:`settings`; called once, after the ``OUTPUT_TOPICS``
        publishers exist (add optional outputs here with :meth:`add_output`) and before any input subscription.
        Exceptions propagate out of the constructor."""

    def check_parameters(self, values: dict[str, Any]) -> str | None:
        """Checks across parameters beyond each one's range (e.g. ``max_depth`` above ``min_depth``).

        Args:
            values: every parameter's value after the proposed change.

        Returns:
            None when valid, else the reason naming the parameter (the change is refused, or start-up fails).
        """
        return None

    def on_parameters_changed(self, changed: set[str]) -> None:
        """Called on the executor thread after parameters changed (their values are in :attr:`settings`)."""

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` inputs (e.g. ``estimator.prepare``); called on the worker
        thread once per new input size, as soon as the first input message (an Image or a CameraInfo with a size)
        shows it, before the sets of that size are processed."""

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Turn one input set (one message per ``INPUT_TOPICS`` entry, in that order) into output messages.

        Runs on the worker thread (or the caller's, :meth:`process_set`), never twice at once, and the returned
        messages are published before the next call, so byte buffers may be reused from one set to the next. Build
        only the outputs for which :meth:`wanted` is true. Raise :class:`SkipSet` or ``conversions.InputError`` to
        skip the set as a problem of that kind.

        Returns:
            ``[(topic, message), ...]`` with topics from ``OUTPUT_TOPICS`` or :meth:`add_output`.
        """
        raise NotImplementedError

    def diagnostic_values(self) -> dict[str, str]:
        """Extra key -> value pairs for the node's ``/diagnostics`` status (e.g. the estimator and backend)."""
        return {}

    # ------------------------------------------------------------------------------------------------ start-up

    def _start(self) -> None:
        self.counters: Counter = Counter()
        self.problems: Counter = Counter()
        self.last_problem: str | None = None
        self.last_timing: dict[str, float] = {}
        self.statistics = NodeStatistics()
        self._problem_loggers: dict[str, Any] = {}
        self._timing: dict[str, float] = {}
        self._parameter_specs = parameter_table(COMMON_PARAMETERS, self.PARAMETERS)
        for spec in self._parameter_specs.values():
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = {name: self.get_parameter(name).value for name in self._parameter_specs}
        reason = validate_parameters(self._parameter_specs, values) or self.check_parameters(dict(values))
        if reason is not None:
            raise ValueError(reason)
        self.settings: dict[str, Any] = dict(values)
        self._output_qos_profile = output_qos(self.settings["output_qos"], self.settings["output_history_depth"])
        self._output_publishers: dict[str, Any] = {}
        for topic, msg_type in self.OUTPUT_TOPICS.items():
            self.add_output(topic, msg_type)
        self.setup()
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

        # Worker thread and its one-slot mailbox (plus jobs such as prepare(), which run before the next set).
        self._condition = threading.Condition()
        self._pending: tuple[tuple[Any, ...], float] | None = None
        self._jobs: deque[Callable[[], None]] = deque()
        self._stop = False
        self._busy = False
        self._sizes_seen: set[tuple[int, int]] = set()
        # One set at a time (worker or process_set): a subclass may reuse output buffers between sets.
        self._process_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name=f"{self.get_name()}_worker", daemon=True)
        self._worker.start()

        self._input_filters: list[SimpleFilter] = []
        self._input_synchronizer = None
        self._sync_monitor: SyncMonitor | None = None
        self._lazy_timer = self.create_timer(LAZY_CHECK_PERIOD_S, self._update_input_subscriptions)
        self._qos_check_timer = self.create_timer(QOS_CHECK_PERIOD_S, self._check_input_qos)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.add_post_set_parameters_callback(self._apply_parameter_change)
        self._update_input_subscriptions()

    def add_output(self, topic: str, msg_type: type) -> None:
        """Create the publisher of an output (``OUTPUT_TOPICS`` are added at start-up; a subclass adds optional
        outputs such as ``disparity/stage_N`` itself). Idempotent for a topic already added."""
        if topic not in self._output_publishers:
            self._output_publishers[topic] = self.create_publisher(msg_type, topic, self._output_qos_profile)

    # ------------------------------------------------------------------------------------------------ laziness

    def output_topics(self) -> list[str]:
        """The node's output topics (relative names), including those added with :meth:`add_output`."""
        return list(self._output_publishers)

    def output_subscription_count(self, topic: str) -> int:
        """Subscriptions matched to an output topic.

        Raises:
            KeyError: for a topic that is not an output of this node (listing the outputs).
        """
        try:
            publisher = self._output_publishers[topic]
        except KeyError:
            raise KeyError(f"{topic!r} is not an output of this node (outputs: "
                           f"{', '.join(self._output_publishers)})") from None
        return publisher.get_subscription_count()

    def wanted(self, topic: str) -> bool:
        """Whether an output has a subscriber now (build it only then); False for a topic not added."""
        publisher = self._output_publishers.get(topic)
        return publisher is not None and publisher.get_subscription_count() > 0

    @property
    def inputs_subscribed(self) -> bool:
        """Whether the node currently subscribes its inputs (some output has a subscriber)."""
        return bool(self._input_subscriptions)

    def _update_input_subscriptions(self) -> None:
        if self._destroyed:
            return
        wanted = any(publisher.get_subscription_count() > 0 for publisher in self._output_publishers.values())
        if wanted and not self._input_subscriptions:
            self._subscribe_inputs()
        elif not wanted and self._input_subscriptions:
            self._unsubscribe_inputs()

    def _subscribe_inputs(self) -> None:
        self._build_synchronizer()
        subscriptions = {}
        try:
            for index, (topic, msg_type) in enumerate(self.INPUT_TOPICS.items()):
                subscriptions[topic] = AdaptiveSubscription(
                    self, msg_type, topic, self._make_input_callback(index), mode=self.settings["input_qos"],
                    depth=self.settings["queue_size"], on_change=self._on_qos_change)
        except Exception:
            for subscription in subscriptions.values():
                subscription.destroy()
            raise
        # all at once: another thread reading inputs_subscribed never sees only some of the inputs subscribed
        self._input_subscriptions = subscriptions
        self.get_logger().info(f"an output has a subscriber: subscribed {', '.join(self.INPUT_TOPICS)}")

    def _unsubscribe_inputs(self) -> None:
        subscriptions, self._input_subscriptions = self._input_subscriptions, {}
        for subscription in subscriptions.values():
            subscription.destroy()
        with self._condition:
            self._pending = None
        self._build_synchronizer()  # forget half-matched sets
        self.get_logger().info("no subscriber on any output: unsubscribed the inputs")

    # ------------------------------------------------------------------------------------------------ inputs

    def _build_synchronizer(self) -> None:
        """(Re)build the synchroniser from the current settings (pending messages are dropped)."""
        topics = list(self.INPUT_TOPICS)
        if len(topics) == 1:
            self._input_filters, self._input_synchronizer, self._sync_monitor = [], None, None
            return
        inputs = [SimpleFilter() for _ in topics]
        synchronizer = make_synchronizer(inputs, self.settings["approximate_sync"], self.settings["queue_size"],
                                         self.settings["slop"])
        synchronizer.registerCallback(self._on_input_set)
        self._sync_monitor = SyncMonitor(topics, self.settings["queue_size"], self.settings["approximate_sync"],
                                         self.settings["slop"])
        self._input_filters, self._input_synchronizer = inputs, synchronizer

    def _make_input_callback(self, index: int) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self._note_input_size(msg)
            if self._sync_monitor is None:
                self._on_input_set(msg)
                return
            self._sync_monitor.received(index, msg)
            self._input_filters[index].signalMessage(msg)
            problem = self._sync_monitor.diagnose()
            if problem is not None:
                self.report_problem("unsynchronized", problem)
        return callback

    def _note_input_size(self, msg: Any) -> None:
        height, width = getattr(msg, "height", 0), getattr(msg, "width", 0)
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            return
        if (height, width) in self._sizes_seen:
            return
        self._sizes_seen.add((height, width))
        self.run_on_worker(lambda: self._prepare(height, width))

    def _prepare(self, height: int, width: int) -> None:
        try:
            with self.timed_block() as timing:
                self.prepare(height, width)
            self.get_logger().info(f"prepared for {width} x {height} inputs in {timing['total']:.2f} s")
        except Exception as error:  # a failed preparation is retried implicitly by the first frame
            self.report_problem("prepare", f"preparing for {width} x {height} inputs failed: "
                                           f"{type(error).__name__}: {error}")

    def run_on_worker(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the worker thread before the next input set (e.g. building a backend)."""
        with self._condition:
            self._jobs.append(job)
            self._condition.notify()

    def _on_input_set(self, *msgs: Any) -> None:
        """A complete input set (executor thread): put it in the mailbox, replacing (dropping) an older one."""
        if self._sync_monitor is not None:
            self._sync_monitor.synchronized()
        self.counters["sets"] += 1
        self.statistics.input_set()
        with self._condition:
            if self._pending is not None:
                self.counters["dropped"] += 1
                self.statistics.dropped()
            self._pending = (msgs, time.monotonic())
            self._condition.notify()

    # ------------------------------------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._stop and not self._jobs and self._pending is None:
                    self._condition.wait()
                if self._stop:
                    return
                job = self._jobs.popleft() if self._jobs else None
                item = None
                if job is None:
                    item, self._pending = self._pending, None
                self._busy = True
            try:
                if job is not None:
                    job()
                else:
                    self._process_and_publish(item[0], item[1])
            except Exception as error:  # never let the worker die
                if not self.context.ok():  # shut down while this set was in flight: nothing left to report to
                    return
                self.report_problem("internal", f"worker error: {type(error).__name__}: {error}")
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def wait_until_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until the mailbox is empty and the worker is not processing (for tools and tests).

        Returns:
            True when idle, False after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._pending is not None or self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the seconds spent in the ``with`` block to :attr:`last_timing` ``[step]`` of the current set."""
        tick = time.perf_counter()
        try:
            yield
        finally:
            self._timing[step] = self._timing.get(step, 0.0) + time.perf_counter() - tick

    @staticmethod
    @contextlib.contextmanager
    def timed_block() -> Iterator[dict[str, float]]:
        """``with timed_block() as t:`` -> ``t["total"]`` seconds after the block."""
        timing: dict[str, float] = {}
        tick = time.perf_counter()
        try:
            yield timing
        finally:
            timing["total"] = time.perf_counter() - tick

    def process_set(self, *msgs: Any) -> bool:
        """Process one input set now, in the calling thread, and publish its outputs (tools, benchmarks, tests;
        the node itself does this on its worker thread).

        Returns:
            True if outputs were built and published, False if the set was skipped (see :attr:`last_problem`).

        Raises:
            ValueError: for a number of messages other than the number of inputs.
        """
        if len(msgs) != len(self.INPUT_TOPICS):
            raise ValueError(f"{type(self).__name__} takes {len(self.INPUT_TOPICS)} messages "
                             f"({', '.join(self.INPUT_TOPICS)}), got {len(msgs)}")
        return self._process_and_publish(msgs, time.monotonic())

    def _process_and_publish(self, msgs: Sequence[Any], received: float) -> bool:
        with self._process_lock:
            return self._process_and_publish_locked(msgs, received)

    def _process_and_publish_locked(self, msgs: Sequence[Any], received: float) -> bool:
        self._timing = {}
        start = time.perf_counter()
        try:
            outgoing = self.process(list(msgs))
        except Exception as error:
            if not self.context.ok():  # the node was shut down while this set was processed: drop it quietly
                return False
            kind = getattr(error, "kind", None)
            if not isinstance(kind, str):
                kind = "internal"
                message = f"input set skipped after an unexpected error: {type(error).__name__}: {error}"
            else:
                message = str(error)
            self.counters["skipped"] += 1
            self.statistics.skipped()
            self.report_problem(kind, message)
            return False
        self.counters["processed"] += 1
        with self.timed("publish"):
            for topic, msg in outgoing:  # publish() copies the message: its buffers may be reused afterwards
                self._output_publishers[topic].publish(msg)
                self.counters[f"published_{topic}"] += 1
        self._timing["total"] = time.perf_counter() - start
        self.last_timing = dict(self._timing)
        self.statistics.processed(latency_s=time.monotonic() - received, processing_s=self._timing["total"],
                                  stamp_latency_s=self._stamp_latency(msgs[0]), published=bool(outgoing))
        return True

    def _stamp_latency(self, msg: Any) -> float | None:
        try:
            stamp = stamp_nanoseconds(msg)
        except ValueError:
            return None
        if stamp == 0:
            return None
        return (self.get_clock().now().nanoseconds - stamp) / 1e9

    # ------------------------------------------------------------------------------------------------ QoS

    def _check_input_qos(self) -> None:
        for subscription in list(self._input_subscriptions.values()):
            subscription.check()

    def _on_qos_change(self, topic: str, old: QoSProfile | None, new: QoSProfile, publishers: int) -> None:
        message = (f"{topic}: {publishers} publisher(s) found, subscribing {reliability_name(new.reliability)} "
                   f"(input_qos {self.settings['input_qos']}, depth {new.depth})")
        if old is None:
            self.get_logger().debug(message)
        else:
            self.get_logger().info(message)

    def input_reliability(self, topic: str):
        """Reliability (``rclpy.qos.ReliabilityPolicy``) of the subscription to an input topic.

        Raises:
            KeyError: while the inputs are not subscribed (no subscriber on any output) or for an unknown topic.
        """
        if topic not in self._input_subscriptions:
            raise KeyError(f"input {topic!r} is not subscribed (inputs are subscribed while an output has a "
                           f"subscriber; inputs: {', '.join(self.INPUT_TOPICS)})")
        return self._input_subscriptions[topic].reliability

    # ------------------------------------------------------------------------------------------------ parameters

    def _validate_parameter_change(self, parameters: list[Parameter]) -> SetParametersResult:
        values = dict(self.settings)
        for parameter in parameters:
            if parameter.name in self._parameter_specs:
                values[parameter.name] = parameter.value
        reason = validate_parameters(self._parameter_specs, values) or self.check_parameters(values)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameter_change(self, parameters: list[Parameter]) -> None:
        changed = {p.name for p in parameters if p.name in self._parameter_specs}
        for name in changed:
            self.settings[name] = self.get_parameter(name).value
        if self._input_subscriptions:
            if changed & {"approximate_sync", "slop", "queue_size"}:
                self._build_synchronizer()
            if changed & {"input_qos", "queue_size"}:
                for subscription in self._input_subscriptions.values():
                    subscription.configure(self.settings["input_qos"], self.settings["queue_size"])
        self.on_parameters_changed(changed)
        if changed:
            self.get_logger().info("parameters changed: " + ", ".join(f"{n}={self.settings[n]!r}"
                                                                      for n in sorted(changed)))

    # ------------------------------------------------------------------------------------------------ problems

    def report_problem(self, kind: str, message: str) -> None:
        """Count a problem, remember it and log it as a warning, throttled per kind (thread-safe)."""
        self.problems[kind] += 1
        self.last_problem = message
        self.statistics.problem(kind, message)
        logger = self._problem_loggers.get(kind)
        if logger is None:
            # One child logger per kind: rclpy throttles per call site and logger, so kinds do not mute each other.
            logger = self._problem_loggers[kind] = self.get_logger().get_child(kind)
        logger.warning(message, throttle_duration_sec=PROBLEM_THROTTLE_S)

    # ------------------------------------------------------------------------------------------------ diagnostics

    def diagnostic_status(self, advance_period: bool = True):
        """The node's current ``diagnostic_msgs/DiagnosticStatus`` (see :mod:`.diagnostics`)."""
        name = self.get_fully_qualified_name()
        return diagnostic_status(f"{name}: processing", name,
                                 self.statistics.snapshot(advance_period=advance_period), self.inputs_subscribed,
                                 self.diagnostic_values())

    def publish_diagnostics(self) -> None:
        """Publish one ``DiagnosticArray`` with :meth:`diagnostic_status` on ``/diagnostics`` (timer, 1 Hz)."""
        if self._destroyed:
            return
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.diagnostic_status()]
        self._diagnostics_publisher.publish(array)

    # ------------------------------------------------------------------------------------------------ shutdown

    def destroy_node(self) -> None:
        """Stop and join the worker thread, destroy the input subscriptions, then the node (idempotent)."""
        if getattr(self, "_destroyed", False):
            return
        self._destroyed = True
        worker = getattr(self, "_worker", None)
        if worker is not None:
            with self._condition:
                self._stop = True
                self._condition.notify_all()
            worker.join(WORKER_JOIN_TIMEOUT_S)
            if worker.is_alive():
                self.get_logger().error(f"the worker thread did not stop within {WORKER_JOIN_TIMEOUT_S} s")
            self._worker = None
        for subscription in getattr(self, "_input_subscriptions", {}).values():
            subscription.destroy()
        self._input_subscriptions = {}
        super().destroy_node()


def run_node(node_class: type, name: str, args: list[str] | None = None) -> int:
    """Run one node of ``node_class`` (constructed with no arguments) until Ctrl-C: every node's console entry point.

    Args:
        node_class: a :class:`PerceptionNode` subclass.
        name: the node's default name, for the log line when it fails to start.
        args: command-line arguments for ``rclpy.init`` (``--ros-args`` remaps, parameters files).

    Returns:
        0 after a clean shutdown, 1 when the node fails to start (the reason, e.g. a weights file and what is wrong
        with it, is logged as fatal).
    """
    rclpy.init(args=args)
    try:
        node = node_class()
    except Exception as error:
        rclpy.logging.get_logger(name).fatal(f"failed to start: {type(error).__name__}: {error}")
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
