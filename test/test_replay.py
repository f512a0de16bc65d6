"""Replay of stereo bags through the real stereo node over ROS 2 topics: frames, stamps, report, output bag."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from stereo_depth_ros import cli
from stereo_depth_ros.data import bag_io, stereo_bag
from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA, load_skimage_motorcycle
from stereo_depth_ros.ros import replay
from stereo_depth_ros.ros.replay import replay_bag

START_NS = 1_700_000_000_000_000_000
FRAMES = 3
SGBM = {"method": "sgbm", "max_disparity": 32, "min_depth": 0.0, "max_depth": 0.0}
OUTPUTS = ("/stereo/disparity", "/stereo/depth", "/stereo/points2")


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> tuple[Path, list[int], stereo_bag.StereoBagSummary]:
    """Motorcycle pair at 1/4 size (185x125), 3 frames at 2 Hz, with ground-truth depth f B / (d + doffs)."""
    left, right, disparity = load_skimage_motorcycle(0.25)
    calibration = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)
    depth = calibration.depth_from_disparity(disparity)
    path = tmp_path_factory.mktemp("bags") / "motorcycle"
    summary = stereo_bag.write_stereo_bag(path, [left] * FRAMES, [right] * FRAMES, calibration,
                                    gt_depths=[depth] * FRAMES, rate_hz=2.0, start_stamp_ns=START_NS)
    return path, [START_NS + i * 500_000_000 for i in range(FRAMES)], summary


def read_outputs(path: Path) -> dict[str, list]:
    """topic -> [(log time, message)] decoded with the definitions stored in the output bag itself."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    result: dict[str, list] = {}
    with Reader(path) as reader:
        for connection in reader.connections:
            store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
            assert connection.digest.startswith("RIHS01_"), "type hash needed by ros2 bag play"
        for connection, timestamp, raw in reader.messages():
            result.setdefault(connection.topic, []).append((timestamp, store.deserialize_cdr(raw,
                                                                                              connection.msgtype)))
    return result


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def check_outputs(out: Path, stamps: list[int]) -> dict[str, list]:
    outputs = read_outputs(out / "outputs")
    assert set(outputs) == set(OUTPUTS)
    for topic in OUTPUTS:
        assert [stamp(m) for _, m in outputs[topic]] == stamps, f"{topic}: the input stamps must be preserved"
        assert [t for t, _ in outputs[topic]] == stamps
    return outputs


def test_replay_sgbm_end_to_end(tmp_path, small_bag):
    bag, stamps, summary = small_bag
    tick = time.perf_counter()
    report = replay_bag(bag, tmp_path, overrides=SGBM, rate=1.0, progress=False)
    elapsed = time.perf_counter() - tick
    assert report["frames_in"] == report["frames_out"] == FRAMES and report["dropped_frames"] == 0
    assert report["messages_out"] == {topic: FRAMES for topic in OUTPUTS}
    assert report["stamps_preserved"] is True and report["pace"] == "lockstep"
    assert report["camera"]["doffs_px"] == pytest.approx(31.086 / 4)
    # paced at the bag's 2 Hz: two frame intervals of 0.5 s at least
    assert report["wall_time_s"] >= 0.95 and elapsed >= 0.95
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"] < 10_000
    assert report["throughput_fps"] > 0
    assert report["nodes"]["/stereo/stereo_depth_node"]["method"] == "sgbm"

    outputs = check_outputs(tmp_path, stamps)
    disparity_msg = outputs["/stereo/disparity"][0][1]
    calibration = summary.calibration
    assert disparity_msg.f == pytest.approx(calibration.fx)
    assert disparity_msg.t == pytest.approx(calibration.baseline_m)
    cloud = outputs["/stereo/points2"][0][1]
    assert (cloud.width, cloud.height) == (summary.width, summary.height)

    # the report's accuracy equals an independent computation from the recorded depth and the ground truth
    gt = {stamp(m): bag_io.image_to_array(m) for _, m in read_outputs(bag)[stereo_bag.GT_DEPTH_TOPIC]}
    errors = []
    for _, msg in outputs["/stereo/depth"]:
        depth = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(msg.height, msg.width)
        truth = gt[stamp(msg)]
        both = np.isfinite(depth) & np.isfinite(truth)
        errors.append(1000 * np.abs(depth[both] - truth[both]).mean())
    metrics = report["metrics"]
    assert metrics["frames_evaluated"] == FRAMES
    assert metrics["mae_mm"] == pytest.approx(np.mean(errors), rel=1e-3)
    assert metrics["rmse_mm"] >= metrics["mae_mm"]
    assert 0 < metrics["epe_px"] < 2.0, "SGBM on the Motorcycle pair is accurate to about half a pixel"
    assert 50 < metrics["density_pct"] <= 100

    saved = json.loads((tmp_path / "report.json").read_text())
    for key in ("frames_in", "frames_out", "dropped_frames", "latency_ms", "throughput_fps", "metrics"):
        assert saved[key] == report[key] or key == "metrics"
    markdown = (tmp_path / "report.md").read_text()
    assert "| dropped frames | 0 |" in markdown and "| pacing | lockstep |" in markdown
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000

    with pytest.raises(ValueError, match="already exists"):
        replay_bag(bag, tmp_path, overrides=SGBM, progress=False)


