"""The replay's report and figures: scoring of the recorded outputs, ``report.json``, ``report.md`` and
``contact_sheet.png`` (:func:`write_report`). Reads bags only (no ROS graph); the orchestration is in
:mod:`stereo_depth_ros.ros.replay`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stereo_depth_ros.data import bag_io
from stereo_depth_ros.evaluation.evaluate import json_ready
from stereo_depth_ros.evaluation.scorers import create_scorer
from stereo_depth_ros.geometry import StereoCameraModel

if TYPE_CHECKING:  # pragma: no cover
    from stereo_depth_ros.ros.replay import FrameSpec, ReplayInput

CONTACT_SHEET_FRAMES = 4
PACE_DESCRIPTIONS = {
    "lockstep": "lockstep (each frame's outputs awaited before the next frame: evaluation)",
    "bag": "bag (published at the bag's rate, never waiting, as a live camera: drops and latency as live)",
}


def _absolute(namespace: str, topic: str) -> str:
    return f"{namespace.rstrip('/')}/{topic}"


def camera_report(camera: StereoCameraModel | None) -> dict | None:
    """The camera model as report fields (pixels, metres), or None."""
    if camera is None:
        return None
    return {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy, "cx_right": camera.cx_right,
            "baseline_m": camera.baseline_m, "doffs_px": camera.disparity_offset_px}


def score_outputs(input_bag: str | Path, outputs_bag: str | Path, spec: "FrameSpec", namespace: str,
                  camera: StereoCameraModel | None) -> dict:
    """Score the recorded outputs against the input bag's ground truth, frame by frame (matched by stamp), with
    the scorers the frame spec names.

    Each output and ground-truth message with a decoder in the spec becomes a named array
    (:mod:`stereo_depth_ros.evaluation.scorers` documents the names); every scorer gets the arrays of one frame and
    the camera model. The report gives the means over frames
    (:meth:`~stereo_depth_ros.evaluation.scorers.Scorer.summarise`).

    Returns:
        ``{"metrics": {metric: mean, ..., "frames_evaluated", "gt_frames"} or None, "per_frame_metrics": [...],
        "metric_labels": {metric: label}}``; ``metrics`` is None without ground truth or scorers.

    Raises:
        ValueError: if a bag cannot be read, or a scorer refuses its input (e.g. no camera model where one is
            needed), naming the frame.
    """
    scorers = [create_scorer(name) for name in spec.scorers]
    labels = {key: label for scorer in scorers for key, label in scorer.metric_labels.items()}
    ground_truth = {topic: decoder for topic, decoder in spec.decoders.items() if topic in spec.ground_truth}
    gt_messages = {topic: bag_io.read_topic_by_stamp(input_bag, _absolute(namespace, topic))
                   for topic in ground_truth}
    gt_stamps = sorted(set().union(*gt_messages.values())) if gt_messages else []
    if not scorers or not gt_stamps:
        return {"metrics": None, "per_frame_metrics": [], "metric_labels": labels}
    outputs = {topic: decoder for topic, decoder in spec.decoders.items() if topic in spec.outputs}
    output_messages = {topic: bag_io.read_topic_by_stamp(outputs_bag, _absolute(namespace, topic))
                       for topic in outputs}
    rows = []
    for stamp in gt_stamps:
        if not any(stamp in messages for messages in output_messages.values()):
            continue
        arrays = {}
        for topic, (name, decode) in outputs.items():
            if stamp in output_messages[topic]:
                arrays[name] = decode(bag_io.deserialize(output_messages[topic][stamp], spec.outputs[topic]), camera)
        truths = {}
        for topic, (name, decode) in ground_truth.items():
            if stamp in gt_messages[topic]:
                truths[name] = decode(bag_io.deserialize(gt_messages[topic][stamp], spec.ground_truth[topic]), camera)
        row: dict = {"stamp_ns": stamp}
        for scorer in scorers:
            if any(k in arrays for k in scorer.output_kinds) and any(k in truths for k in scorer.ground_truth_kinds):
                try:
                    row.update(scorer.score(arrays, truths, camera))
                except ValueError as error:
                    raise ValueError(f"frame {stamp} ns: {error}") from error
        rows.append(row)
    means: dict = {}
    for scorer in scorers:
        means.update(scorer.summarise(rows))
    means["frames_evaluated"] = len(rows)
    means["gt_frames"] = len(gt_stamps)
    return {"metrics": means, "per_frame_metrics": rows, "metric_labels": labels}


def write_contact_sheet(input_bag: str | Path, outputs_bag: str | Path, path: str | Path, spec: "FrameSpec",
                        namespace: str, camera: StereoCameraModel | None, frames: int = CONTACT_SHEET_FRAMES) -> Path:
    """A PNG with up to ``frames`` evenly spaced frames, one row each: the first frame image (e.g. left) and the
    spec's ``sheet_outputs`` decoded (e.g. disparity in px, depth in m). Frames without an output leave its
    panel blank. Uses matplotlib (Agg).

    Returns:
        the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_topic = spec.frame_topics[0]
    images = bag_io.read_topic_by_stamp(input_bag, _absolute(namespace, image_topic))
    shown = [t for t in spec.sheet_outputs if t in spec.decoders and t in spec.outputs]
    outputs = {t: bag_io.read_topic_by_stamp(outputs_bag, _absolute(namespace, t)) for t in shown}
    stamps = sorted(images)
    if len(stamps) > frames:
        stamps = [stamps[int(round(i))] for i in np.linspace(0, len(stamps) - 1, frames)]
    rows = max(len(stamps), 1)
    figure, axes = plt.subplots(rows, 1 + len(shown), figsize=(4 * (1 + len(shown)), 3.2 * rows), squeeze=False)
    for row, stamp in enumerate(stamps):
        image = bag_io.image_to_array(bag_io.deserialize(images[stamp], spec.inputs[image_topic]))
        axes[row, 0].imshow(image[..., ::-1] if image.ndim == 3 else image, cmap=None if image.ndim == 3 else "gray")
        axes[row, 0].set_title(f"{image_topic}, stamp {stamp / 1e9:.3f} s", fontsize=9)
        for column, topic in enumerate(shown, start=1):
            name, decode = spec.decoders[topic]
            axis = axes[row, column]
            if stamp in outputs[topic] and name.endswith("_image"):  # a colour image (BGR): shown as it is
                values = decode(bag_io.deserialize(outputs[topic][stamp], spec.outputs[topic]), camera)
                axis.imshow(values[..., ::-1])
                axis.set_title(f"{topic} ({values.shape[1]}x{values.shape[0]})", fontsize=9)
            elif stamp in outputs[topic]:
                values = decode(bag_io.deserialize(outputs[topic][stamp], spec.outputs[topic]), camera)
                finite = values[np.isfinite(values)]
                vmax = float(np.percentile(finite, 98)) if finite.size else None
                drawn = axis.imshow(np.ma.masked_invalid(values), cmap="magma" if name == "disparity" else "viridis",
                                    vmin=0, vmax=vmax)
                figure.colorbar(drawn, ax=axis, fraction=0.046, pad=0.02)
                unit = {"disparity": "px", "depth": "m"}.get(name, "")
                axis.set_title(f"{topic} ({unit}), invalid blank" if unit else topic, fontsize=9)
            else:
                axis.set_title(f"no {topic}", fontsize=9)
        for axis in axes[row]:
            axis.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def write_report(report: dict, replay_input: "ReplayInput", spec: "FrameSpec", namespace: str,
                 out_dir: str | Path) -> dict:
    """Score the outputs, draw the contact sheet and write ``report.json`` and ``report.md`` into ``out_dir``.

    Args:
        report: the timing report of :func:`stereo_depth_ros.ros.replay.replay_through_nodes` (plus start-up and
            node parameters); completed in place.
        replay_input: the checked input bag (camera model, ground truth).
        spec: the frame spec of the replayed node kind.
        namespace: the nodes' namespace.
        out_dir: the replay's output folder (holds ``outputs/``).

    Returns:
        the completed report (the content of ``report.json``, nan and inf as null).
    """
    out_dir = Path(out_dir)
    report["camera"] = camera_report(replay_input.camera)
    report["camera_problem"] = replay_input.camera_problem
    report.update(score_outputs(replay_input.path, report["outputs_bag"], spec, namespace, replay_input.camera))
    report["contact_sheet"] = str(write_contact_sheet(replay_input.path, report["outputs_bag"],
                                                      out_dir / "contact_sheet.png", spec, namespace,
                                                      replay_input.camera))
    report = json_ready(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report))
    return report


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def pacing_text(report: dict) -> str:
    """One line saying how the replay paced the bag."""
    pace, rate = report.get("pace", "lockstep"), report.get("rate")
    if pace == "bag":
        return f"{PACE_DESCRIPTIONS['bag']}, {rate or 1.0}x the bag's rate"
    speed = f"at most {rate}x the bag's rate" if rate else "as fast as the node keeps up"
    return f"{PACE_DESCRIPTIONS['lockstep']}, {speed}"


