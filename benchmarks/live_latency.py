"""Live latency of the stereo node fed by a camera in another process, as a user's camera would feed it.

A child process (``--role camera``) publishes scikit-image's Motorcycle pair resized to 1280x1024 (``bgr8``) with
its camera_infos at ``--rate`` Hz (default 10), reliable QoS with history depth 1, stamped with the system clock
at publication. This process runs ``stereo_depth_node`` (default parameters: the network, ``input_qos`` auto) on
a ``SingleThreadedExecutor`` and, in two phases:

1. ``--idle-seconds`` with nobody subscribed to any output: the CPU time this process used (the node should
   neither subscribe its inputs nor infer);
2. ``--seconds`` with a subscriber on ``disparity`` (in this process): for every received disparity, latency =
   receipt time - ``header.stamp`` (camera publication, same machine clock: transport both ways, waiting and
   processing); the node's own processing time per set (``node.statistics``, worker time from taking the set to
   publishing), its dropped sets, and the output interval.

With ``--super-resolution MODEL`` the camera's pair is the low-resolution input of the chain that
``super_resolution:=true`` starts (bringup: ``super_resolution_node`` in front of ``stereo_depth_node``, both in this
process on one ``MultiThreadedExecutor``); the stereo node then works on the super-resolved pair and the table adds
the SR node's processing time.

Usage::

    python benchmarks/live_latency.py                  # 10 Hz camera, 20 s idle, 40 s with a subscriber
    python benchmarks/live_latency.py --json
    python benchmarks/live_latency.py --super-resolution stereo-sr-x2 --width 320 --height 256 --rate 2

No timing is asserted anywhere; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("node", "camera"), default="node", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=10.0, help="camera frame rate in Hz (default 10)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="phase 1 length (default 20)")
    parser.add_argument("--seconds", type=float, default=40.0, help="phase 2 length (default 40)")
    parser.add_argument("--method", choices=("coarse-to-fine", "sgbm"), default="coarse-to-fine")
    parser.add_argument("--output-stage", type=int, choices=range(4), default=None, metavar="{0,1,2,3}",
                        help="the stereo node's output_stage (default: the node's default, 2)")
    parser.add_argument("--super-resolution", metavar="MODEL", default=None,
                        help="chain super_resolution_node (this model, e.g. stereo-sr-x2) in front of the stereo "
                             "node, as super_resolution:=true does; the camera's pair is its low-resolution input")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: from the process id)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.idle_seconds < 0:
        parser.error("need --rate > 0, --seconds > 0 and --idle-seconds >= 0")
    return args


def camera(args: argparse.Namespace) -> int:
    """The camera process: publish the pair at ``args.rate`` Hz until killed."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from node_overhead import motorcycle_pair

    from stereo_depth_ros.geometry import StereoCameraModel
    from stereo_depth_ros.ros import conversions

    left, right = motorcycle_pair(args.width, args.height)
    rclpy.init(domain_id=args.domain_id)
    node = rclpy.create_node("camera", namespace="/stereo")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    topics = (("left/image_rect", Image), ("right/image_rect", Image), ("left/camera_info", CameraInfo),
              ("right/camera_info", CameraInfo))
    publishers = [node.create_publisher(msg_type, topic, qos) for topic, msg_type in topics]
    camera = StereoCameraModel(fx=0.8 * args.width, cx=args.width / 2, cy=args.height / 2, baseline_m=0.005)
    period = 1.0 / args.rate
    next_time = time.monotonic()
    try:
        while rclpy.ok():
            header = Header(stamp=node.get_clock().now().to_msg(), frame_id="stereo_left_optical_frame")
            infos = conversions.stereo_camera_info_messages(camera, args.width, args.height, header)
            msgs = [conversions.numpy_to_image(left, "bgr8", header),
                    conversions.numpy_to_image(right, "bgr8", header), *infos]
            for publisher, msg in zip(publishers, msgs):
                publisher.publish(msg)
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))
    except KeyboardInterrupt:
        pass
    except Exception:  # terminated: rclpy's signal handler shut the context down under a publish
        if rclpy.ok():
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run(args: argparse.Namespace) -> dict:
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from stereo_msgs.msg import DisparityImage

    from stereo_depth_ros.ros.stereo_node import StereoDepthNode

    domain_id = args.domain_id if args.domain_id is not None else 150 + os.getpid() % 80
    command = [sys.executable, os.path.abspath(__file__), "--role", "camera", "--rate", str(args.rate), "--width",
               str(args.width), "--height", str(args.height), "--domain-id", str(domain_id)]
    camera_process = subprocess.Popen(command)
    rclpy.init(domain_id=domain_id)
    sr_node = None
    if args.super_resolution:
        import tempfile

        from stereo_depth_ros.ros.bringup import start_nodes

        params = Path(tempfile.mkdtemp()) / "chain.yaml"
        stage = "" if args.output_stage is None else f"    output_stage: {args.output_stage}\n"
        params.write_text(f"/**/stereo_depth_node:\n  ros__parameters:\n    method: {args.method}\n{stage}"
                          f"/**/super_resolution_node:\n  ros__parameters:\n    model: {args.super_resolution}\n")
        bringup = start_nodes(params, namespace="/stereo", optional=("super_resolution",), spin=False)
        executor, (node, sr_node) = bringup.executor, bringup.nodes
    else:
        overrides = [Parameter("method", value=args.method)]
        if args.output_stage is not None:
            overrides.append(Parameter("output_stage", value=args.output_stage))
        node = StereoDepthNode(namespace="/stereo", parameter_overrides=overrides)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
    probe = rclpy.create_node("latency_probe", namespace="/stereo")
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        # Warm-up: let the camera start and discovery settle; then phase 1 (nobody subscribed).
        time.sleep(3.0)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        time.sleep(args.idle_seconds)
        idle = {"cpu_percent_of_a_core": 100.0 * (time.process_time() - cpu_before)
                / max(time.monotonic() - wall_before, 1e-9),
                "input_sets": node.counters["sets"] + (sr_node.counters["sets"] if sr_node else 0),
                "inputs_subscribed": node.inputs_subscribed or bool(sr_node and sr_node.inputs_subscribed)}

        received: list[tuple[float, float]] = []  # (receipt wall time, stamp seconds)

        def on_disparity(msg: DisparityImage) -> None:
            received.append((time.time(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

        probe.create_subscription(DisparityImage, "disparity", on_disparity, 5)
        # The node subscribes within a lazy-check period; its first frame prepares the backend (ONNX cache or
        # export): start counting after the first output.
        deadline = time.monotonic() + 300.0
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        if not received:
            raise RuntimeError(f"no disparity within 300 s: {node.last_problem or 'no problem reported'}")
        time.sleep(2.0)
        start_index = len(received)
        counters_before = dict(node.counters)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        time.sleep(args.seconds)
        cpu_percent = 100.0 * (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
        window = received[start_index:]
        latencies = [receipt - stamp for receipt, stamp in window]
        intervals = np.diff([receipt for receipt, _ in window])
        snapshot = node.statistics.snapshot(advance_period=False)
        sets = node.counters["sets"] - counters_before.get("sets", 0)
        dropped = node.counters["dropped"] - counters_before.get("dropped", 0)
        chain = {}
        if sr_node is not None:
            sr_snapshot = sr_node.statistics.snapshot(advance_period=False)
            chain = {"super_resolution": args.super_resolution, "sr_backend": sr_node.estimator.backend,
                     "sr_processing_p50_ms": 1000.0 * sr_snapshot.processing_p50_s,
                     "sr_dropped_sets_total": sr_node.counters["dropped"], "sr_problems": dict(sr_node.problems)}
        return {
            **chain,
            "method": args.method, "backend": node.estimator.backend, "width": args.width, "height": args.height,
            "output_stage": node.settings["output_stage"] if args.method != "sgbm" else None,
            "rate_hz": args.rate, "seconds": args.seconds,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "idle": idle,
            "outputs": len(window), "input_sets": sets, "dropped_sets": dropped,
            "latency_p50_ms": 1000.0 * float(np.percentile(latencies, 50)),
            "latency_p95_ms": 1000.0 * float(np.percentile(latencies, 95)),
            "output_interval_median_ms": 1000.0 * float(statistics.median(intervals)) if len(intervals) else None,
            "processing_p50_ms": 1000.0 * snapshot.processing_p50_s,
            "node_latency_p95_ms": 1000.0 * snapshot.latency_p95_s,
            "cpu_percent_of_a_core": cpu_percent,
            "problems": dict(node.problems),
        }
    finally:
        camera_process.terminate()
        camera_process.wait(10)
        executor.shutdown(timeout_sec=2.0)
        for each in (node, sr_node, probe):
            if each is not None:
                each.destroy_node()
        rclpy.try_shutdown()


def markdown(result: dict) -> str:
    idle = result["idle"]
    # chained: a set goes through both nodes one after the other, so compare with both processing times
    processing = result["processing_p50_ms"] + result.get("sr_processing_p50_ms", 0.0)
    ratio = result["latency_p95_ms"] / processing
    chain = ""
    sr_rows = []
    if result.get("super_resolution"):
        chain = f" behind {result['super_resolution']} ({result['sr_backend']}, super_resolution_node, same process)"
        sr_rows = [f"| super_resolution_node processing time per set, p50 (ms) | "
                   f"{result['sr_processing_p50_ms']:.0f} |",
                   f"| super_resolution_node dropped sets (whole run) | {result['sr_dropped_sets_total']} |"]
    stage = "" if result.get("output_stage") is None else f", output stage {result['output_stage']}"
    return "\n".join([
        f"Live latency, {result['method']}{stage} ({result['backend']}){chain}, camera in another process publishing "
        f"{result['width']}x{result['height']} bgr8 pairs at {result['rate_hz']:g} Hz (reliable, depth 1); "
        f"{result['machine']}", "",
        "| measure | value |", "|---|---:|",
        *sr_rows,
        f"| nobody subscribed: CPU of the node's process (% of a core) | {idle['cpu_percent_of_a_core']:.1f} |",
        f"| nobody subscribed: input sets received | {idle['input_sets']} |",
        f"| subscriber on disparity: disparities received in {result['seconds']:g} s | {result['outputs']} |",
        f"| input sets received / dropped (older set replaced by a newer one) | {result['input_sets']} / "
        f"{result['dropped_sets']} |",
        f"| input sets per second (the camera sends {result['rate_hz']:g}) | "
        f"{result['input_sets'] / result['seconds']:.1f} |",
        f"| output interval, median (ms) | {result['output_interval_median_ms']:.0f} |",
        f"| node processing time per set, p50 (ms) | {result['processing_p50_ms']:.0f} |",
        f"| latency camera stamp -> disparity received, p50 (ms) | {result['latency_p50_ms']:.0f} |",
        f"| latency camera stamp -> disparity received, p95 (ms) | {result['latency_p95_ms']:.0f} |",
        f"| latency p95 / processing p50{' (both nodes together)' if sr_rows else ''} | {ratio:.2f} |",
        f"| the node's own latency (set received -> published, /diagnostics), p95 (ms) | "
        f"{result['node_latency_p95_ms']:.0f} |",
        f"| CPU of the node's process with a subscriber (% of a core) | {result['cpu_percent_of_a_core']:.0f} |",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "camera":
        return camera(args)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
