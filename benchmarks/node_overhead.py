"""Overhead of the stereo ROS node beside the estimator's inference, at 1280x1024 by default.

Runs the real node (rclpy, Fast DDS, in one process) on scikit-image's Motorcycle pair resized to the requested
size and reports, as the median over ``--repeats`` frames after ``--warmup`` frames:

- ``deserialize in``: rclpy deserialising the two incoming images and camera_infos (what a subscription does
  before the node's callback runs);
- ``synchronize``: the exact-time synchroniser matching the four inputs;
- ``convert in``: Image -> BGR arrays, size checks, camera_info -> calibration (the node's own timing);
- ``inference``: the estimator;
- ``build disparity``: the safe-output masks (``min_disparity``, the band with no match) and the DisparityImage;
- ``depth``: disparity -> depth with the core's ``disparity_to_depth`` (for ``depth`` and ``points2``);
- ``build depth`` / ``build points2``: the output messages (points2 reprojects the depth straight into its
  buffer, ``conversions.make_point_cloud2_from_depth``);
- ``publish``: ``publish()`` of the outputs (serialisation and hand-over to DDS) that have a subscriber
  (``--outputs``, default all three; the node builds only those);
- ``end-to-end``: from publishing the four inputs on the node's topics to receiving the last subscribed output in
  the same process (includes middleware transport both ways).

The node overhead is the sum of every row but inference, measured in the same run, frame by frame.

Usage::

    python benchmarks/node_overhead.py                      # coarse-to-fine network, 1280x1024, markdown table
    python benchmarks/node_overhead.py --outputs disparity     # what a consumer of the disparity alone costs
    python benchmarks/node_overhead.py --method sgbm --json

No timing is asserted anywhere; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("coarse-to-fine", "sgbm"), default="coarse-to-fine")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--output-stage", type=int, choices=range(4), default=None, metavar="{0,1,2,3}",
                        help="the node's output_stage (default: the node's default, 2)")
    parser.add_argument("--width", type=int, default=1280, help="image width in pixels (default 1280)")
    parser.add_argument("--height", type=int, default=1024, help="image height in pixels (default 1024)")
    parser.add_argument("--encoding", choices=("bgr8", "rgb8", "mono8"), default="bgr8")
    parser.add_argument("--repeats", type=int, default=10, help="timed frames (median reported, default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    parser.add_argument("--outputs", default="disparity,depth,points2",
                        help="comma-separated outputs with a subscriber (the node builds only those; default "
                             "%(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    args.outputs = [topic.strip() for topic in args.outputs.split(",") if topic.strip()]
    if not args.outputs or set(args.outputs) - {"disparity", "depth", "points2"}:
        parser.error("--outputs takes a comma-separated selection of disparity, depth, points2")
    if args.repeats < 1 or args.warmup < 0 or args.width < 16 or args.height < 16:
        parser.error("need --repeats >= 1, --warmup >= 0 and an image of at least 16x16 pixels")
    return args


def motorcycle_pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's Motorcycle pair (BGR uint8) resized to width x height (the package's one loader)."""
    from stereo_depth_ros.evaluation.benchmark import benchmark_input

    return benchmark_input(height, width)


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header
    from stereo_msgs.msg import DisparityImage
    from tqdm import tqdm

    from stereo_depth_ros.geometry import StereoCameraModel
    from stereo_depth_ros.ros import conversions
    from stereo_depth_ros.ros.stereo_node import StereoDepthNode
    from stereo_depth_ros.ros.sync import SimpleFilter, make_synchronizer

    left_bgr, right_bgr = motorcycle_pair(args.width, args.height)
    if args.encoding == "rgb8":
        left_px, right_px = left_bgr[..., ::-1], right_bgr[..., ::-1]
    elif args.encoding == "mono8":
        left_px, right_px = (cv2.cvtColor(i, cv2.COLOR_BGR2GRAY) for i in (left_bgr, right_bgr))
    else:
        left_px, right_px = left_bgr, right_bgr
    camera = StereoCameraModel(fx=0.8 * args.width, cx=args.width / 2, cy=args.height / 2, baseline_m=0.1)

    def frame(index: int) -> list:
        header = Header(stamp=Time(sec=1000 + index), frame_id="left_optical_frame")
        return [conversions.numpy_to_image(left_px, args.encoding, header),
                conversions.numpy_to_image(right_px, args.encoding, header),
                *conversions.stereo_camera_info_messages(camera, args.width, args.height, header)]

    context = Context()
    rclpy.init(context=context, domain_id=150 + os.getpid() % 80)
    node = helper = executor = None
    try:
        node = StereoDepthNode(context=context, namespace="/benchmark", parameter_overrides=[
            Parameter("method", value=args.method), Parameter("device", value=args.device),
            Parameter("input_qos", value="reliable"),
            *([] if args.output_stage is None else [Parameter("output_stage", value=args.output_stage)])])
        helper = rclpy.create_node("benchmark_helper", context=context, namespace="/benchmark")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(helper)
        received: dict[tuple[str, int], float] = {}
        types = {"disparity": DisparityImage, "depth": Image, "points2": PointCloud2}
        for topic in args.outputs:
            # raw=True: the helper receives the serialised bytes and reads only the stamp, so deserialising a
            # 21 MB cloud in this process does not compete with the node for the interpreter.
            helper.create_subscription(types[topic], topic, lambda data, t=topic: received.setdefault(
                (t, _serialized_stamp_sec(data)), time.perf_counter()), 5, raw=True)
        publishers = [helper.create_publisher(type(m), topic, QoSProfile(depth=5))
                      for topic, m in zip(StereoDepthNode.INPUT_TOPICS, frame(0))]

        def spin_until(predicate, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while not predicate() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.01)
            return predicate()

        if not spin_until(lambda: all(p.get_subscription_count() for p in publishers)
                          and all(node.output_subscription_count(t) for t in args.outputs),
                          30.0):
            raise RuntimeError("the benchmark's helper node and the stereo node did not discover each other")

        rows: dict[str, list[float]] = {}
        total = args.warmup + args.repeats
        for index in tqdm(range(total), desc=f"{args.method} {args.width}x{args.height}", file=sys.stderr):
            msgs = frame(index + 1)
            # rclpy's receive side: deserialising what arrives on the four topics.
            serialized = [serialize_message(m) for m in msgs]
            tick = time.perf_counter()
            for data, msg in zip(serialized, msgs):
                deserialize_message(data, type(msg))
            deserialize_s = time.perf_counter() - tick
            # The synchroniser on its own (exact policy, as the node uses by default).
            inputs = [SimpleFilter() for _ in msgs]
            sync = make_synchronizer(inputs, approximate=False, queue_size=5, slop=0.0)
            sync.registerCallback(lambda *m: None)
            tick = time.perf_counter()
            for source, msg in zip(inputs, msgs):
                source.signalMessage(msg)
            sync_s = time.perf_counter() - tick
            # The real path: publish on the node's topics, spin until points2 comes back.
            tick = time.perf_counter()
            for publisher, msg in zip(publishers, msgs):
                publisher.publish(msg)
            keys = [(topic, msgs[0].header.stamp.sec) for topic in args.outputs]
            if not spin_until(lambda: all(key in received for key in keys), 120.0):
                raise RuntimeError(f"no {args.outputs} for frame {index}: "
                                   f"{node.last_problem or 'no problem reported'}")
            end_to_end_s = max(received[key] for key in keys) - tick
            node.wait_until_idle(60.0)  # the worker publishes points2 before it records the frame's timing
            if index < args.warmup:
                continue
            timing = dict(node.last_timing, deserialize_in=deserialize_s, synchronize=sync_s, end_to_end=end_to_end_s)
            for key, value in timing.items():
                rows.setdefault(key, []).append(value)
        medians = {key: statistics.median(values) * 1000.0 for key, values in rows.items()}
        return {
            "method": args.method, "estimator": node.estimator.name,
            "output_stage": node.settings["output_stage"] if args.method != "sgbm" else None,
            "backend": getattr(node.estimator, "backend", "opencv"),
            "device": str(getattr(node.estimator, "device", "cpu")), "width": args.width, "height": args.height,
            "encoding": args.encoding, "repeats": args.repeats, "warmup": args.warmup, "outputs": args.outputs,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "median_ms": medians,
        }
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        for n in (node, helper):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=context)


