"""Replay a stereo bag through the stereo node over real ROS 2 topics, record its outputs and evaluate them.

``stereo-depth-ros replay BAG --out DIR`` (:func:`replay_bag`):

1. checks the bag (:func:`stereo_depth_ros.data.bags.inspect_stereo_bag`: stereo topics present, not truncated);
2. starts the nodes of the parameters file in this process (:func:`stereo_depth_ros.ros.bringup.start_nodes`,
   namespace ``/stereo``) and a replay node, all in one rclpy context on one ``MultiThreadedExecutor``;
3. publishes the bag's messages on their recorded topics (reliable QoS, depth 10, so subscribers in other
   processes receive them too) with their recorded header stamps: each message's CDR bytes are deserialized with
   ``rclpy.serialization.deserialize_message`` and published. Pacing: the bag's rate times ``rate`` (``rate`` None
   or 0: as fast as the node keeps up); in both cases, after each stereo pair the replay waits (bounded by
   ``frame_timeout_s``) until the node's outputs for that stamp have arrived, so no frame is dropped by
   over-running the node;
4. records ``/stereo/disparity``, ``depth``, ``points2`` (and ``disparity/stage_N`` when the node publishes
   them) as raw serialized messages into ``DIR/outputs`` (rosbag2 MCAP; log time = header stamp, so the outputs
   line up with the input bag's timeline in ``ros2 bag play`` and Foxglove);
5. writes ``DIR/report.json``, ``DIR/report.md`` and ``DIR/contact_sheet.png``: frames in and out, dropped
   frames, latency (publish of the pair's last image to receipt of the frame's last output) p50/p95/max,
   throughput, and, when the bag has ``/stereo/gt/depth``, depth MAE/RMSE (mm) and disparity EPE (px) against
   the ground truth (:mod:`stereo_depth_ros.evaluation.metrics`).
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from tqdm import tqdm

from stereo_depth_ros.data import bags
from stereo_depth_ros.data.bags import (DISPARITY_TYPE, GT_DEPTH_TOPIC, IMAGE_TYPE, LEFT_IMAGE_TOPIC,
                                        POINT_CLOUD_TYPE, RIGHT_IMAGE_TOPIC, RawBagRecorder)
from stereo_depth_ros.evaluation import metrics
from stereo_depth_ros.geometry import depth_to_disparity
from stereo_depth_ros.ros import bringup_spec
from stereo_depth_ros.ros.bringup import Bringup, start_nodes

OUTPUT_TOPICS = {"disparity": DISPARITY_TYPE, "depth": IMAGE_TYPE, "points2": POINT_CLOUD_TYPE}
INPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
OUTPUT_QOS_BEST_EFFORT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
MATCH_TIMEOUT_S = 30.0
RELIABLE_INPUT_TIMEOUT_S = 5.0
CONTACT_SHEET_FRAMES = 4


@dataclass
class _Received:
    """Output arrivals, filled by subscription callbacks (executor threads), read by the replay loop."""

    topics: tuple[str, ...]
    condition: threading.Condition = field(default_factory=threading.Condition)
    arrivals: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, topic: str, stamp_ns: int, when: float) -> None:
        with self.condition:
            self.arrivals[stamp_ns].setdefault(topic, when)
            self.counts[topic] += 1
            self.condition.notify_all()

    def complete(self, stamp_ns: int) -> bool:
        return all(t in self.arrivals.get(stamp_ns, {}) for t in self.topics)

    def wait(self, stamp_ns: int, timeout_s: float, give_up=None) -> bool:
        """Wait until every output of ``stamp_ns`` arrived; False on time-out or when ``give_up()`` (polled
        every 50 ms) becomes true."""
        deadline = time.monotonic() + timeout_s
        with self.condition:
            while not self.complete(stamp_ns):
                left = deadline - time.monotonic()
                if left <= 0 or (give_up is not None and give_up()):
                    return False
                self.condition.wait(min(left, 0.05))
        return True


class _NodeProgress:
    """How many input sets the stereo nodes skipped, read from their ``counters``
    (:class:`~stereo_depth_ros.ros.stereo_node.StereoDepthNode` keeps them); lets the replay stop waiting for a
    frame the node skipped instead of waiting for the time-out."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = [n for n in nodes if isinstance(getattr(n, "counters", None), dict)]

    def skipped(self) -> int:
        return sum(n.counters.get("skipped", 0) for n in self.nodes)

    def problems(self) -> dict:
        """Problems the nodes counted, by kind, and the last message."""
        counts: dict[str, int] = defaultdict(int)
        last = None
        for node in self.nodes:
            for kind, count in getattr(node, "problems", {}).items():
                counts[kind] += count
            last = getattr(node, "last_problem", None) or last
        return {"counts": dict(counts), "last": last}


