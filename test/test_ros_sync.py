"""Time synchronisation (stereo_depth_ros.ros.sync) with plain objects carrying ``header.stamp``.

The same behaviour tests run on our synchronisers and, when it is importable, on message_filters' (the node uses
message_filters when present), so "same semantics" is checked rather than assumed.
"""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from stereo_depth_ros.ros import sync
from stereo_depth_ros.ros.sync import SimpleFilter, SyncMonitor, make_synchronizer, stamp_nanoseconds

NAMES = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")
IMPLEMENTATIONS = [pytest.param(False, id="ours"),
                   pytest.param(True, id="message_filters",
                                marks=pytest.mark.skipif(not sync.message_filters_available(),
                                                         reason="message_filters is not installed"))]


def msg(source: str, seconds: float):
    """A plain message: ``header.stamp`` with sec/nanosec like builtin_interfaces/Time, plus its source."""
    total = round(seconds * 1e9)
    return SimpleNamespace(source=source,
                           header=SimpleNamespace(stamp=SimpleNamespace(sec=total // 10**9, nanosec=total % 10**9)))


class Harness:
    """Four inputs, one synchroniser, the emitted sets as lists of (source, seconds)."""

    def __init__(self, approximate=False, queue_size=5, slop=0.0, use_message_filters=False):
        self.inputs = [SimpleFilter() for _ in NAMES]
        self.synchronizer = make_synchronizer(self.inputs, approximate, queue_size, slop, use_message_filters)
        self.sets = []
        self.synchronizer.registerCallback(self._on_set)

    def _on_set(self, *msgs):
        self.sets.append([(m.source, stamp_nanoseconds(m) / 1e9) for m in msgs])

    def feed(self, index, seconds):
        self.inputs[index].signalMessage(msg(NAMES[index], seconds))


def test_stamp_nanoseconds_reads_builtin_and_rclpy_style_stamps():
    assert stamp_nanoseconds(msg("x", 3.25)) == 3_250_000_000
    rclpy_like = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(nanoseconds=42)))
    assert stamp_nanoseconds(rclpy_like) == 42
    with pytest.raises(ValueError, match="header.stamp"):
        stamp_nanoseconds(SimpleNamespace(data=1))


@pytest.mark.parametrize("use_message_filters", IMPLEMENTATIONS)
def test_exact_sync_matches_out_of_order_arrivals(use_message_filters):
    harness = Harness(queue_size=5, use_message_filters=use_message_filters)
    arrivals = [(i, t) for t in (1.0, 1.1, 1.2) for i in range(4)]
    random.Random(3).shuffle(arrivals)
    for index, seconds in arrivals:
        harness.feed(index, seconds)
    assert len(harness.sets) == 3
    for emitted in harness.sets:
        assert [source for source, _ in emitted] == list(NAMES)  # input order, whatever the arrival order
        assert len({seconds for _, seconds in emitted}) == 1  # one stamp per set
    assert sorted(s[0][1] for s in harness.sets) == [1.0, 1.1, 1.2]


@pytest.mark.parametrize("use_message_filters", IMPLEMENTATIONS)
def test_exact_sync_skips_a_stamp_with_a_missing_message_and_goes_on(use_message_filters):
    harness = Harness(queue_size=3, use_message_filters=use_message_filters)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        for index in range(4):
            if not (t == 2.0 and index == 1):  # the right image at t = 2 is lost
                harness.feed(index, t)
    assert [s[0][1] for s in harness.sets] == [1.0, 3.0, 4.0, 5.0, 6.0]
    # The orphans of t = 2 were pushed out by queue_size, they cannot pile up.
    assert all(len(queue) <= 3 for queue in harness.synchronizer.queues)


@pytest.mark.parametrize("use_message_filters", IMPLEMENTATIONS)
def test_exact_sync_never_matches_different_stamps(use_message_filters):
    harness = Harness(queue_size=4, use_message_filters=use_message_filters)
    for t in range(10):
        for index in range(4):
            harness.feed(index, t + (0.001 if index == 1 else 0.0))
    assert harness.sets == []
    assert all(len(queue) <= 4 for queue in harness.synchronizer.queues)


@pytest.mark.parametrize("use_message_filters", IMPLEMENTATIONS)
def test_approximate_sync_matches_within_slop_and_not_beyond(use_message_filters):
    harness = Harness(approximate=True, queue_size=5, slop=0.02, use_message_filters=use_message_filters)
    offsets = (0.0, 0.005, 0.0, 0.005)  # right camera 5 ms late: within slop
    for t in (1.0, 1.1):
        for index in (3, 1, 0, 2):
            harness.feed(index, t + offsets[index])
    assert [[round(s, 3) for _, s in emitted] for emitted in harness.sets] == [
        [1.0, 1.005, 1.0, 1.005], [1.1, 1.105, 1.1, 1.105]]
    for index in range(4):  # 50 ms apart: beyond slop
        harness.feed(index, 2.0 + (0.05 if index == 1 else 0.0))
    assert len(harness.sets) == 2


def test_approximate_sync_picks_the_tightest_set_out_of_order():
    harness = Harness(approximate=True, queue_size=5, slop=0.05)
    harness.feed(1, 1.04)
    harness.feed(1, 1.00)  # out of order; the closer partner for the others
    harness.feed(2, 1.01)
    harness.feed(3, 1.00)
    harness.feed(0, 1.00)
    assert [[round(s, 3) for _, s in emitted] for emitted in harness.sets] == [[1.0, 1.0, 1.01, 1.0]]
    assert list(harness.synchronizer.queues[1]) == [1_040_000_000]  # the other one waits for its own partners


def test_approximate_sync_with_zero_slop_behaves_like_exact():
    exact, approximate = Harness(queue_size=5), Harness(approximate=True, queue_size=5, slop=0.0)
    arrivals = [(i, t + (0.001 if (i, t) == (2, 2.0) else 0.0)) for t in (1.0, 2.0, 3.0) for i in range(4)]
    random.Random(7).shuffle(arrivals)
    for index, seconds in arrivals:
        exact.feed(index, seconds)
        approximate.feed(index, seconds)
    assert sorted(map(str, exact.sets)) == sorted(map(str, approximate.sets))
    assert len(exact.sets) == 2


def test_invalid_settings_are_rejected():
    inputs = [SimpleFilter(), SimpleFilter()]
    with pytest.raises(ValueError, match="queue_size"):
        make_synchronizer(inputs, False, 0, 0.0, use_message_filters=False)
    with pytest.raises(ValueError, match="slop"):
        make_synchronizer(inputs, True, 5, -1.0, use_message_filters=False)


def test_simple_filter_passes_extra_arguments_and_unregisters():
    source, seen = SimpleFilter(), []
    connection = source.registerCallback(lambda m, tag: seen.append((m, tag)), "a")
    source.signalMessage(1)
    source.unregisterCallback(connection)
    source.signalMessage(2)
    assert seen == [(1, "a")]


def test_sync_monitor_reports_stamps_that_never_match():
    monitor = SyncMonitor(NAMES, queue_size=3)
    reports = []
    for t in range(9):
        for index in range(4):
            monitor.received(index, msg(NAMES[index], t + (0.25 if index == 1 else 0.0)))
        reports.append(monitor.diagnose())
    # Reported once the queues have turned over (4 > queue_size messages), then once per turnover.
    assert [t for t, report in enumerate(reports) if report] == [3, 7]
    assert "header.stamp" in reports[3] and "right/image_rect 3.250000" in reports[3]
    assert "spread 0.250000 s" in reports[3] and "approximate_sync" in reports[3]


def test_sync_monitor_names_a_silent_input_and_stays_quiet_when_healthy():
    monitor = SyncMonitor(NAMES, queue_size=2)
    for t in range(3):
        for index in (0, 1, 2):  # right/camera_info never arrives
            monitor.received(index, msg(NAMES[index], t))
    assert "none on right/camera_info" in monitor.diagnose()
    healthy = SyncMonitor(NAMES, queue_size=2)
    for t in range(10):
        for index in range(4):
            healthy.received(index, msg(NAMES[index], t))
        healthy.synchronized()
        assert healthy.diagnose() is None


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_every_arrival_order_gives_one_set(order):
    harness = Harness(queue_size=2)
    for index in order:
        harness.feed(index, 7.5)
    assert len(harness.sets) == 1 and [source for source, _ in harness.sets[0]] == list(NAMES)


def test_subscriber_feeds_a_synchronizer_like_message_filters_subscriber():
    class FakeNode:
        def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
            self.callbacks = getattr(self, "callbacks", {})
            self.callbacks[topic] = callback
            return SimpleNamespace(topic=topic, qos=qos_profile)

    node = FakeNode()
    subscribers = [sync.Subscriber(node, object, name, qos_profile=5) for name in NAMES[:2]]
    assert subscribers[0].getTopic() == NAMES[0] and subscribers[0].sub.qos == 5
    synchronizer = sync.TimeSynchronizer(subscribers, queue_size=2)
    sets = []
    synchronizer.registerCallback(lambda a, b: sets.append((a.source, b.source)))
    node.callbacks[NAMES[1]](msg("right", 1.0))
    node.callbacks[NAMES[0]](msg("left", 1.0))
    assert sets == [("left", "right")]
