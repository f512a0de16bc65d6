"""Quality of service of the stereo node's subscriptions and publishers.

Input (parameter ``input_qos``):

- ``auto`` (default): match the publishers the way rosbag2 does (``Rosbag2QoS::adapt_request_to_offers``):
  reliable when every discovered publisher of the topic is reliable, best effort when any is best effort (a best
  effort subscription connects to both kinds). It matters for large images between processes: measured with
  Fast DDS, 1280x553 bgr8 images at 10 Hz arrive 0/50 on a best effort subscription from a reliable publisher in
  another process and 50/50 when both are reliable. While no publisher is known the subscription is best effort
  (it connects to whatever appears); the node re-checks on a timer and recreates the subscription when the
  decision changes (:class:`AdaptiveSubscription`).
- ``sensor_data``: always best effort (rclpy's ``qos_profile_sensor_data`` policies).
- ``reliable``: always reliable (connects only to reliable publishers).

Durability is always volatile (it connects to volatile and transient-local publishers; old frames are of no use to
a stereo node), history keep-last with the node's ``queue_size`` as depth.

Output (parameter ``output_qos``): ``reliable`` (default: RViz's default subscriptions and best effort subscribers
both connect) or ``sensor_data`` (best effort), keep-last with depth ``output_history_depth``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

INPUT_QOS_MODES = ("auto", "sensor_data", "reliable")
OUTPUT_QOS_MODES = ("reliable", "sensor_data")
DEFAULT_DEPTH = 5


def _profile(reliability: ReliabilityPolicy, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def choose_qos(publisher_reliabilities: Iterable[ReliabilityPolicy], depth: int = DEFAULT_DEPTH) -> QoSProfile:
    """The subscription QoS that matches these publishers (rosbag2's rule for reliability).

    Args:
        publisher_reliabilities: the reliability of every publisher of the topic (``TopicEndpointInfo.qos_profile
            .reliability``); anything other than RELIABLE counts as best effort.
        depth: keep-last history depth, >= 1.

    Returns:
        Reliable keep-last volatile profile when there is at least one publisher and all are reliable; best effort
        otherwise (also when there are none yet: a best effort subscription connects to any publisher).

    Raises:
        ValueError: for ``depth`` < 1.
    """
    if int(depth) < 1:
        raise ValueError(f"QoS history depth must be >= 1, got {depth}")
    reliabilities = list(publisher_reliabilities)
    if reliabilities and all(r == ReliabilityPolicy.RELIABLE for r in reliabilities):
        return _profile(ReliabilityPolicy.RELIABLE, depth)
    return _profile(ReliabilityPolicy.BEST_EFFORT, depth)


def input_qos(mode: str, publisher_reliabilities: Iterable[ReliabilityPolicy] = (),
              depth: int = DEFAULT_DEPTH) -> QoSProfile:
    """Subscription QoS for an ``input_qos`` mode (``auto`` uses :func:`choose_qos`).

    Raises:
        ValueError: for a mode not in :data:`INPUT_QOS_MODES` or ``depth`` < 1.
    """
    if mode not in INPUT_QOS_MODES:
        raise ValueError(f"input_qos must be one of {INPUT_QOS_MODES}, got {mode!r}")
    if mode == "auto":
        return choose_qos(publisher_reliabilities, depth)
    if int(depth) < 1:
        raise ValueError(f"QoS history depth must be >= 1, got {depth}")
    reliability = ReliabilityPolicy.RELIABLE if mode == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return _profile(reliability, depth)


def output_qos(mode: str, depth: int = DEFAULT_DEPTH) -> QoSProfile:
    """Publisher QoS for an ``output_qos`` mode: reliable or best effort, keep-last ``depth``, volatile.

    Raises:
        ValueError: for a mode not in :data:`OUTPUT_QOS_MODES` or ``depth`` < 1.
    """
    if mode not in OUTPUT_QOS_MODES:
        raise ValueError(f"output_qos must be one of {OUTPUT_QOS_MODES}, got {mode!r}")
    if int(depth) < 1:
        raise ValueError(f"QoS history depth must be >= 1, got {depth}")
    reliability = ReliabilityPolicy.RELIABLE if mode == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return _profile(reliability, depth)


def reliability_name(reliability: ReliabilityPolicy) -> str:
    """``"reliable"`` or ``"best_effort"`` (or the policy's lower-case name) for logs and docs."""
    return ReliabilityPolicy(reliability).name.lower()


class AdaptiveSubscription:
    """A subscription whose QoS follows ``input_qos`` and, in ``auto`` mode, the topic's publishers.

    Call :meth:`check` periodically (the node does so from a timer): in ``auto`` mode it reads the publishers with
    ``node.get_publishers_info_by_topic`` (which expands and remaps the name like the subscription does) and, when
    their number (or their reliabilities) changed since the last check, decides again with :func:`choose_qos`; if
    the reliability changes,
    it creates a new subscription and destroys the old one (messages in flight may be lost once).

    Args:
        node: the ``rclpy.node.Node`` that owns the subscription.
        msg_type: message class.
        topic: topic name as the node uses it (relative names follow namespace and remapping).
        callback: called with each message.
        mode: one of :data:`INPUT_QOS_MODES`.
        depth: keep-last history depth.
        on_change: optional ``fn(topic, old_profile, new_profile, publisher_count)`` called after a change.
    """

    def __init__(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None], mode: str = "auto",
                 depth: int = DEFAULT_DEPTH,
                 on_change: Callable[[str, QoSProfile | None, QoSProfile, int], None] | None = None) -> None:
        self.node = node
        self.msg_type = msg_type
        self.topic = topic
        self.callback = callback
        self.on_change = on_change
        self.mode = mode
        self.depth = int(depth)
        self.publisher_count: int | None = None
        self._publisher_signature: list[int] = []
        self.profile: QoSProfile | None = None
        self.subscription = None
        self.recreations = 0
        self.configure(mode, depth)

    def publisher_reliabilities(self) -> list[ReliabilityPolicy]:
        """Reliability of every publisher currently discovered on the topic."""
        return [info.qos_profile.reliability for info in self.node.get_publishers_info_by_topic(self.topic)]

    def configure(self, mode: str, depth: int) -> bool:
        """Apply a new ``input_qos`` mode and depth now (recreating the subscription if its QoS changes).

        Returns:
            True if the subscription was (re)created.

        Raises:
            ValueError: for an invalid mode or depth.
        """
        reliabilities = self.publisher_reliabilities()
        profile = input_qos(mode, reliabilities, depth)
        self.mode, self.depth = mode, int(depth)
        self.publisher_count = len(reliabilities)
        self._publisher_signature = sorted(int(r) for r in reliabilities)
        return self._apply(profile)

    def check(self) -> bool:
        """Re-read the publishers (``auto`` mode only) and adapt; returns True if the subscription was recreated."""
        if self.mode != "auto":
            return False
        reliabilities = self.publisher_reliabilities()
        signature = sorted(int(r) for r in reliabilities)
        if len(reliabilities) == self.publisher_count and signature == self._publisher_signature:
            return False
        self.publisher_count = len(reliabilities)
        self._publisher_signature = signature
        return self._apply(choose_qos(reliabilities, self.depth))

    def _apply(self, profile: QoSProfile) -> bool:
        if (self.subscription is not None and self.profile is not None
                and profile.reliability == self.profile.reliability and profile.depth == self.profile.depth):
            return False
        old_profile, old_subscription = self.profile, self.subscription
        self.subscription = self.node.create_subscription(self.msg_type, self.topic, self.callback, profile)
        self.profile = profile
        if old_subscription is not None:
            self.node.destroy_subscription(old_subscription)
            self.recreations += 1
        if self.on_change is not None:
            self.on_change(self.topic, old_profile, profile, self.publisher_count or 0)
        return True

    @property
    def reliability(self) -> ReliabilityPolicy:
        """Reliability of the current subscription."""
        return self.profile.reliability

    def destroy(self) -> None:
        """Destroy the subscription (idempotent)."""
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None