def _message_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(0.01)


def _node_publisher(nodes: list[Node], topic: str):
    for node in nodes:
        for publisher in node.publishers:
            if publisher.topic_name == topic:
                return publisher
    return None


def parse_overrides(items: list[str] | None) -> dict:
    """``["method=sgbm", "max_depth=0.3"]`` -> ``{"method": "sgbm", "max_depth": 0.3}`` (values parsed as YAML
    scalars, as ``ros2 param set`` does).

    Raises:
        ValueError: for an item without ``=`` or with an empty name.
    """
    import yaml

    overrides = {}
    for item in items or []:
        name, separator, text = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"parameter override {item!r} must look like NAME=VALUE")
        value = yaml.safe_load(text) if text.strip() else ""
        overrides[name.strip()] = value
    return overrides


def replay_bag(bag: str | Path, out_dir: str | Path, params_file: str | Path | None = None,
               rate: float | None = None, overrides: dict | None = None, frame_timeout_s: float = 60.0,
               first_frame_timeout_s: float = 300.0, overwrite: bool = False, progress: bool = True,
               context: Context | None = None) -> dict:
    """Replay a stereo bag through the nodes of a parameters file and write the report (see the module doc).

    Args:
        bag: stereo bag folder (``stereo-depth-ros make-bag``, or any bag with the four ``/stereo`` input topics).
        out_dir: output folder; gets ``outputs/`` (bag), ``report.json``, ``report.md``, ``contact_sheet.png``.
        params_file: ROS 2 parameters YAML (None: the package's ``config/endoscope.yaml``).
        rate: playback speed factor relative to the bag's stamps (2 = twice as fast); None or 0 = as fast as
            the node keeps up.
        overrides: node parameters that win over the file, e.g. ``{"method": "sgbm"}``.
        frame_timeout_s: longest wait for one frame's outputs before counting it dropped.
        first_frame_timeout_s: the same for the first frame (the network may prepare itself on it).
        overwrite: replace the outputs of an earlier replay in ``out_dir``.
        progress: show a tqdm progress bar.
        context: rclpy context to use (None: a new one, shut down at the end).

    Returns:
        the report (the content of ``report.json``).

    Raises:
        FileNotFoundError: if the bag or the parameters file does not exist.
        ValueError: for a bag without stereo topics, a truncated bag, bad parameters, or existing outputs
            without ``overwrite``.
        RuntimeError: if the nodes never subscribe to the inputs or never advertise their outputs.
    """
    bag = Path(bag)
    out_dir = Path(out_dir)
    if rate is not None and (not math.isfinite(rate) or rate < 0):
        raise ValueError(f"rate must be a positive speed factor (or 0 for as fast as possible), got {rate}")
    summary = bags.inspect_stereo_bag(bag)
    outputs_path = out_dir / "outputs"
    if outputs_path.exists() and not overwrite:
        raise ValueError(f"{outputs_path} already exists (an earlier replay); choose another --out or overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)

    ns = bringup_spec.DEFAULT_NAMESPACE
    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(context=context)
    bringup: Bringup | None = None
    recorder: RawBagRecorder | None = None
    replay_node: Node | None = None
    try:
        tick = time.perf_counter()
        bringup = start_nodes(params_file, namespace=ns, context=context, overrides=overrides)
        # The bag's topics are /stereo/...: the nodes run in /stereo (a params file written for another
        # namespace is refused by start_nodes with a message saying so).
        startup_s = time.perf_counter() - tick
        replay_node = Node("stereo_bag_replay", context=context)
        bringup.executor.add_node(replay_node)
        node_parameters = {node.get_fully_qualified_name(): {name: p.value for name, p in
                                                             node.get_parameters_by_prefix("").items()}
                           for node in bringup.nodes}

        output_topics = {f"{ns}/{name}": msgtype for name, msgtype in OUTPUT_TOPICS.items()}
        for node in bringup.nodes:
            for publisher in node.publishers:
                if publisher.topic_name.startswith(f"{ns}/disparity/stage_"):
                    output_topics[publisher.topic_name] = DISPARITY_TYPE
        input_topics = {t: m for t, (m, count) in summary.topics.items()
                        if t in bags.INPUT_TOPICS + (GT_DEPTH_TOPIC,) and count}
        publishers = {t: replay_node.create_publisher(_message_class(m), t, INPUT_QOS) for t, m in input_topics.items()}
        received = _Received(topics=tuple(output_topics))
        recorder = RawBagRecorder(outputs_path, output_topics, overwrite=overwrite)

        def make_callback(topic: str):
            def callback(raw: bytes) -> None:
                when = time.perf_counter()
                stamp = bags.header_stamp_from_cdr(raw)
                recorder.write(topic, stamp, raw)
                received.add(topic, stamp, when)
            return callback

        subscriptions = []  # kept referenced while recording
        for topic, msgtype in output_topics.items():
            publisher = _node_publisher(bringup.nodes, topic)
            if publisher is None:
                raise RuntimeError(f"no started node publishes {topic}")
            # reliable, unless the node publishes best effort (output_qos sensor_data), which a reliable
            # subscription would not match
            qos = OUTPUT_QOS if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE \
                else OUTPUT_QOS_BEST_EFFORT
            subscriptions.append(replay_node.create_subscription(_message_class(msgtype), topic,
                                                                 make_callback(topic), qos, raw=True))
        _wait_for_graph(bringup, publishers, output_topics)

        progress_of_nodes = _NodeProgress(bringup.nodes)
        report = _replay_loop(summary, publishers, input_topics, received, rate, frame_timeout_s,
                              first_frame_timeout_s, progress, progress_of_nodes)
        report["startup_s"] = round(startup_s, 3)
        report["node_problems"] = progress_of_nodes.problems()
    finally:
        if recorder is not None:
            recorder.close()
        if bringup is not None:
            bringup.shutdown()
        if replay_node is not None:
            replay_node.destroy_node()
        if own_context and context.ok():
            rclpy.shutdown(context=context)

    report.update({
        "bag": str(bag), "outputs_bag": str(outputs_path),
        "params_file": str(bringup.plans[0].params_file), "namespace": ns,
        "nodes": node_parameters, "rate": rate, "image_size": [summary.width, summary.height],
        "calibration": None if summary.calibration is None else {
            "focal_px": summary.calibration.focal_px, "cx": summary.calibration.cx, "cy": summary.calibration.cy,
            "baseline_m": summary.calibration.baseline_m},
        "output_topics": sorted(output_topics),
    })
    evaluation = evaluate_outputs(bag, outputs_path, f"{ns}/disparity", f"{ns}/depth", summary)
    report.update(evaluation)
    report["contact_sheet"] = str(write_contact_sheet(bag, outputs_path, out_dir / "contact_sheet.png",
                                                      f"{ns}/disparity", f"{ns}/depth"))
    (out_dir / "report.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report))
    return report


def _wait_for_graph(bringup: Bringup, publishers: dict, output_topics: dict) -> None:
    """Wait until the nodes subscribe to every input we publish (reliably, for nodes that adapt their QoS)
    and every output publisher has matched our recording subscription."""
    for topic, publisher in publishers.items():
        if topic == GT_DEPTH_TOPIC:
            continue
        _wait_until(lambda p=publisher: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                    f"a node subscribes to {topic} (are the bag's topics the ones the nodes subscribe to?)")
    for topic in output_topics:
        publisher = _node_publisher(bringup.nodes, topic)
        if publisher is None:
            raise RuntimeError(f"no started node publishes {topic}")
        _wait_until(lambda p=publisher: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                    f"the recorder's subscription to {topic} matches the node's publisher")
    # A node with input_qos 'auto' first subscribes best effort and switches to reliable once it sees our
    # reliable publishers; waiting for the switch avoids losing the first frames during it.
    for node in bringup.nodes:
        reliability = getattr(node, "input_reliability", None)
        if reliability is None or node.get_parameter("input_qos").value != "auto":
            continue
        node_inputs = [t for t in publishers if t != GT_DEPTH_TOPIC]
        relative = {t: t.rsplit("/", 2)[-2] + "/" + t.rsplit("/", 1)[-1] for t in node_inputs}
        try:
            _wait_until(lambda: all(reliability(relative[t]) == ReliabilityPolicy.RELIABLE for t in node_inputs),
                        RELIABLE_INPUT_TIMEOUT_S, "the node's input subscriptions are reliable")
        except (RuntimeError, KeyError):
            pass  # best effort still receives; the bounded wait per frame keeps the node from being over-run
        for topic, publisher in publishers.items():
            if topic != GT_DEPTH_TOPIC:
                _wait_until(lambda p=publisher: p.get_subscription_count() > 0, MATCH_TIMEOUT_S,
                            f"a node subscribes to {topic}")


def _replay_loop(summary: bags.StereoBagSummary, publishers: dict, input_topics: dict, received: _Received,
                 rate: float | None, frame_timeout_s: float, first_frame_timeout_s: float, progress: bool,
                 nodes: _NodeProgress) -> dict:
    """Publish the bag in log-time order. A frame is a left and right image of one stamp; once both are out, the
    frame is outstanding, and before the next image of another stamp is published the loop waits (bounded)
    for the outstanding frame's outputs. Waiting only then lets the messages that follow the pair in the bag
    (camera_info or ground truth recorded a little later) go out first."""
    classes = {t: _message_class(m) for t, m in input_topics.items()}
    published = defaultdict(int)
    pending_pairs: dict[int, set[str]] = defaultdict(set)
    frames: list[dict] = []
    outstanding: dict | None = None
    anchor_wall = anchor_log = None
    bar = tqdm(total=summary.frames, desc="replay", unit="frame", disable=not progress)

    def finish(frame: dict) -> None:
        timeout = first_frame_timeout_s if not frames else frame_timeout_s
        skipped_before = frame.pop("skipped_before")
        frame["complete"] = received.wait(frame["stamp_ns"], timeout,
                                          give_up=lambda: nodes.skipped() > skipped_before)
        arrivals = dict(received.arrivals.get(frame["stamp_ns"], {}))
        frame["latency_ms"] = {t: 1000.0 * (w - frame["published_s"]) for t, w in arrivals.items()}
        frames.append(frame)
        bar.update()

    start = time.perf_counter()
    try:
        for message in bags.iter_bag_messages(summary.path, list(input_topics)):
            if rate:
                now = time.perf_counter()
                if anchor_wall is None:
                    anchor_wall, anchor_log = now, message.log_time_ns
                target = anchor_wall + (message.log_time_ns - anchor_log) / 1e9 / rate
                if target > now:
                    time.sleep(target - now)
                elif now - target > 0.05:  # the node made us late: keep the spacing from here on
                    anchor_wall, anchor_log = now, message.log_time_ns
            msg = deserialize_message(message.raw, classes[message.topic])
            is_image = message.topic in (LEFT_IMAGE_TOPIC, RIGHT_IMAGE_TOPIC)
            stamp = bags.stamp_to_ns(msg.header.stamp) if is_image else None
            if is_image and outstanding is not None and stamp != outstanding["stamp_ns"]:
                finish(outstanding)
                outstanding = None
            publishers[message.topic].publish(msg)
            published[message.topic] += 1
            if not is_image:
                continue
            pending_pairs[stamp].add(message.topic)
            if len(pending_pairs[stamp]) == 2:
                del pending_pairs[stamp]
                outstanding = {"stamp_ns": stamp, "published_s": time.perf_counter(),
                               "skipped_before": nodes.skipped()}
        if outstanding is not None:
            finish(outstanding)
    finally:
        bar.close()
    # Outputs that arrive late (after a time-out) are still recorded; give them a moment.
    deadline = time.monotonic() + min(frame_timeout_s, 5.0)
    while time.monotonic() < deadline and not all(received.complete(f["stamp_ns"]) for f in frames):
        time.sleep(0.05)
    wall_s = time.perf_counter() - start
    return _timing_report(frames, received, published, pending_pairs, wall_s)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None, "mean": None}
    array = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p95": round(float(np.percentile(array, 95)), 2),
            "max": round(float(array.max()), 2), "mean": round(float(array.mean()), 2)}


