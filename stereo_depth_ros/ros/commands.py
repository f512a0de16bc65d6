"""``stereo-depth-ros`` sub-commands for bags and ROS: ``make-bag``, ``replay`` and ``demo``.

rclpy is imported inside the run functions only, so ``stereo-depth-ros --help`` (and ``make-bag``, which needs no
ROS) work on a machine without ROS 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_SCENE = "Middlebury 2014 Motorcycle (scikit-image copy, 741x500)"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``make-bag``, ``replay`` and ``demo`` on the ``stereo-depth-ros`` sub-parsers."""
    _add_make_bag(sub)
    _add_replay(sub)
    _add_demo(sub)


# ----------------------------------------------------------------------------------------------- make-bag


def _add_make_bag(sub) -> None:
    parser = sub.add_parser(
        "make-bag", help="write a stereo rosbag2 (MCAP) from folders of rectified images",
        description="Write a rosbag2 (MCAP) with /stereo/left/image_rect, /stereo/right/image_rect, "
                    "/stereo/left/camera_info, /stereo/right/camera_info and optionally /stereo/gt/depth (32FC1, "
                    "metres, NaN unknown) from folders of rectified images paired by file name; or, with --nir-rgb "
                    "DIR, a NIR bag for cross_modal_node from held-out NIR/RGB pairs. No ROS needed.")
    parser.add_argument("--left", type=Path, help="folder of rectified left images (required, except with --nir-rgb)")
    parser.add_argument("--right", type=Path,
                        help="folder of rectified right images with the same file names (required, except with "
                             "--nir-rgb)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--camera-info-yaml", nargs=2, type=Path, metavar=("LEFT_YAML", "RIGHT_YAML"),
                             help="camera_calibration_parsers YAML files of the rectified cameras (the right "
                                  "projection_matrix holds P[3] = -fx * baseline)")
    calibration.add_argument("--focal-px", type=float, help="focal length of the rectified pair in pixels")
    parser.add_argument("--baseline-m", type=float, help="baseline in metres (with --focal-px)")
    parser.add_argument("--cx", type=float, help="principal point x of the left camera in pixels (default: width / 2)")
    parser.add_argument("--cy", type=float, help="principal point y in pixels (default: height / 2)")
    parser.add_argument("--cx-right", type=float,
                        help="principal point x of the right camera in pixels (default: --cx); Middlebury's doffs "
                             "is cx_right - cx")
    ground_truth = parser.add_mutually_exclusive_group()
    ground_truth.add_argument("--gt-disparity", type=Path, metavar="DIR",
                              help="ground-truth image disparity maps d = x_l - x_r (.npy, .pfm, 16-bit .png = "
                                   "value/256, float .tif) in pixels; converted to depth Z = fx B / (d + doffs), "
                                   "doffs = cx_right - cx")
    ground_truth.add_argument("--gt-depth", type=Path, metavar="DIR",
                              help="ground-truth depth maps (.npy, .pfm, float .tif/.exr, 16-bit .png); value * "
                                   "--depth-scale = metres")
    parser.add_argument("--depth-scale", type=float, default=1.0,
                        help="metres per stored depth unit (0.001 for millimetre PNGs; 0.01 for BDIS, whose unit "
                             "we take as centimetres); default %(default)s")
    parser.add_argument("--gt-depth-encoding", choices=("auto", "bdis"), default="auto",
                        help="'bdis': BDIS synthetic colour-coded depth PNGs, depth = (B+1)/256 + 100 (G+1)/256 + "
                             "(R+1)/256 - 0.5 in the renderer's unit (the 0.5 as BDIS's Main_synthetic.m)")
    parser.add_argument("--super-resolution-scale", type=int, choices=(2, 4), default=None, metavar="S",
                        help="make a bag for super_resolution_node: the folders hold the high-resolution (HR) pairs "
                             "(and the calibration is theirs); the inputs become the bicubic downscale by S (2 or 4; "
                             "antialiased, the SR training's degradation) with camera_info scaled by 1/S, and the HR "
                             "pairs (cropped to multiples of S) go to /stereo/gt/left/image_rect and "
                             "/stereo/gt/right/image_rect as the replay's reference")
    parser.add_argument("--nir-rgb", type=Path, metavar="DIR",
                        help="make a NIR bag for cross_modal_node (input_mode nir) instead: DIR holds held-out "
                             "NIR/RGB pairs (NNNN_nir.jpg, NNNN_rgb.jpg, NNNN_nir.npy affine matrix, as "
                             "../shared/data/nir_rgb/indoor); writes /stereo/image_nir (mono8), the RGB warped onto "
                             "the NIR as /stereo/gt/image_rgb (bgr8) and its valid area as /stereo/gt/valid_mask "
                             "(mono8 0/255), at --short-side; no --left/--right/calibration")
    parser.add_argument("--short-side", type=int, default=None, metavar="PX",
                        help="with --nir-rgb: short side in pixels (default 256, eval-cross-modal's)")
    parser.add_argument("--limit", type=int, default=None, help="with --nir-rgb: the first N pairs only")
    parser.add_argument("--stereo-shift", type=int, default=None, metavar="PX",
                        help="with --nir-rgb: make a NIR/RGB stereo bag for cross_modal_node in input_mode "
                             "nir-rgb-pair instead: left = the NIR (mono8), right = the RGB shifted by PX pixels "
                             "(bgr8), a nominal calibration (fx = the width, baseline 5 cm) and /stereo/gt/depth "
                             "(the known disparity PX as depth)")
    parser.add_argument("--pixel-aligned", action="store_true",
                        help="with --nir-rgb: the pairs are pixel-aligned already (nir_rgb/country: no matrices)")
    parser.add_argument("--rate", type=float, default=10.0, help="frame rate of the stamps in Hz (default %(default)s)")
    parser.add_argument("--frame-id", default=None,
                        help="left optical frame id (REP-103; default stereo_left_optical_frame, with --nir-rgb "
                             "nir_optical_frame); the right one replaces 'left' by 'right'")
    parser.add_argument("--start-time", type=float, default=None,
                        help="stamp of the first frame in seconds since the epoch (default: now)")
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag folder")
    parser.set_defaults(run=run_make_bag)