def _serialized_stamp_sec(data: bytes) -> int:
    """``header.stamp.sec`` of a serialised message whose first field is a std_msgs/Header (CDR: a 4-byte
    encapsulation header, whose second byte is 1 for little endian, then the int32 seconds)."""
    return int.from_bytes(data[4:8], "little" if data[1] & 1 else "big", signed=True)


ROWS = (("deserialize_in", "deserialize in (rclpy, 2 images + 2 camera_info)"),
        ("synchronize", "synchronize (4 inputs, exact)"),
        ("convert_in", "convert in (Image -> BGR, camera_info -> calibration)"),
        ("inference", "inference"),
        ("build_disparity", "build disparity (safe-output masks, DisparityImage)"),
        ("depth", "depth (core disparity_to_depth, REP-117)"),
        ("build_depth", "build depth (Image 32FC1)"),
        ("build_points2", "build points2 (reprojection into the PointCloud2 xyz+rgb message)"),
        ("publish", "publish (the subscribed outputs)"))


def markdown(result: dict) -> str:
    medians = {key: result["median_ms"].get(key, 0.0) for key, _ in ROWS} | result["median_ms"]
    overhead = sum(medians[key] for key, _ in ROWS if key != "inference")
    stage = "" if result.get("output_stage") is None else f", output stage {result['output_stage']}"
    lines = [f"Node overhead, {result['method']}{stage} ({result['backend']}, {result['device']}), "
             f"{result['width']}x{result['height']} {result['encoding']}, outputs subscribed: "
             f"{', '.join(result['outputs'])}; median of {result['repeats']} frames after {result['warmup']} warm-up; "
             f"{result['machine']}", "",
             "| step | median (ms) |", "|---|---:|"]
    lines += [f"| {label} | {medians[key]:.2f} |" for key, label in ROWS]
    lines += [f"| **node overhead (all but inference)** | **{overhead:.2f}** "
              f"({100.0 * overhead / medians['inference']:.1f} % of inference) |",
              f"| inside the node's callback (total) | {medians['total']:.2f} |",
              f"| end-to-end (publish inputs -> last output received, same process) | {medians['end_to_end']:.2f} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