def test_replay_network(tmp_path, small_bag):
    bag, stamps, summary = small_bag
    report = replay_bag(bag, tmp_path, overrides={"method": "coarse-to-fine", "max_depth": 0.0}, progress=False)
    assert report["frames_in"] == report["frames_out"] == FRAMES and report["dropped_frames"] == 0
    outputs = check_outputs(tmp_path, stamps)
    f, b = summary.calibration.fx, summary.calibration.baseline_m
    for (_, disparity_msg), (_, depth_msg) in zip(outputs["/stereo/disparity"], outputs["/stereo/depth"]):
        image = disparity_msg.image
        disparity = np.frombuffer(bytes(image.data), dtype="<f4").reshape(image.height, image.width)
        depth = np.frombuffer(bytes(depth_msg.data), dtype="<f4").reshape(depth_msg.height, depth_msg.width)
        valid = np.isfinite(disparity) & (disparity > 0)
        assert valid.mean() > 0.9, "the network gives a disparity almost everywhere"
        # DisparityImage holds d - (cx_l - cx_r), so its depth is f t / value (stereo_image_proc's convention)
        np.testing.assert_allclose(depth[valid], f * b / disparity[valid], rtol=1e-4)
    assert report["metrics"]["density_pct"] > 90
    assert report["nodes"]["/stereo/stereo_depth_node"]["method"] == "coarse-to-fine"


def test_replay_camera_info_recorded_after_the_images(tmp_path):
    """Like a live recording: camera_info logged 10 ms after the images of its stamp. The replay must publish
    them before waiting for the frame's outputs (the node needs all four inputs)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    left, right, _ = load_skimage_motorcycle(0.25)
    calibration = SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)
    infos = stereo_bag.stereo_camera_infos(calibration, left.shape[1], left.shape[0])
    store = bag_io.typestore()
    stamps = [START_NS + i * 100_000_000 for i in range(FRAMES)]
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {t: writer.add_connection(t, stereo_bag.TOPIC_TYPES[t], typestore=store)
                       for t in stereo_bag.INPUT_TOPICS}
        for t in stamps:
            for topic, msg, log in (
                    (stereo_bag.LEFT_IMAGE_TOPIC, bag_io.image_message(left, t, "l"), t),
                    (stereo_bag.RIGHT_IMAGE_TOPIC, bag_io.image_message(right, t, "r"), t + 1_000_000),
                    (stereo_bag.LEFT_INFO_TOPIC, stereo_bag.camera_info_message(infos[0], t, "l"), t + 10_000_000),
                    (stereo_bag.RIGHT_INFO_TOPIC, stereo_bag.camera_info_message(infos[1], t, "r"), t + 11_000_000)):
                writer.write(connections[topic], log, store.serialize_cdr(msg, stereo_bag.TOPIC_TYPES[topic]))
    tick = time.perf_counter()
    report = replay_bag(tmp_path / "bag", tmp_path / "out", overrides=SGBM, progress=False,
                        first_frame_timeout_s=20.0, frame_timeout_s=20.0)
    assert report["frames_out"] == FRAMES and report["dropped_frames"] == 0
    assert time.perf_counter() - tick < 15.0, "no frame may wait for a time-out"
    check_outputs(tmp_path / "out", stamps)


def test_replay_bad_bags(tmp_path, small_bag, capsys):
    bag, _, _ = small_bag
    recorder = bag_io.RawBagRecorder(tmp_path / "other", {"/chatter": "std_msgs/msg/String"})
    recorder.close()
    with pytest.raises(ValueError, match="lacks the input topics"):
        replay_bag(tmp_path / "other", tmp_path / "out", progress=False)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for item in bag.iterdir():
        data = item.read_bytes()
        (truncated / item.name).write_bytes(data[: len(data) * 2 // 3] if item.suffix == ".mcap" else data)
    assert cli.main(["replay", str(truncated), "--out", str(tmp_path / "out2"), "--set", "method=sgbm"]) == 2
    error = capsys.readouterr().err
    assert "truncated" in error and "Traceback" not in error
    assert cli.main(["replay", str(bag), "--out", str(tmp_path / "out3"), "--set", "methd=sgbm"]) == 2
    assert "methd" in capsys.readouterr().err


def test_replay_bdis_in_vivo_set_6(tmp_path, shared_data):
    """25 real in-vivo pairs (no calibration: f = 520 px, baseline 5 mm stated) at the bag's 2 Hz, network."""
    images = shared_data / "endoscopic_stereo" / "bdis_invivo" / "6" / "images_rectified"
    if not images.is_dir():
        pytest.skip(f"{images} is absent")
    summary = stereo_bag.make_bag_from_folders(images / "left", images / "right", tmp_path / "bag", focal_px=520.0,
                                         baseline_m=0.005, rate_hz=2.0, start_stamp_ns=START_NS, progress=False)
    assert summary.frames == 25
    tick = time.perf_counter()
    report = replay_bag(tmp_path / "bag", tmp_path / "out", rate=1.0, progress=False)
    elapsed = time.perf_counter() - tick
    print(f"BDIS set 6 replay: {elapsed:.1f} s, latency {report['latency_ms']}, "
          f"throughput {report['throughput_fps']} frames/s, start-up {report['startup_s']} s")
    assert report["frames_in"] == report["frames_out"] == 25 and report["dropped_frames"] == 0
    assert report["messages_out"] == {topic: 25 for topic in OUTPUTS}
    check_outputs(tmp_path / "out", [START_NS + i * 500_000_000 for i in range(25)])
    assert report["metrics"] is None