def _timing_report(frames: list[dict], received: _Received, published: dict, pending_pairs: dict,
                   wall_s: float) -> dict:
    complete = [f for f in frames if f["complete"]]
    frame_latency = [max(f["latency_ms"].values()) for f in complete]
    by_topic = {t: _percentiles([f["latency_ms"][t] for f in frames if t in f["latency_ms"]])
                for t in received.topics}
    throughput = 0.0
    if complete:
        first = frames[0]["published_s"]
        last = max(f["published_s"] + max(f["latency_ms"].values()) / 1000.0 for f in complete)
        throughput = len(complete) / max(last - first, 1e-9)
    input_stamps = {f["stamp_ns"] for f in frames}
    output_stamps = set(received.arrivals)
    return {
        "frames_in": len(frames),
        "frames_out": sum(1 for f in frames if received.complete(f["stamp_ns"])),
        "dropped_frames": sum(1 for f in frames if not received.complete(f["stamp_ns"])),
        "late_frames": len(frames) - len(complete) - sum(1 for f in frames if not received.complete(f["stamp_ns"])),
        "unpaired_images": sum(len(v) for v in pending_pairs.values()),
        "messages_in": dict(published),
        "messages_out": {t: received.counts.get(t, 0) for t in received.topics},
        "stamps_preserved": output_stamps <= input_stamps,
        "unknown_output_stamps": len(output_stamps - input_stamps),
        "latency_ms": _percentiles(frame_latency),
        "latency_ms_by_topic": by_topic,
        "throughput_fps": round(throughput, 3),
        "wall_time_s": round(wall_s, 3),
        "per_frame": [{"stamp_ns": f["stamp_ns"], "complete": received.complete(f["stamp_ns"]),
                       "latency_ms": round(max(f["latency_ms"].values()), 2) if f["complete"] else None}
                      for f in frames],
    }


