"""Run-time statistics of a perception node and their ``diagnostic_msgs/DiagnosticStatus``.

:class:`NodeStatistics` is fed by :class:`~stereo_depth_ros.ros.node_base.PerceptionNode` from two threads (the
executor thread records arriving input sets and drops; the worker thread records processed and skipped sets) and
read once a second to publish a ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` (the topic
diagnostic_aggregator and ``ros2 topic echo /diagnostics`` read). All times are seconds of the monotonic clock
(``time.monotonic``) except the stamp latency, which compares the input's ``header.stamp`` with the node's ROS
clock.

Levels (:func:`diagnostic_status`), judged on the last report period:

- ERROR: input sets were taken for processing in the period and every one was skipped (bad input, estimator
  failure): the node publishes nothing although it receives data.
- WARN: some sets were skipped, or a problem was reported (e.g. inputs that never synchronise), in the period.
- OK: otherwise, including an idle node (no subscriber on any output, so no input subscriptions) and a node that
  drops older input sets because its input is faster than its processing (that is the designed behaviour; the
  count is reported).

No rclpy here apart from the message classes, so the statistics are unit-tested without a node.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

#: Published sets whose latencies give the percentiles.
LATENCY_WINDOW = 100
#: Seconds over which the input and output rates are computed.
RATE_WINDOW_S = 5.0

LEVEL_NAMES = {DiagnosticStatus.OK: "OK", DiagnosticStatus.WARN: "WARN", DiagnosticStatus.ERROR: "ERROR"}


@dataclass
class StatisticsSnapshot:
    """What :meth:`NodeStatistics.snapshot` returns: totals, rates and latency percentiles.

    Attributes:
        input_sets, processed, skipped, dropped, published: totals since start (sets; ``published`` counts sets
            whose outputs were published).
        input_rate_hz, output_rate_hz: complete input sets received / sets published per second over the last
            :data:`RATE_WINDOW_S` seconds.
        latency_p50_s, latency_p95_s: receipt of the complete input set -> its outputs published, seconds, over
            the last :data:`LATENCY_WINDOW` published sets (NaN before the first).
        stamp_latency_p50_s, stamp_latency_p95_s: input ``header.stamp`` -> outputs published, on the node's ROS
            clock (meaningful when the camera's clock is the node's: same machine, synchronised clocks, or
            ``use_sim_time`` with a bag), NaN before the first.
        processing_p50_s: worker time per processed set (convert, infer, build, publish), NaN before the first.
        period: counts since the previous snapshot: "sets", "processed", "skipped", "dropped", "problems".
        last_error: the last problem's message, or None.
        problems: problem kind -> count since start.
    """

    input_sets: int
    processed: int
    skipped: int
    dropped: int
    published: int
    input_rate_hz: float
    output_rate_hz: float
    latency_p50_s: float
    latency_p95_s: float
    stamp_latency_p50_s: float
    stamp_latency_p95_s: float
    processing_p50_s: float
    period: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    problems: dict[str, int] = field(default_factory=dict)


def _percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


class NodeStatistics:
    """Thread-safe counters, rates and latency windows of one node.

    Args:
        latency_window: published sets kept for the latency percentiles.
        rate_window_s: seconds over which rates are computed.
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, latency_window: int = LATENCY_WINDOW, rate_window_s: float = RATE_WINDOW_S,
                 clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate_window_s = float(rate_window_s)
        self.totals = {"sets": 0, "processed": 0, "skipped": 0, "dropped": 0, "published": 0, "problems": 0}
        self._last_totals = dict(self.totals)
        self._set_times: deque[float] = deque()
        self._publish_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._stamp_latencies: deque[float] = deque(maxlen=latency_window)
        self._processing: deque[float] = deque(maxlen=latency_window)
        self.problems: dict[str, int] = {}
        self.last_error: str | None = None

    def _trim(self, times: deque, now: float) -> None:
        while times and times[0] < now - self.rate_window_s:
            times.popleft()

    def input_set(self) -> None:
        """A complete input set arrived (executor thread)."""
        with self._lock:
            now = self._clock()
            self.totals["sets"] += 1
            self._set_times.append(now)
            self._trim(self._set_times, now)

    def dropped(self, count: int = 1) -> None:
        """Older pending input sets were replaced by a newer one before processing."""
        with self._lock:
            self.totals["dropped"] += count

    def skipped(self) -> None:
        """A set was taken for processing but gave no output (bad input, estimator error)."""
        with self._lock:
            self.totals["skipped"] += 1

    def problem(self, kind: str, message: str) -> None:
        """A problem of ``kind`` was reported (``message`` names the field)."""
        with self._lock:
            self.totals["problems"] += 1
            self.problems[kind] = self.problems.get(kind, 0) + 1
            self.last_error = message

    def processed(self, latency_s: float, processing_s: float, stamp_latency_s: float | None,
                  published: bool) -> None:
        """A set was processed.

        Args:
            latency_s: receipt of the set -> outputs published, seconds.
            processing_s: worker time on this set, seconds.
            stamp_latency_s: ``header.stamp`` -> published on the ROS clock, or None when unknown.
            published: whether at least one output was published (False when no output was wanted any more).
        """
        with self._lock:
            now = self._clock()
            self.totals["processed"] += 1
            self._processing.append(processing_s)
            if published:
                self.totals["published"] += 1
                self._latencies.append(latency_s)
                if stamp_latency_s is not None:
                    self._stamp_latencies.append(stamp_latency_s)
                self._publish_times.append(now)
                self._trim(self._publish_times, now)

    def latencies(self) -> list[float]:
        """The receipt-to-publish latencies in the window, seconds, oldest first."""
        with self._lock:
            return list(self._latencies)

    def snapshot(self, advance_period: bool = True) -> StatisticsSnapshot:
        """Totals, rates over the last ``rate_window_s`` and percentiles over the latency window.

        Args:
            advance_period: start a new report period (the next snapshot's ``period`` counts from now).
        """
        with self._lock:
            now = self._clock()
            self._trim(self._set_times, now)
            self._trim(self._publish_times, now)
            period = {key: self.totals[key] - self._last_totals[key] for key in self.totals}
            if advance_period:
                self._last_totals = dict(self.totals)
            return StatisticsSnapshot(
                input_sets=self.totals["sets"], processed=self.totals["processed"], skipped=self.totals["skipped"],
                dropped=self.totals["dropped"], published=self.totals["published"],
                input_rate_hz=len(self._set_times) / self.rate_window_s,
                output_rate_hz=len(self._publish_times) / self.rate_window_s,
                latency_p50_s=_percentile(self._latencies, 50), latency_p95_s=_percentile(self._latencies, 95),
                stamp_latency_p50_s=_percentile(self._stamp_latencies, 50),
                stamp_latency_p95_s=_percentile(self._stamp_latencies, 95),
                processing_p50_s=_percentile(self._processing, 50), period=period, last_error=self.last_error,
                problems=dict(self.problems))