def test_replay_bag_pace_through_the_stereo_node_on_the_command_line(tmp_path, small_bag):
    bag, stamps, _ = small_bag
    out = tmp_path / "live"
    assert cli.main(["replay", str(bag), "--out", str(out), "--pace", "bag", "--no-progress",
                     *[f"--set={k}={v}" for k, v in SGBM.items()]]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pace"] == "bag" and report["frames_in"] == FRAMES
    assert report["frames_out"] == FRAMES, "SGBM on 185x125 keeps up with 2 Hz"
    assert report["wall_time_s"] >= 0.95, "published at the bag's 2 Hz"
    assert "| pacing | bag |" in (out / "report.md").read_text()
    check_outputs(out, stamps)
    with pytest.raises(ValueError, match="pace must be one of"):
        replay_bag(bag, tmp_path / "x", pace="fast", progress=False)
    with pytest.raises(ValueError, match="lockstep"):
        replay_bag(bag, tmp_path / "x", pace="bag", rate=0.0, progress=False)


# ------------------------------------------------------------------------- any node kind, both pacings

PROCESSING_S = 0.2
ECHO_SPEC = replay.FrameSpec(node_kind="slow_echo_test_node", inputs={"left/image_rect": bag_io.IMAGE_TYPE},
                             frame_topics=("left/image_rect",), outputs={"echo": bag_io.IMAGE_TYPE})


@pytest.fixture(scope="module")
def fast_bag(tmp_path_factory) -> Path:
    """12 tiny frames at 20 Hz: faster than a node that needs 0.2 s per frame."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(12)]
    path = tmp_path_factory.mktemp("bags") / "fast"
    stereo_bag.write_stereo_bag(path, images, images, SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.05), rate_hz=20.0,
                                start_stamp_ns=START_NS)
    return path


def run_slow_echo(bag: Path, out: Path, pace: str) -> dict:
    """Replay through a node of another kind (one image in, one image out, a known 0.2 s per frame, keeping
    only the newest input like the platform's nodes), started by the test, not by bringup."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    class SlowEcho(Node):
        def __init__(self, context):
            super().__init__("slow_echo", namespace="/stereo", context=context)
            self.publisher = self.create_publisher(Image, "echo", 10)
            self.subscription = self.create_subscription(Image, "left/image_rect", self.callback,
                                                         QoSProfile(depth=1))

        def callback(self, msg):
            time.sleep(PROCESSING_S)
            self.publisher.publish(msg)

    context = Context()
    rclpy.init(context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    node = SlowEcho(context)
    executor.add_node(node)
    thread = __import__("threading").Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        replay_input = replay.check_bag(bag, ECHO_SPEC)
        return replay.replay_through_nodes(replay_input, out, [node], executor, ECHO_SPEC, pace=pace,
                                           progress=False)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_lockstep_waits_for_a_slow_node_of_any_kind(tmp_path, fast_bag):
    report = run_slow_echo(fast_bag, tmp_path, "lockstep")
    assert report["pace"] == "lockstep" and report["node_kind"] == "slow_echo_test_node"
    assert report["frames_in"] == report["frames_out"] == 12 and report["dropped_frames"] == 0
    assert report["wall_time_s"] >= 12 * PROCESSING_S, "every frame waited for"
    assert report["messages_out"] == {"/stereo/echo": 12}


def test_bag_pace_never_waits_and_counts_the_drops_of_a_slow_node(tmp_path, fast_bag):
    report = run_slow_echo(fast_bag, tmp_path, "bag")
    assert report["pace"] == "bag" and report["frames_in"] == 12
    # 12 frames in 0.55 s to a node needing 0.2 s each: at most about 4 can come out, the rest are dropped
    assert report["publish_time_s"] < 12 * PROCESSING_S, "publishing never waits for the node"
    assert 1 <= report["frames_out"] <= 6 and report["dropped_frames"] == 12 - report["frames_out"] >= 6
    assert sum(not frame["complete"] for frame in report["per_frame"]) == report["dropped_frames"]
    assert report["per_frame"][-1]["complete"], "the newest frame is processed"
    # live latency stays near one processing time (the node keeps only the newest input); generous bound
    assert PROCESSING_S * 1000 * 0.9 <= report["latency_ms"]["p95"] < 10 * PROCESSING_S * 1000