# ----------------------------------------------------------------------------------------------- evaluation


def _disparity_array(msg) -> np.ndarray:
    """Disparity (px) of a rosbags ``stereo_msgs/DisparityImage``; values below ``min_disparity`` (the
    stereo_image_proc convention for invalid) and non-finite ones become NaN."""
    disparity = bags.image_to_array(msg.image).astype(np.float32)
    invalid = ~np.isfinite(disparity) | (disparity < msg.min_disparity) | (disparity <= 0)
    disparity[invalid] = np.nan
    return disparity


def evaluate_outputs(input_bag: str | Path, outputs_bag: str | Path, disparity_topic: str, depth_topic: str,
                     summary: bags.StereoBagSummary | None = None) -> dict:
    """Score the recorded outputs against ``/stereo/gt/depth`` of the input bag, frame by frame (by stamp).

    Per frame: the ground-truth disparity is ``f * B / Z_gt`` (f, B from the camera_info); the disparity topic
    gives EPE (px), bad-2 px and D1 (%) and density (%) (:func:`stereo_depth_ros.evaluation.metrics.stereo_metrics`);
    the depth topic gives MAE and RMSE in mm (:func:`~stereo_depth_ros.evaluation.metrics.depth_errors_mm` on
    ``f * B / Z_pred``, i.e. ``|Z_pred - Z_gt|`` exactly) and its density. The report gives means over frames.

    Returns:
        ``{"metrics": {...} or None, "per_frame_metrics": [...]}``; ``metrics`` is None without ground truth.

    Raises:
        ValueError: if a bag cannot be read.
    """
    summary = summary or bags.inspect_stereo_bag(input_bag)
    if not summary.has_gt_depth or summary.calibration is None:
        return {"metrics": None, "per_frame_metrics": []}
    f, b = summary.calibration.focal_px, summary.calibration.baseline_m
    gt = bags.read_topic_by_stamp(input_bag, GT_DEPTH_TOPIC)
    disparities = bags.read_topic_by_stamp(outputs_bag, disparity_topic)
    depths = bags.read_topic_by_stamp(outputs_bag, depth_topic)
    per_frame = []
    for stamp in sorted(gt):
        if stamp not in disparities and stamp not in depths:
            continue
        gt_depth = bags.image_to_array(bags.deserialize(gt[stamp], IMAGE_TYPE))
        gt_disparity = depth_to_disparity(gt_depth, f, b)
        row: dict = {"stamp_ns": stamp}
        if stamp in disparities:
            disparity = _disparity_array(bags.deserialize(disparities[stamp], DISPARITY_TYPE))
            scores = metrics.stereo_metrics(disparity, gt_disparity)
            row.update({k: scores[k] for k in ("epe_px", "bad2_pct", "d1_pct", "density_pct")})
        if stamp in depths:
            depth = bags.image_to_array(bags.deserialize(depths[stamp], IMAGE_TYPE))
            depth_as_disparity = depth_to_disparity(depth, f, b)
            row["mae_mm"], row["rmse_mm"] = metrics.depth_errors_mm(depth_as_disparity, gt_disparity, f, b)
            row["depth_density_pct"] = metrics.density_pct(depth_as_disparity, gt_disparity)
        per_frame.append(row)
    keys = ("mae_mm", "rmse_mm", "epe_px", "bad2_pct", "d1_pct", "density_pct", "depth_density_pct")
    means = {}
    for key in keys:
        values = [r[key] for r in per_frame if r.get(key) is not None and math.isfinite(r[key])]
        means[key] = round(float(np.mean(values)), 4) if values else None
    means["frames_evaluated"] = len(per_frame)
    means["gt_frames"] = len(gt)
    return {"metrics": means, "per_frame_metrics": per_frame}


