"""Time synchronisation of several message streams by ``header.stamp`` (message_filters' semantics).

The node uses ``message_filters.TimeSynchronizer`` / ``ApproximateTimeSynchronizer`` when the package is
importable (:func:`make_synchronizer`), and otherwise the classes below, which follow the same Python API:

- inputs are filters with ``registerCallback(callback, *args)`` (:class:`SimpleFilter`, :class:`Subscriber`);
- ``TimeSynchronizer(inputs, queue_size)`` calls its callbacks with one message per input when all inputs hold
  a message with exactly the same stamp;
- ``ApproximateTimeSynchronizer(inputs, queue_size, slop)`` does so when the stamps of one message per input lie
  within ``slop`` seconds of each other;
- each input keeps at most ``queue_size`` messages (the oldest stamp is dropped first), a message that was part of
  an emitted set is removed, and messages may arrive in any order.

Nothing here needs rclpy: messages are any objects with ``header.stamp`` carrying ``sec`` and ``nanosec`` (a
``builtin_interfaces/Time``) or ``nanoseconds`` (an ``rclpy.time.Time``), so the logic is unit-tested with plain
objects. :class:`SyncMonitor` diagnoses streams that never synchronise (stamps that never match, a silent input).

Differences from message_filters (documented, deliberate): the approximate policy picks, among the candidate sets
that include the newest message, the one with the smallest stamp spread (message_filters' Python version takes
the first it finds), and it accepts a spread equal to ``slop`` (message_filters requires it to be strictly
smaller), so ``slop = 0`` behaves like exact synchronisation instead of never matching.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

NANOSECONDS_PER_SECOND = 1_000_000_000


def stamp_nanoseconds(msg: Any) -> int:
    """``msg.header.stamp`` as integer nanoseconds.

    Raises:
        ValueError: if the message has no ``header.stamp`` with ``sec``/``nanosec`` or ``nanoseconds``.
    """
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is None:
        raise ValueError(f"{type(msg).__name__} has no header.stamp to synchronise on")
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    try:
        return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)
    except AttributeError as error:
        raise ValueError(f"header.stamp of {type(msg).__name__} has neither sec/nanosec nor nanoseconds") from error


class SimpleFilter:
    """A message source other filters connect to (``message_filters.SimpleFilter``'s API).

    ``registerCallback(cb, *args)`` returns a connection id; ``signalMessage(*msgs)`` calls every registered
    ``cb(*msgs, *args)`` in registration order. The node feeds one of these per input topic from its own
    subscriptions, so it can recreate subscriptions (QoS changes) without touching the synchroniser.
    """

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._next_connection = 0

    def registerCallback(self, cb: Callable[..., Any], *args: Any) -> int:  # noqa: N802 (message_filters' name)
        """Call ``cb(*msgs, *args)`` on every output; returns the connection id."""
        connection = self._next_connection
        self._next_connection += 1
        self.callbacks[connection] = (cb, args)
        return connection

    def unregisterCallback(self, connection: int) -> None:  # noqa: N802
        """Remove a callback registered with :meth:`registerCallback` (unknown ids are ignored)."""
        self.callbacks.pop(connection, None)

    def signalMessage(self, *msgs: Any) -> None:  # noqa: N802
        """Pass ``msgs`` to every registered callback."""
        for cb, args in list(self.callbacks.values()):
            cb(*(msgs + args))


class Subscriber(SimpleFilter):
    """A ROS subscription as a filter input (``message_filters.Subscriber(node, msg_type, topic, qos_profile)``).

    Provided for API parity; the stereo node itself feeds :class:`SimpleFilter` inputs from subscriptions it
    manages (see ``stereo_depth_ros.ros.qos.AdaptiveSubscription``).
    """

    def __init__(self, node: Any, msg_type: type, topic: str, qos_profile: Any = 10, **kwargs: Any) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile, **kwargs)

    def getTopic(self) -> str:  # noqa: N802
        """The topic name given at construction."""
        return self.topic


class TimeSynchronizer(SimpleFilter):
    """Emit one message per input when all inputs have a message with exactly the same ``header.stamp``.

    Args:
        fs: the input filters (anything with ``registerCallback(cb, *args)``).
        queue_size: how many messages (distinct stamps) each input keeps while waiting, >= 1.

    Raises:
        ValueError: for fewer than one input or ``queue_size`` < 1.
    """

    def __init__(self, fs: Sequence[Any], queue_size: int) -> None:
        super().__init__()
        if len(fs) < 1:
            raise ValueError("a synchroniser needs at least one input")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.queue_size = int(queue_size)
        self.lock = threading.Lock()
        self.connectInput(fs)

    def connectInput(self, fs: Sequence[Any]) -> None:  # noqa: N802
        """Register on the inputs; input ``i`` feeds queue ``i`` (a dict stamp -> message)."""
        self.queues: list[dict[int, Any]] = [{} for _ in fs]
        self.input_connections = [f.registerCallback(self.add, queue, index)
                                  for index, (f, queue) in enumerate(zip(fs, self.queues))]

    def _store(self, msg: Any, queue: dict[int, Any]) -> int:
        stamp = stamp_nanoseconds(msg)
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]
        return stamp

    def add(self, msg: Any, my_queue: dict[int, Any], my_queue_index: int | None = None) -> None:
        """Store ``msg`` in its input queue and emit every stamp now present in all queues, oldest first."""
        ready = []
        with self.lock:
            self._store(msg, my_queue)
            common = set(self.queues[0]).intersection(*self.queues[1:])
            for stamp in sorted(common):
                ready.append([queue.pop(stamp) for queue in self.queues])
        for msgs in ready:  # outside the lock, so a callback may feed the synchroniser again
            self.signalMessage(*msgs)


class ApproximateTimeSynchronizer(TimeSynchronizer):
    """Emit one message per input when their stamps lie within ``slop`` seconds of each other.

    On each arrival the new message is combined with the queued messages of the other inputs whose stamps are
    within ``slop`` of it; among the combinations whose overall spread (newest - oldest stamp) is at most
    ``slop``, the one with the smallest spread is emitted and its messages removed.

    Args:
        fs: the input filters.
        queue_size: messages kept per input, >= 1.
        slop: largest stamp difference in seconds, >= 0.
        allow_headerless: accepted for API compatibility; messages without ``header.stamp`` are rejected either
            way (the node only synchronises stamped messages).

    Raises:
        ValueError: for ``slop`` < 0 (and see :class:`TimeSynchronizer`).
    """

    def __init__(self, fs: Sequence[Any], queue_size: int, slop: float, allow_headerless: bool = False) -> None:
        if not float(slop) >= 0:
            raise ValueError(f"slop must be a number of seconds >= 0, got {slop}")
        self.slop = float(slop)
        self.slop_ns = int(round(float(slop) * NANOSECONDS_PER_SECOND))
        self.allow_headerless = allow_headerless
        super().__init__(fs, queue_size)

    def add(self, msg: Any, my_queue: dict[int, Any], my_queue_index: int | None = None) -> None:
        """Store ``msg`` and emit the tightest set within ``slop`` that contains it, if there is one."""
        if my_queue_index is None:
            my_queue_index = next(i for i, q in enumerate(self.queues) if q is my_queue)
        chosen = None
        with self.lock:
            stamp = self._store(msg, my_queue)
            if stamp not in my_queue:  # dropped at once: older than everything in a full queue
                return
            candidates = []
            for index, queue in enumerate(self.queues):
                if index == my_queue_index:
                    candidates.append([stamp])
                    continue
                near = [s for s in queue if abs(s - stamp) <= self.slop_ns]
                if not near:
                    return
                candidates.append(near)
            best_spread = None
            for combination in itertools.product(*candidates):
                spread = max(combination) - min(combination)
                if spread <= self.slop_ns and (best_spread is None or spread < best_spread):
                    best_spread, chosen = spread, combination
            if chosen is None:
                return
            msgs = [queue.pop(s) for queue, s in zip(self.queues, chosen)]
        self.signalMessage(*msgs)


def message_filters_available() -> bool:
    """True when the ROS ``message_filters`` Python package can be imported."""
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


def make_synchronizer(inputs: Sequence[Any], approximate: bool, queue_size: int, slop: float,
                      use_message_filters: bool | None = None) -> Any:
    """A time synchroniser over ``inputs``: message_filters' when importable, else ours (same semantics).

    Args:
        inputs: filters with ``registerCallback`` (e.g. :class:`SimpleFilter`).
        approximate: approximate policy (``slop``) instead of exact stamps.
        queue_size: messages kept per input, >= 1.
        slop: seconds, >= 0 (approximate policy only).
        use_message_filters: None = when importable; False forces ours; True requires message_filters.

    Returns:
        An object with ``registerCallback(cb)``; ``cb`` receives one message per input, in input order.

    Raises:
        ValueError: for invalid ``queue_size``/``slop``.
        ImportError: if ``use_message_filters`` is True and the package is missing.
    """
    if int(queue_size) < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    if approximate and not float(slop) >= 0:
        raise ValueError(f"slop must be a number of seconds >= 0, got {slop}")
    if use_message_filters is None:
        use_message_filters = message_filters_available()
    if use_message_filters:
        import message_filters
        if approximate:
            return message_filters.ApproximateTimeSynchronizer(list(inputs), int(queue_size), float(slop))
        return message_filters.TimeSynchronizer(list(inputs), int(queue_size))
    if approximate:
        return ApproximateTimeSynchronizer(list(inputs), int(queue_size), float(slop))
    return TimeSynchronizer(list(inputs), int(queue_size))


class SyncMonitor:
    """Notices inputs that do not synchronise: a silent input, or stamps that never match.

    Feed every arriving message with :meth:`received` and every emitted set with :meth:`synchronized`. Once some
    input has received more than ``queue_size`` messages since the last emitted set, the synchroniser's queue has
    turned over without a match; :meth:`diagnose` then returns a message naming the silent inputs, or the latest
    stamp per input and their spread (field ``header.stamp``). Message counts, not wall time, decide, so the
    check works the same for live cameras and bag replay at any rate.

    Args:
        names: one name per input (the topic names), for messages.
        queue_size: the synchroniser's queue size.
        approximate, slop: the policy in use (for the hint in the message).
    """

    def __init__(self, names: Sequence[str], queue_size: int, approximate: bool = False,
                 slop: float = 0.0) -> None:
        self.names = list(names)
        self.queue_size = int(queue_size)
        self.approximate = approximate
        self.slop = float(slop)
        self.counts = [0] * len(self.names)
        self.latest_stamps: list[int | None] = [None] * len(self.names)
        self.sets = 0

    def received(self, index: int, msg: Any) -> None:
        """Count a message that arrived on input ``index``."""
        self.counts[index] += 1
        try:
            self.latest_stamps[index] = stamp_nanoseconds(msg)
        except ValueError:
            pass

    def synchronized(self) -> None:
        """A set was emitted: restart the counts."""
        self.sets += 1
        self.counts = [0] * len(self.names)

    def diagnose(self) -> str | None:
        """None while synchronisation looks healthy, else a message naming the problem.

        After a report the counts restart, so a persistent problem is reported once per queue turnover.
        """
        if max(self.counts) <= self.queue_size:
            return None
        counts = self.counts
        self.counts = [0] * len(self.names)
        return self._describe(counts)

    def _describe(self, counts: list[int]) -> str:
        silent = [name for name, count in zip(self.names, counts) if count == 0]
        if silent:
            busiest = self.names[counts.index(max(counts))]
            return (f"no synchronized input set: {max(counts)} messages on {busiest} but none on "
                    f"{', '.join(silent)} since the last set")
        stamps = [s for s in self.latest_stamps if s is not None]
        spread = (max(stamps) - min(stamps)) / NANOSECONDS_PER_SECOND if stamps else float("nan")
        described = ", ".join(f"{name} {stamp / NANOSECONDS_PER_SECOND:.6f}"
                              for name, stamp in zip(self.names, self.latest_stamps) if stamp is not None)
        policy = (f"approximate sync with slop {self.slop} s" if self.approximate
                  else "exact sync (stamps must be equal; consider approximate_sync)")
        return (f"no synchronized input set after {max(counts)} messages: field 'header.stamp' does not "
                f"match across inputs ({policy}); latest stamps: {described} (spread {spread:.6f} s)")