def run_make_bag(args: argparse.Namespace) -> int:
    """``stereo-depth-ros make-bag``: write the bag and print what it holds."""
    from stereo_depth_ros.data.stereo_bag import make_bag_from_folders

    if args.nir_rgb is not None:
        return _make_nir_bag(args)
    if args.short_side is not None or args.limit is not None or args.stereo_shift is not None or args.pixel_aligned:
        raise ValueError("--short-side, --limit, --stereo-shift and --pixel-aligned go with --nir-rgb")
    if args.left is None or args.right is None:
        raise ValueError("make-bag needs --left and --right (folders of rectified images), or --nir-rgb DIR")
    if args.camera_info_yaml is None and args.focal_px is None:
        raise ValueError("make-bag needs the calibration: --camera-info-yaml LEFT_YAML RIGHT_YAML or --focal-px with "
                         "--baseline-m")
    if args.frame_id is None:
        args.frame_id = "stereo_left_optical_frame"
    if args.focal_px is not None and args.baseline_m is None:
        raise ValueError("--focal-px needs --baseline-m (metres)")
    if args.camera_info_yaml is not None and any(v is not None for v in (args.baseline_m, args.cx, args.cy,
                                                                          args.cx_right)):
        raise ValueError("--baseline-m, --cx, --cy and --cx-right go with --focal-px, not with --camera-info-yaml")
    if args.gt_depth is None and (args.depth_scale != 1.0 or args.gt_depth_encoding != "auto"):
        raise ValueError("--depth-scale and --gt-depth-encoding need --gt-depth")
    degrade = None
    if args.super_resolution_scale is not None:
        if args.gt_depth is not None or args.gt_disparity is not None:
            raise ValueError("--super-resolution-scale makes the HR pair the reference; it takes no --gt-depth or "
                             "--gt-disparity")
        from stereo_depth_ros.models.stereo_sr import bicubic_downscale as degrade
    start_ns = None if args.start_time is None else int(round(args.start_time * 1e9))
    summary = make_bag_from_folders(
        args.left, args.right, args.out,
        camera_info_yamls=tuple(args.camera_info_yaml) if args.camera_info_yaml else None,
        focal_px=args.focal_px, baseline_m=args.baseline_m, cx=args.cx, cy=args.cy, cx_right=args.cx_right,
        gt_disparity_dir=args.gt_disparity, gt_depth_dir=args.gt_depth, depth_scale=args.depth_scale,
        gt_depth_encoding=args.gt_depth_encoding, rate_hz=args.rate, frame_id=args.frame_id,
        start_stamp_ns=start_ns, overwrite=args.overwrite, super_resolution_scale=args.super_resolution_scale,
        degrade=degrade)
    calibration = summary.calibration
    print(f"wrote {summary.path}: {summary.frames} stereo pairs {summary.width}x{summary.height} at {args.rate} Hz, "
          f"fx = {calibration.fx:.3f} px, cx = {calibration.cx:.3f} px, cx_right = {calibration.cx_right:.3f} px "
          f"(doffs {calibration.disparity_offset_px:.3f} px), baseline = {calibration.baseline_m * 1000:.3f} mm"
          f"{', with ground-truth depth' if summary.has_gt_depth else ''}"
          + (f", low-resolution inputs (bicubic x1/{args.super_resolution_scale}) with the HR pairs as reference"
             if args.super_resolution_scale else ""))
    _print_topics(summary.topics)
    return 0