def write_contact_sheet(input_bag: str | Path, outputs_bag: str | Path, path: str | Path, disparity_topic: str,
                        depth_topic: str, frames: int = CONTACT_SHEET_FRAMES) -> Path:
    """A PNG with up to ``frames`` evenly spaced frames, one row each: left image | disparity (px) | depth (m).

    Frames without outputs show the left image only. Uses matplotlib (Agg).

    Returns:
        the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lefts = bags.read_topic_by_stamp(input_bag, LEFT_IMAGE_TOPIC)
    disparities = bags.read_topic_by_stamp(outputs_bag, disparity_topic)
    depths = bags.read_topic_by_stamp(outputs_bag, depth_topic)
    stamps = sorted(lefts)
    if len(stamps) > frames:
        stamps = [stamps[int(round(i))] for i in np.linspace(0, len(stamps) - 1, frames)]
    rows = max(len(stamps), 1)
    figure, axes = plt.subplots(rows, 3, figsize=(12, 3.2 * rows), squeeze=False)
    for row, stamp in enumerate(stamps):
        left = bags.image_to_array(bags.deserialize(lefts[stamp], IMAGE_TYPE))
        axes[row, 0].imshow(left[..., ::-1] if left.ndim == 3 else left, cmap=None if left.ndim == 3 else "gray")
        axes[row, 0].set_title(f"left, stamp {stamp / 1e9:.3f} s", fontsize=9)
        if stamp in disparities:
            disparity = _disparity_array(bags.deserialize(disparities[stamp], DISPARITY_TYPE))
            shown = axes[row, 1].imshow(np.ma.masked_invalid(disparity), cmap="magma")
            figure.colorbar(shown, ax=axes[row, 1], fraction=0.046, pad=0.02)
        axes[row, 1].set_title("disparity (px)" if stamp in disparities else "no disparity", fontsize=9)
        if stamp in depths:
            depth = bags.image_to_array(bags.deserialize(depths[stamp], IMAGE_TYPE))
            finite = depth[np.isfinite(depth)]
            vmax = float(np.percentile(finite, 98)) if finite.size else None
            shown = axes[row, 2].imshow(np.ma.masked_invalid(depth), cmap="viridis", vmin=0, vmax=vmax)
            figure.colorbar(shown, ax=axes[row, 2], fraction=0.046, pad=0.02)
        axes[row, 2].set_title("depth (m), NaN blank" if stamp in depths else "no depth", fontsize=9)
        for axis in axes[row]:
            axis.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def report_markdown(report: dict) -> str:
    """The human-readable ``report.md`` of a replay report."""
    def fmt(value, digits=2):
        return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else \
            f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    latency = report["latency_ms"]
    playback = f"{report['rate']}x the bag rate" if report["rate"] else "as fast as the node keeps up"
    node = next(iter(report.get("nodes", {}).values()), {})
    lines = [
        "# Stereo bag replay report", "",
        f"- bag: `{report['bag']}` ({report['image_size'][0]}x{report['image_size'][1]})",
        f"- outputs: `{report['outputs_bag']}` (rosbag2 MCAP: {', '.join(report['output_topics'])})",
        f"- parameters: `{report['params_file']}`; method {node.get('method', 'n/a')}, device "
        f"{node.get('device', 'n/a')}",
        f"- playback: {playback}",
        "", "| quantity | value |", "|---|---|",
        f"| frames in (stereo pairs published) | {report['frames_in']} |",
        f"| frames out (all outputs received) | {report['frames_out']} |",
        f"| dropped frames | {report['dropped_frames']} |",
        f"| output stamps = input stamps | {report['stamps_preserved']} |",
        f"| latency p50 / p95 / max (ms) | {fmt(latency['p50'])} / {fmt(latency['p95'])} / {fmt(latency['max'])} |",
        f"| throughput (frames/s) | {fmt(report['throughput_fps'])} |",
        f"| node start-up (s) | {fmt(report.get('startup_s'))} |",
        f"| replay wall time (s) | {fmt(report['wall_time_s'])} |",
    ]
    for topic, count in report["messages_out"].items():
        lines.append(f"| messages on {topic} | {count} |")
    problems = report.get("node_problems") or {}
    if problems.get("counts"):
        lines.append(f"| problems reported by the node | {problems['counts']}; last: {problems['last']} |")
    scores = report.get("metrics")
    if scores:
        lines += ["", f"## Accuracy against `/stereo/gt/depth` ({scores['frames_evaluated']} frames, means over "
                      f"frames)", "", "| metric | value |", "|---|---|",
                  f"| depth MAE (mm) | {fmt(scores['mae_mm'])} |",
                  f"| depth RMSE (mm) | {fmt(scores['rmse_mm'])} |",
                  f"| disparity EPE (px), GT disparity = f B / Z_gt | {fmt(scores['epe_px'], 3)} |",
                  f"| bad 2 px (%) | {fmt(scores['bad2_pct'])} |",
                  f"| D1 (%) | {fmt(scores['d1_pct'])} |",
                  f"| disparity density (% of GT pixels) | {fmt(scores['density_pct'])} |",
                  f"| depth density (% of GT pixels) | {fmt(scores['depth_density_pct'])} |"]
    else:
        lines += ["", "No ground truth (`/stereo/gt/depth`) in the bag: no accuracy metrics."]
    lines += ["", "Latency: from publishing a pair's last image to receiving the frame's last output "
                  "(disparity, depth, points2), in this process. Throughput: frames out divided by the time from "
                  "the first publish to the last output.", "", "![contact sheet](contact_sheet.png)", ""]
    return "\n".join(lines)
