"""``stereo-depth-ros eval-mono`` and ``eval-mono-dataset``: monocular depth models against GT depth.

The models are built through the model registry (every registered model of input kind ``"image"`` with a
``"depth"`` output; by default those whose packaged weights exist) and handed to
:mod:`stereo_depth_ros.evaluation.mono_evaluate`, which scores them with the monodepth2 / AF-SfMLearner protocol
(:mod:`stereo_depth_ros.evaluation.depth_metrics`) beside two baselines, ``gt-mean`` and ``stereo``.

stdout carries only the result (markdown tables, or with ``--json`` exactly one JSON document); progress and
library chatter go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import numpy as np

from stereo_depth_ros.commands import parse_weights_overrides

#: Evaluated depth range (metres) of each registered GT set, as monodepth2 caps KITTI at 80 m and AF-SfMLearner
#: SCARED at 150 mm: BDIS synthetic (rendered colon; sets 32 and 33: GT 11-278 mm from the 0.1th to the 99.9th
#: percentile, 0.14 % beyond 0.2 m) 1 mm - 0.2 m;
#: Middlebury 2014 Motorcycle (GT 2.0-4.9 m) 1 mm - 10 m.
DEPTH_RANGES = {"bdis-synthetic": (1e-3, 0.2), "middlebury2014-motorcycle-q": (1e-3, 10.0),
                "skimage-motorcycle": (1e-3, 10.0)}
DEFAULT_MIN_DEPTH_M = 1e-3


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-mono`` and ``eval-mono-dataset``."""
    one = sub.add_parser("eval-mono", help="monocular depth metrics of every model on one image with GT depth",
                         description="Evaluate monocular depth models on one image against GT depth (metres) with "
                                     "the monodepth2 protocol, beside the gt-mean baseline and, with --right, our "
                                     "stereo network on the same view.")
    one.add_argument("--image", required=True, help="input image (the left view of a pair)")
    one.add_argument("--gt-depth", required=True, metavar="GT",
                     help="GT depth: .npy/.pfm/.tif (value * scale = metres) or 16-bit .png; <= 0, NaN, inf unknown")
    one.add_argument("--gt-depth-scale", type=float, default=1.0, metavar="S",
                     help="metres per GT unit (0.001 for millimetres; default 1)")
    one.add_argument("--gt-encoding", choices=("auto", "bdis"), default="auto",
                     help="bdis: BDIS synthetic colour-coded depth PNG (use --gt-depth-scale 0.01)")
    one.add_argument("--right", metavar="IMG", help="right image: adds the 'stereo' baseline (needs --focal-px and "
                                                    "--baseline-m)")
    one.add_argument("--focal-px", type=float, help="focal length in pixels (stereo baseline)")
    one.add_argument("--baseline-m", type=float, help="baseline in metres (stereo baseline)")
    one.add_argument("--principal-point-offset-px", type=float, default=0.0,
                     help="cx_left - cx_right of the rectified pair in pixels (default 0)")
    one.add_argument("--figure", metavar="OUT.png", help="write input | GT | each model as one PNG")
    _add_common_options(one)
    one.set_defaults(run=_run_eval_mono)

    many = sub.add_parser("eval-mono-dataset", help="monocular depth metrics averaged over GT sets",
                          description="Evaluate monocular depth models on GT sets (bdis-synthetic, "
                                      "bdis-synthetic-30..33, middlebury2014-motorcycle-q, skimage-motorcycle) or "
                                      "folders with image/ (or left/, plus right/ for stereo) and depth/ (metres "
                                      "* --gt-depth-scale); metrics per frame, then the mean over frames.")
    many.add_argument("sets", nargs="+", metavar="NAME|DIR", help="registered set names or folders")
    many.add_argument("--data-root", help="folder holding the registered sets (default ../shared/data)")
    many.add_argument("--limit", type=int, help="first N frames of each set only")
    many.add_argument("--every", type=int, default=1, help="every N-th frame only (default 1: all)")
    many.add_argument("--gt-depth-scale", type=float, default=1.0, metavar="S",
                      help="metres per GT unit for DIR sets (default 1)")
    many.add_argument("--no-stereo", action="store_true", help="leave out the stereo baseline")
    many.add_argument("--fusion", action="store_true",
                      help="also score depth-filled: stereo where valid, the first model aligned to stereo "
                           "elsewhere")
    many.add_argument("--fusion-confidence-threshold", type=float, default=0.0, metavar="T",
                      help="with --fusion: make stereo pixels of confidence below T invalid first, as the stereo "
                           "node's confidence_threshold does (adds the stereo-confident row; default 0: off)")
    many.add_argument("--figure-dir", metavar="DIR", help="write input | GT | each model for each set's first "
                                                          "frame to DIR/<set>.png")
    many.add_argument("--markdown-out", metavar="FILE", help="also write the markdown tables to FILE")
    _add_common_options(many)
    many.set_defaults(run=_run_eval_mono_dataset)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="a registered monocular model (repeatable; default: every one with packaged weights)")
    parser.add_argument("--weights", action="append", metavar="NAME=PATH",
                        help="weights for a model instead of its packaged ones, e.g. unet=run/unet.safetensors "
                             "(repeatable)")
    parser.add_argument("--median-scaling", action="store_true",
                        help="median-scale every model and stereo per frame (scale-free models are always scaled)")
    parser.add_argument("--min-depth", type=float, help="lower end of the evaluated depth range in metres "
                                                        f"(default {DEFAULT_MIN_DEPTH_M})")
    parser.add_argument("--max-depth", type=float, help="upper end in metres (default: the set's range, or the "
                                                        "frame's largest GT depth)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="inference backend of the networks (default auto: onnxruntime on the CPU)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON document instead of tables")


def monocular_model_names() -> list[str]:
    """Registered models of input kind ``"image"`` with a ``"depth"`` output."""
    from stereo_depth_ros.models.registry import model_names, model_spec

    return [name for name in model_names(input_kind="image") if "depth" in model_spec(name).output_kinds]


def default_model_names() -> list[str]:
    """The monocular models whose packaged weights exist (what runs without ``--model``)."""
    from stereo_depth_ros.models.registry import model_spec

    return [name for name in monocular_model_names()
            if model_spec(name).default_weights is not None and Path(model_spec(name).default_weights).is_file()]


def build_models(names: list[str] | None, backend: str = "auto", weights: dict[str, str] | None = None
                 ) -> list:
    """Monocular estimators by name through the registry (``backend`` passed when the model takes it).

    Args:
        names: registered monocular models (None: every one with packaged weights, plus those in ``weights``).
        backend: inference backend. weights: ``{name: path}`` replacing a model's packaged weights.

    Raises:
        ValueError: for a name that is not a registered monocular depth model (listing them), or weights given
            for a model that is not evaluated.
        stereo_depth_ros.models.weights.WeightsError: for weights that do not load.
    """
    from stereo_depth_ros.models.registry import create_estimator, model_spec

    available = monocular_model_names()
    weights = weights or {}
    if names is None:
        names = default_model_names() + [name for name in weights if name not in default_model_names()]
    unused = sorted(set(weights) - set(names))
    if unused:
        raise ValueError(f"--weights names {', '.join(unused)}, which is not among the evaluated models "
                         f"{', '.join(names)}")
    models = []
    for name in names:
        if name not in available:
            raise ValueError(f"{name!r} is not a registered monocular depth model; registered: "
                             f"{', '.join(available) or 'none'}")
        options = {"backend": backend} if "backend" in model_spec(name).options else {}
        if name in weights:
            options["weights"] = weights[name]
        models.append(create_estimator(name, **options))
    return models


def build_stereo(camera, backend: str = "auto", confidence_threshold: float = 0.0):
    """The ``stereo`` baseline: the packaged coarse-to-fine network on the pair, depth with ``camera``; with
    ``confidence_threshold`` > 0 also its depth without the pixels of lower confidence (``stereo-confident``)."""
    from stereo_depth_ros.evaluation.mono_evaluate import StereoDepth
    from stereo_depth_ros.models.registry import create_estimator

    return StereoDepth(create_estimator("coarse-to-fine", backend=backend), camera, confidence_threshold)


@contextlib.contextmanager
def _stdout_to_stderr():
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _json_value(value):
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _depth_range(args: argparse.Namespace, set_name: str | None = None) -> tuple[float, float | None]:
    default = (DEFAULT_MIN_DEPTH_M, None)
    if set_name is not None:
        for prefix, value in DEPTH_RANGES.items():
            if set_name.startswith(prefix):
                default = value
    min_depth = default[0] if args.min_depth is None else args.min_depth
    max_depth = default[1] if args.max_depth is None else args.max_depth
    return min_depth, max_depth


def _run_eval_mono(args: argparse.Namespace) -> int:
    from stereo_depth_ros.evaluation.mono_evaluate import JSON_ROW_KEYS, evaluate_frame, json_row, \
        markdown_table, save_depth_figure
    from stereo_depth_ros.evaluation.readers import read_depth
    from stereo_depth_ros.geometry import StereoCameraModel
    from stereo_depth_ros.images import read_image_bgr

    min_depth, max_depth = _depth_range(args)
    if args.right is not None and (args.focal_px is None or args.baseline_m is None):
        raise ValueError("the stereo baseline (--right) needs --focal-px and --baseline-m")
    with _stdout_to_stderr():
        image = read_image_bgr(args.image)
        gt = read_depth(args.gt_depth, args.gt_depth_scale, args.gt_encoding)
        if gt.shape != image.shape[:2]:
            raise ValueError(f"GT depth {args.gt_depth} is {gt.shape[1]} x {gt.shape[0]} but image {args.image} "
                             f"is {image.shape[1]} x {image.shape[0]}")
        right = stereo = None
        if args.right is not None:
            right = read_image_bgr(args.right)
            camera = StereoCameraModel(fx=args.focal_px, cx=0.0, cy=0.0, baseline_m=args.baseline_m,
                                       cx_right=-args.principal_point_offset_px)
            stereo = build_stereo(camera, args.backend)
        models = build_models(args.model, args.backend, parse_weights_overrides(args.weights))
        rows, depths = evaluate_frame(image, gt, models, right_bgr=right, stereo=stereo, min_depth_m=min_depth,
                                      max_depth_m=max_depth, median_scaling=args.median_scaling)
        if args.figure:
            save_depth_figure(args.figure, image, gt, [(name, depth) for name, depth in depths.items()])
    if args.json:
        print(json.dumps({"rows": [json_row(row) for row in rows]}, indent=2, allow_nan=False))
    else:
        print(f"depth range {min_depth:g}-{rows[0]['max_depth_m']:g} m")
        print(markdown_table(rows, JSON_ROW_KEYS))
    return 0


def _folder_frames(folder: Path, depth_scale: float):
    """Frames of a user's folder: image/ or left/ (+ right/), depth/ with matching stems."""
    from stereo_depth_ros.evaluation.readers import DEPTH_SUFFIXES, read_depth
    from stereo_depth_ros.images import IMAGE_SUFFIXES, natural_key, read_image_bgr

    image_dir = folder / "image" if (folder / "image").is_dir() else folder / "left"
    depth_dir = folder / "depth"
    if not image_dir.is_dir() or not depth_dir.is_dir():
        raise FileNotFoundError(f"folder {folder} needs image/ (or left/) and depth/")
    depths = {p.stem: p for p in depth_dir.iterdir() if p.suffix.lower() in DEPTH_SUFFIXES}
    images = sorted((p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not images:
        raise FileNotFoundError(f"folder {image_dir} has no images")
    for path in images:
        if path.stem not in depths:
            raise FileNotFoundError(f"image {path} has no GT depth {depth_dir / path.stem}.*")
        right_path = folder / "right" / path.name
        yield (f"{folder.name}/{path.stem}", read_image_bgr(path), read_depth(depths[path.stem], depth_scale),
               read_image_bgr(right_path) if right_path.is_file() else None, None)


def _registered_frames(name: str, data_root: str | None):
    from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA, open_dataset

    for sample in open_dataset(name, data_root):
        camera = sample.camera or (SKIMAGE_MOTORCYCLE_CAMERA if name == "skimage-motorcycle" else None)
        if camera is None:
            raise ValueError(f"set {name!r} has no calibration, so no GT depth; depth sets: bdis-synthetic, "
                             f"bdis-synthetic-30..33, middlebury2014-motorcycle-q, skimage-motorcycle")
        depth = np.asarray(camera.depth_from_disparity(sample.gt_disparity), dtype=np.float32)
        if sample.valid is not None:
            depth[~sample.valid] = np.nan
        yield sample.name, sample.left_bgr, depth, sample.right_bgr, camera


def _run_eval_mono_dataset(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stereo_depth_ros.evaluation.mono_evaluate import TABLE_KEYS, evaluate_frame, markdown_table, mean_rows, \
        save_depth_figure

    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be a positive number of frames, got {args.limit}")
    if args.every <= 0:
        raise ValueError(f"--every must be a positive number, got {args.every}")
    if not 0.0 <= args.fusion_confidence_threshold <= 1.0:
        raise ValueError(f"--fusion-confidence-threshold must lie in [0, 1], got {args.fusion_confidence_threshold}")
    documents, sections = [], []
    with _stdout_to_stderr():
        models = build_models(args.model, args.backend, parse_weights_overrides(args.weights))
        stereo_network = None
        for set_name in args.sets:
            min_depth, max_depth = _depth_range(args, set_name)
            folder = Path(set_name)
            frames = _folder_frames(folder, args.gt_depth_scale) if folder.is_dir() and \
                not set_name.startswith(("bdis", "middlebury", "skimage")) else _registered_frames(set_name,
                                                                                                 args.data_root)
            frame_rows, warmed, used = [], set(), 0
            for index, (frame_name, image, gt, right, camera) in enumerate(tqdm(frames, desc=set_name,
                                                                                  file=sys.stderr)):
                if index % args.every:
                    continue
                if args.limit is not None and used >= args.limit:
                    break
                used += 1
                stereo = None
                if not args.no_stereo and right is not None and camera is not None:
                    if stereo_network is None:
                        stereo_network = build_stereo(camera, args.backend, args.fusion_confidence_threshold)
                    stereo_network.camera = camera
                    stereo = stereo_network
                rows, depths = evaluate_frame(image, gt, models, right_bgr=right, stereo=stereo,
                                              min_depth_m=min_depth, max_depth_m=max_depth,
                                              median_scaling=args.median_scaling, fusion=args.fusion,
                                              warmed=warmed)
                for row in rows:
                    row["frame"] = frame_name
                frame_rows.extend(rows)
                if args.figure_dir and used == 1:
                    save_depth_figure(Path(args.figure_dir) / f"{Path(set_name).name}.png", image, gt,
                                      list(depths.items()))
            if not frame_rows:
                raise ValueError(f"set {set_name!r} gave no frame (check --limit and --every)")
            mean = mean_rows(frame_rows)
            range_text = f"{min_depth:g}-{max_depth:g} m" if max_depth is not None else \
                f"{min_depth:g} m to each frame's largest GT depth"
            documents.append({"set": set_name, "frames": used, "min_depth_m": min_depth, "max_depth_m": max_depth,
                              "rows": mean})
            sections.append(f"### {set_name} ({used} frames, depth range {range_text})\n\n"
                            f"{markdown_table(mean, TABLE_KEYS)}\n")
    if args.json:
        print(json.dumps({"sets": _json_value(documents)}, indent=2, allow_nan=False))
    else:
        print("\n".join(sections))
    if args.markdown_out:
        Path(args.markdown_out).write_text("\n".join(sections), encoding="utf-8")
    return 0