def _print_topics(topics: dict[str, tuple[str, int]]) -> None:
    for topic, (msgtype, count) in topics.items():
        print(f"  {topic}  {msgtype}  {count} messages")


def _make_nir_bag(args: argparse.Namespace) -> int:
    """``make-bag --nir-rgb DIR``: a NIR bag for cross_modal_node (:mod:`stereo_depth_ros.data.nir_bag`), or with
    ``--stereo-shift`` a NIR/RGB stereo bag for its nir-rgb-pair mode."""
    from stereo_depth_ros.data.nir_bag import DEFAULT_SHORT_SIDE, NIR_FRAME_ID, make_nir_bag_from_folder, \
        make_nir_stereo_bag_from_folder
    from stereo_depth_ros.data.stereo_bag import LEFT_FRAME_ID

    stereo_options = {"--left": args.left, "--right": args.right, "--camera-info-yaml": args.camera_info_yaml,
                      "--focal-px": args.focal_px, "--baseline-m": args.baseline_m, "--cx": args.cx, "--cy": args.cy,
                      "--cx-right": args.cx_right, "--gt-disparity": args.gt_disparity, "--gt-depth": args.gt_depth,
                      "--super-resolution-scale": args.super_resolution_scale}
    given = [name for name, value in stereo_options.items() if value is not None]
    if given or args.depth_scale != 1.0 or args.gt_depth_encoding != "auto":
        raise ValueError(f"--nir-rgb makes a NIR bag from the pairs' folder alone; it takes no stereo options (got "
                         f"{', '.join(given) or '--depth-scale/--gt-depth-encoding'})")
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be a positive number of pairs, got {args.limit}")
    start_ns = None if args.start_time is None else int(round(args.start_time * 1e9))
    short_side = DEFAULT_SHORT_SIDE if args.short_side is None else args.short_side
    if args.stereo_shift is not None:
        stereo = make_nir_stereo_bag_from_folder(
            args.nir_rgb, args.out, args.stereo_shift, short_side=short_side, limit=args.limit,
            pixel_aligned=args.pixel_aligned, rate_hz=args.rate, frame_id=args.frame_id or LEFT_FRAME_ID,
            start_stamp_ns=start_ns, overwrite=args.overwrite)
        print(f"wrote {stereo.path}: {stereo.frames} NIR/RGB stereo pairs {stereo.width}x{stereo.height} at "
              f"{args.rate} Hz from {args.nir_rgb} (NIR left, RGB right shifted by {args.stereo_shift} px; nominal "
              f"calibration fx = {stereo.calibration.fx:.1f} px, baseline {stereo.calibration.baseline_m * 1000:.0f} "
              f"mm; ground-truth depth of the known disparity)")
        _print_topics(stereo.topics)
        return 0
    if args.pixel_aligned:
        raise ValueError("--pixel-aligned goes with --stereo-shift (the NIR bag reads the held-out pairs' matrices)")
    summary = make_nir_bag_from_folder(args.nir_rgb, args.out, short_side=short_side, limit=args.limit,
                                       rate_hz=args.rate, frame_id=args.frame_id or NIR_FRAME_ID,
                                       start_stamp_ns=start_ns, overwrite=args.overwrite)
    print(f"wrote {summary.path}: {summary.frames} NIR images {summary.width}x{summary.height} (short side "
          f"{short_side} px) at {args.rate} Hz from {args.nir_rgb} (pairs {', '.join(summary.names)}), with the "
          f"aligned real RGB and its valid mask as the reference")
    _print_topics(summary.topics)
    return 0