def _milliseconds(seconds: float) -> str:
    return "nan" if not np.isfinite(seconds) else f"{seconds * 1000.0:.1f}"


def diagnostic_status(name: str, hardware_id: str, snapshot: StatisticsSnapshot, subscribed: bool,
                      extra: dict[str, str] | None = None) -> DiagnosticStatus:
    """The ``DiagnosticStatus`` for one report period (level rules: see the module docstring).

    Args:
        name: status name, e.g. ``"/stereo/stereo_depth_node: processing"``.
        hardware_id: what the status is about (the node's fully qualified name).
        snapshot: :meth:`NodeStatistics.snapshot` taken for this period.
        subscribed: whether the node currently subscribes its inputs (some output has a subscriber).
        extra: more key -> value pairs from the node (e.g. the estimator and its backend).

    Returns:
        DiagnosticStatus with ``values`` (KeyValue, all strings): "inputs subscribed", "input sets",
        "input set rate (Hz)", "output rate (Hz)", "latency p50 (ms)", "latency p95 (ms)" (receipt of the complete
        input set -> published), "stamp latency p50 (ms)", "stamp latency p95 (ms)" (``header.stamp`` ->
        published), "processing p50 (ms)", "processed sets", "published sets", "dropped sets", "skipped frames",
        "problems", "last error", then ``extra``.
    """
    period = snapshot.period
    if period.get("skipped", 0) > 0 and period.get("processed", 0) == 0:
        level = DiagnosticStatus.ERROR
        message = f"every input set skipped in the last period ({period['skipped']}): {snapshot.last_error}"
    elif period.get("skipped", 0) > 0 or period.get("problems", 0) > 0:
        level = DiagnosticStatus.WARN
        message = (f"{period.get('skipped', 0)} set(s) skipped, {period.get('problems', 0)} problem(s) in the last "
                   f"period: {snapshot.last_error}")
    elif not subscribed:
        level, message = DiagnosticStatus.OK, "idle: no subscriber on any output, inputs not subscribed"
    elif period.get("dropped", 0) > 0:
        level = DiagnosticStatus.OK
        message = (f"processing the newest input sets; {period['dropped']} older set(s) dropped in the last period "
                   f"(input faster than processing)")
    else:
        level, message = DiagnosticStatus.OK, "ok"
    values = {
        "inputs subscribed": str(subscribed).lower(),
        "input sets": str(snapshot.input_sets),
        "input set rate (Hz)": f"{snapshot.input_rate_hz:.2f}",
        "output rate (Hz)": f"{snapshot.output_rate_hz:.2f}",
        "latency p50 (ms)": _milliseconds(snapshot.latency_p50_s),
        "latency p95 (ms)": _milliseconds(snapshot.latency_p95_s),
        "stamp latency p50 (ms)": _milliseconds(snapshot.stamp_latency_p50_s),
        "stamp latency p95 (ms)": _milliseconds(snapshot.stamp_latency_p95_s),
        "processing p50 (ms)": _milliseconds(snapshot.processing_p50_s),
        "processed sets": str(snapshot.processed),
        "published sets": str(snapshot.published),
        "dropped sets": str(snapshot.dropped),
        "skipped frames": str(snapshot.skipped),
        "problems": ", ".join(f"{kind}: {count}" for kind, count in sorted(snapshot.problems.items())) or "none",
        "last error": snapshot.last_error or "",
    }
    values.update(extra or {})
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=key, value=value) for key, value in values.items()])


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """``{key: value}`` of a DiagnosticStatus's KeyValue list (for tests and tools)."""
    return {item.key: item.value for item in status.values}