def report_markdown(report: dict) -> str:
    """The human-readable ``report.md`` of a replay report."""
    latency = report["latency_ms"]
    node = next(iter(report.get("nodes", {}).values()), {})
    size = report.get("image_size") or [0, 0]
    lines = [
        f"# Bag replay report ({report.get('node_kind', 'node')})", "",
        f"- bag: `{report['bag']}` ({size[0]}x{size[1]})",
        f"- outputs: `{report['outputs_bag']}` (rosbag2 MCAP: {', '.join(report['output_topics'])})",
        f"- parameters: `{report.get('params_file', 'n/a')}`; method {node.get('method', 'n/a')}, device "
        f"{node.get('device', 'n/a')}",
        f"- pacing: {pacing_text(report)}",
    ]
    camera = report.get("camera")
    if camera:
        lines.append(f"- camera: fx {_fmt(camera['fx'], 3)} px, cx {_fmt(camera['cx'], 3)} px, cx_right "
                     f"{_fmt(camera['cx_right'], 3)} px (doffs {_fmt(camera['doffs_px'], 3)} px), baseline "
                     f"{_fmt(camera['baseline_m'] * 1000.0, 3)} mm")
    elif report.get("camera_problem"):
        lines.append(f"- camera: none ({report['camera_problem']})")
    lines += [
        "", "| quantity | value |", "|---|---|",
        f"| pacing | {report.get('pace', 'lockstep')} |",
        f"| frames in (published) | {report['frames_in']} |",
        f"| frames out (all outputs received) | {report['frames_out']} |",
        f"| dropped frames | {report['dropped_frames']} |",
        f"| output stamps = input stamps | {report['stamps_preserved']} |",
        f"| latency p50 / p95 / max (ms) | {_fmt(latency['p50'])} / {_fmt(latency['p95'])} / {_fmt(latency['max'])} |",
        f"| throughput (frames/s) | {_fmt(report['throughput_fps'])} |",
        f"| bag frame rate (Hz) | {_fmt(report.get('bag_rate_hz'))} |",
        f"| node start-up (s) | {_fmt(report.get('startup_s'))} |",
        f"| replay wall time (s) | {_fmt(report['wall_time_s'])} |",
    ]
    for topic, count in report["messages_out"].items():
        lines.append(f"| messages on {topic} | {count} |")
    problems = report.get("node_problems") or {}
    if problems.get("counts"):
        lines.append(f"| problems reported by the node | {problems['counts']}; last: {problems['last']} |")
    scores = report.get("metrics")
    labels = report.get("metric_labels") or {}
    if scores:
        lines += ["", f"## Accuracy against the bag's ground truth ({scores['frames_evaluated']} frames, means over "
                      f"frames)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {label} | {_fmt(scores.get(key), 3)} |" for key, label in labels.items()]
        if "angular_error_deg" in labels:
            lines += ["", "The node's pseudo-RGB image (translated from the bag's NIR image) against the bag's real "
                          "RGB aligned to the NIR view (gt/image_rgb), inside its valid mask (gt/valid_mask): PSNR on "
                          "RGB in [0, 1], SSIM and the mean angle between per-pixel RGB vectors in degrees, as "
                          "eval-cross-modal (stereo_depth_ros.evaluation.cross_modal_metrics). The depth is recorded, "
                          "not scored."]
        elif "psnr_db" in labels:
            lines += ["", "The node's super-resolved pair against the bag's high-resolution pair (the bag's inputs are "
                          "its bicubic downscale): PSNR on RGB in [0, 1] without a Y channel and SSIM, per view and "
                          "(left + right) / 2, as iPASSR (stereo_depth_ros.evaluation.sr_metrics)."]
        else:
            lines += ["", "Ground-truth disparity is the image disparity of the ground-truth depth with the camera "
                          "model, d = fx B / Z - doffs; depth errors compare the published depth with the ground-truth "
                          "depth on pixels where both are finite (NaN and +-inf, REP-117, are invalid)."]
    else:
        lines += ["", "No ground truth in the bag (or no scorer for this node kind): no accuracy metrics."]
    lines += ["", "Latency: from publishing a frame's last input image to receiving the frame's last output, in this "
                  "process. Throughput: frames out divided by the time from the first publish to the last output.",
              "", "![contact sheet](contact_sheet.png)", ""]
    return "\n".join(lines)