# ----------------------------------------------------------------------------------------------- replay


def _add_replay_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=None,
                        help="ROS 2 parameters YAML of the nodes (default: the package's config/endoscope.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                        help="override a node parameter, e.g. --set method=sgbm (repeatable)")
    parser.add_argument("--pace", choices=("lockstep", "bag"), default="lockstep",
                        help="lockstep (default): wait for each frame's outputs before the next frame (evaluation); "
                             "bag: publish at the bag's rate times --rate and never wait, as a live camera would "
                             "(drops and latency as a live system sees them)")
    parser.add_argument("--frame-timeout", type=float, default=60.0,
                        help="seconds to wait for one frame's outputs (lockstep), or for the last outputs after the "
                             "last frame (bag), before counting frames dropped (default %(default)s; the first frame "
                             "gets 300 s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_replay(sub) -> None:
    parser = sub.add_parser(
        "replay", help="replay a bag through a node over ROS 2 and report latency and accuracy",
        description="Start the node of the parameters file in this process (namespace /stereo), publish the bag's "
                    "messages with their recorded stamps (--pace lockstep or bag), record the node's outputs "
                    "(stereo: /stereo/disparity, /stereo/depth, /stereo/points2) into DIR/outputs (rosbag2 MCAP) and "
                    "write DIR/report.json, DIR/report.md and DIR/contact_sheet.png (metrics against the bag's "
                    "ground truth, /stereo/gt/depth, when it has it; for super_resolution_node, a bag from "
                    "make-bag --super-resolution-scale: PSNR/SSIM per view against "
                    "/stereo/gt/{left,right}/image_rect; for cross_modal_node in input_mode nir, a bag from make-bag "
                    "--nir-rgb: masked PSNR, SSIM and angular colour error of /stereo/cross_modal/pseudo_rgb against "
                    "/stereo/gt/image_rgb).")
    parser.add_argument("bag", type=Path, help="stereo bag folder (see make-bag)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--rate", type=float, default=None,
                        help="speed factor relative to the bag's stamps (default: lockstep as fast as the node "
                             "keeps up; bag 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier replay in --out")
    _add_replay_options(parser)
    parser.set_defaults(run=run_replay)


def _print_report(report: dict, out_dir: Path) -> None:
    from stereo_depth_ros.ros.replay_report import pacing_text

    latency = report["latency_ms"]
    print(f"pacing: {pacing_text(report)}")
    print(f"frames in {report['frames_in']}, out {report['frames_out']}, dropped {report['dropped_frames']}; "
          f"latency p50 {latency['p50']} ms, p95 {latency['p95']} ms, max {latency['max']} ms; "
          f"throughput {report['throughput_fps']} frames/s")
    scores = report.get("metrics")
    if scores:
        def show(key: str, unit: str) -> str:
            return "n/a" if scores.get(key) is None else f"{scores[key]:.2f} {unit}"

        if "angular_error_deg" in scores:  # cross-modal node: its pseudo-RGB against the bag's aligned real RGB
            print(f"accuracy ({scores['frames_evaluated']} frames, inside the valid mask): PSNR "
                  f"{show('psnr_db', 'dB')}, SSIM {show('ssim', '').strip()}, angular error "
                  f"{show('angular_error_deg', 'degrees')}")
        elif "psnr_db" in scores:  # super-resolution node: its SR pair against the bag's HR pair
            print(f"accuracy ({scores['frames_evaluated']} frames): PSNR {show('psnr_db', 'dB')} (left "
                  f"{show('psnr_left_db', 'dB')}, right {show('psnr_right_db', 'dB')}), SSIM {show('ssim', '')}")
        else:
            print(f"accuracy ({scores['frames_evaluated']} frames): depth MAE {show('mae_mm', 'mm')}, RMSE "
                  f"{show('rmse_mm', 'mm')} (depth on {show('depth_density_pct', '%')} of the GT pixels); disparity "
                  f"EPE {show('epe_px', 'px')} (on {show('density_pct', '%')})")
    problems = report.get("node_problems") or {}
    if problems.get("counts"):
        print(f"the node reported problems {problems['counts']}; last: {problems['last']}")
    print(f"report: {out_dir / 'report.md'} (and report.json, contact_sheet.png, outputs/)")


def run_replay(args: argparse.Namespace) -> int:
    """``stereo-depth-ros replay``: replay, print the summary; exit code 1 when no frame came out or (lockstep)
    frames were dropped."""
    from stereo_depth_ros.ros.replay import parse_overrides, replay_bag

    report = replay_bag(args.bag, args.out, params_file=args.params, pace=args.pace, rate=args.rate,
                        overrides=parse_overrides(args.overrides), frame_timeout_s=args.frame_timeout,
                        overwrite=args.overwrite, progress=not args.no_progress)
    _print_report(report, args.out)
    return _exit_code(report)


def _exit_code(report: dict) -> int:
    """0 when frames came out, and (lockstep) none was dropped; with ``--pace bag`` drops are a measurement of a
    live run, not a failure."""
    if report.get("pace") == "bag":
        return 0 if report["frames_out"] > 0 else 1
    return 0 if report["dropped_frames"] == 0 and report["frames_out"] > 0 else 1


# ----------------------------------------------------------------------------------------------- demo


def _add_demo(sub) -> None:
    parser = sub.add_parser(
        "demo", help="replay a real stereo pair (Middlebury Motorcycle) through the stereo node and report",
        description=f"Build a bag from scikit-image's {DEMO_SCENE} with its ground truth (depth "
                    "Z = f B / (d + doffs) with f = 994.978 px, B = 193.001 mm, left principal point (311.193, "
                    "254.877) px and doffs 31.086 px, as scikit-image documents them; the right camera_info carries "
                    "cx_right = 342.279 px), replay it through the stereo node with the packaged weights and print "
                    "the report.")
    parser.add_argument("--out", type=Path, default=Path("stereo_depth_demo"),
                        help="output folder (default ./%(default)s); its bag and outputs are replaced")
    parser.add_argument("--frames", type=int, default=5, help="how many times the pair is sent (default %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize factor of the pair in (0, 1] (0.5 is about 4 times faster; default %(default)s)")
    parser.add_argument("--method", choices=("coarse-to-fine", "sgbm"), default="coarse-to-fine",
                        help="disparity method (default %(default)s)")
    parser.add_argument("--rate", type=float, default=None,
                        help="speed factor relative to the bag's 2 Hz stamps (default: as fast as the node keeps up)")
    _add_replay_options(parser)
    parser.set_defaults(run=run_demo)


def demo_overrides(method: str, scale: float) -> dict:
    """Node parameters the demo sets over the parameters file: the method, no depth limits (the Motorcycle scene
    lies about 2 to 5 m away by ``Z = f B / (d + doffs)``, beyond config/endoscope.yaml's endoscope range) and, for
    SGBM, a search range that fits the image (disparities reach 60 px at full size)."""
    overrides = {"method": method, "min_depth": 0.0, "max_depth": 0.0}
    if method == "sgbm":
        overrides["max_disparity"] = max(16, 16 * int(-(-80 * scale // 16)))
    return overrides


def run_demo(args: argparse.Namespace) -> int:
    """``stereo-depth-ros demo``: make the Motorcycle bag, replay it, print the summary."""
    from stereo_depth_ros.data.stereo_bag import write_stereo_bag
    from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA, load_skimage_motorcycle
    from stereo_depth_ros.ros.replay import parse_overrides, replay_bag

    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    left, right, disparity = load_skimage_motorcycle(args.scale)
    calibration = SKIMAGE_MOTORCYCLE_CAMERA.scaled(args.scale)
    gt_depth = calibration.depth_from_disparity(disparity)
    out = Path(args.out)
    bag = out / "motorcycle_bag"
    summary = write_stereo_bag(bag, [left] * args.frames, [right] * args.frames, calibration,
                               gt_depths=[gt_depth] * args.frames, rate_hz=2.0, overwrite=True)
    print(f"demo bag {bag}: {DEMO_SCENE} at scale {args.scale} ({summary.width}x{summary.height}), "
          f"{summary.frames} frames at 2 Hz, f = {calibration.fx:.3f} px, B = 193.001 mm, doffs "
          f"{calibration.disparity_offset_px:.3f} px, GT depth Z = f B / (d + doffs)")
    overrides = demo_overrides(args.method, args.scale)
    overrides.update(parse_overrides(args.overrides))
    report = replay_bag(bag, out, params_file=args.params, pace=args.pace, rate=args.rate, overrides=overrides,
                        frame_timeout_s=args.frame_timeout, overwrite=True, progress=not args.no_progress)
    _print_report(report, out)
    return _exit_code(report)
