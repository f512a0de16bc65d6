"""``stereo-depth-ros eval-pair``, ``eval-dataset``, ``eval-photometric`` and ``benchmark-stereo``.

These commands build estimators through the model registry (:func:`stereo_depth_ros.models.registry.create_estimator`)
and hand them to :mod:`stereo_depth_ros.evaluation`, which runs and scores what it is given; that is why they live
in the command layer and not in ``evaluation`` (which imports no model).

Everything a command computes is logged to stderr (progress bars included); stdout carries only the result (a
markdown table, or with ``--json`` exactly one JSON document).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

METHODS = ("coarse-to-fine", "sgbm")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-pair``, ``eval-dataset``, ``eval-photometric`` and ``benchmark-stereo``."""
    pair = sub.add_parser("eval-pair", help="metrics of SGBM and every network stage on one pair with GT",
                          description="Evaluate the coarse-to-fine network (each stage) and SGBM on one rectified "
                                      "pair against a ground-truth disparity.")
    pair.add_argument("--left", required=True, help="left rectified image")
    pair.add_argument("--right", required=True, help="right rectified image")
    pair.add_argument("--gt-disparity", required=True, metavar="GT",
                      help="GT left disparity: .npy, .pfm, 16-bit KITTI .png (value/256), float .tif")
    pair.add_argument("--gt-format", choices=("auto", "middlebury2003"), default="auto",
                      help="middlebury2003: 8-bit map, disparity = value / 4 (default auto: by suffix)")
    pair.add_argument("--focal-px", type=float, help="focal length in pixels (with --baseline-m: depth errors)")
    pair.add_argument("--baseline-m", type=float, help="baseline in metres")
    pair.add_argument("--disparity-offset-px", type=float, default=0.0,
                      help="Middlebury 2014 doffs added to disparities for depth (default 0)")
    pair.add_argument("--figure", metavar="OUT.png", help="write left | GT | SGBM | stages 0..3 as one PNG")
    _add_method_options(pair)
    pair.set_defaults(run=_run_eval_pair)

    dataset = sub.add_parser("eval-dataset", help="mean metrics over data sets with GT",
                             description="Evaluate on registered GT sets (bdis-synthetic, bdis-synthetic-30..33, "
                                         "middlebury2003-cones, middlebury2003-teddy, middlebury2014-motorcycle-q, "
                                         "sceneflow-sample, skimage-motorcycle) or on folders with left/, right/ "
                                         "and disparity/.")
    dataset.add_argument("sets", nargs="+", metavar="NAME|DIR", help="registered set names or folders")
    dataset.add_argument("--data-root", help="folder holding the registered sets (default ../shared/data)")
    dataset.add_argument("--limit", type=int, help="first N pairs of each set only")
    dataset.add_argument("--focal-px", type=float, help="focal length (px) for DIR sets (depth errors)")
    dataset.add_argument("--baseline-m", type=float, help="baseline (m) for DIR sets (depth errors)")
    dataset.add_argument("--markdown-out", metavar="FILE", help="also write the markdown tables to FILE")
    _add_method_options(dataset)
    dataset.set_defaults(run=_run_eval_dataset)

    photometric = sub.add_parser("eval-photometric", help="photometric error on real pairs without GT",
                                 description="Photometric reconstruction error (the training objective's "
                                             "0.85 SSIM + 0.15 L1 term) of each network stage and of SGBM, on the "
                                             "pixels where both have a value inside the active image area.")
    photometric.add_argument("dirs", nargs="+", metavar="DIR",
                             help="set folders (left/ + right/ or images_rectified/{left,right}), or a folder "
                                  "whose sub-folders are such sets")
    photometric.add_argument("--limit", type=int, help="first N pairs of each set only")
    photometric.add_argument("--markdown-out", metavar="FILE", help="also write the markdown tables to FILE")
    _add_network_options(photometric)
    photometric.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    photometric.set_defaults(run=_run_eval_photometric)

    bench = sub.add_parser("benchmark-stereo", help="time and memory of SGBM and the network per stage",
                           description="Time SGBM (192 disparities, 3-way) and the network up to each stage on "
                                       "scikit-image's Motorcycle pair resized to HxW: median of N calls after a "
                                       "warm-up, and peak resident memory (Linux VmHWM, one process per row).")
    bench.add_argument("--height", type=int, required=True, help="input height in pixels")
    bench.add_argument("--width", type=int, required=True, help="input width in pixels")
    bench.add_argument("--repeats", type=int, default=10, help="timed calls per row (default 10)")
    bench.add_argument("--backend", choices=("auto", "torch", "onnx", "all"), default="auto",
                       help="network back-end; 'all' gives rows for PyTorch and onnxruntime")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--weights", help="network weights (default: the packaged ones)")
    bench.add_argument("--sgbm-disparities", type=int, default=192,
                       help="SGBM search range, multiple of 16 (default 192; the width must be larger)")
    bench.add_argument("--max-disparity", type=int, default=None,
                       help="network search range in px (default: the same as --sgbm-disparities)")
    add_input_scale_option(bench)
    bench.add_argument("--in-process", action="store_true",
                       help="measure every row in this process (faster; peak memory then less meaningful)")
    bench.add_argument("--paired", action="store_true",
                       help="also time each network row against SGBM in alternating rounds in one process and "
                            "report the median ratio (robust to a machine whose speed drifts)")
    bench.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    bench.set_defaults(run=_run_benchmark)


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="network weights (.safetensors; default: the packaged ones)")
    parser.add_argument("--max-disparity", type=int, help="network search range in px (default: from the weights)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="network back-end (default auto: onnxruntime on the CPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_input_scale_option(parser)
    parser.add_argument("--sgbm-disparities", type=int, default=192,
                        help="SGBM search range, multiple of 16 (default 192)")


def input_scale_argument(text: str) -> float | None:
    """argparse type of ``--input-scale``: "auto" -> None, else a float in (0, MAX_INPUT_SCALE]."""
    from stereo_depth_ros.models.estimator import MAX_INPUT_SCALE, check_input_scale

    if text == "auto":
        return None
    try:
        value = float(text)
        check_input_scale(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a number in (0, {MAX_INPUT_SCALE:g}], got {text!r}") from error
    return value


def add_input_scale_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--input-scale auto|S`` (the network's input scale, None = auto) to a command or benchmark script."""
    parser.add_argument("--input-scale", type=input_scale_argument, default=None, metavar="auto|S",
                        help="resize the pair by S before the network (default auto: to 1280 px wide, at most 2x, "
                             "never smaller)")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", action="append", choices=METHODS,
                        help="method to evaluate (repeatable; default both)")
    _add_network_options(parser)
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not run each method once untimed before timing it (faster; first-call times "
                             "then include the ONNX export)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")


def _estimators_from(args: argparse.Namespace, methods: list[str] | None = None) -> list:
    """The registry's estimators for the command's options: those named in ``methods`` (default both), network
    first.

    Raises:
        WeightsError / ValueError: for bad weights or parameters (messages name them).
    """
    from stereo_depth_ros.models.registry import create_estimator

    options = {"coarse-to-fine": {"weights": args.weights, "device": args.device, "backend": args.backend,
                                  "max_disparity": args.max_disparity, "input_scale": args.input_scale},
               "sgbm": {"max_disparity": args.sgbm_disparities}}
    wanted = set(methods or METHODS)
    return [create_estimator(method, **options[method]) for method in METHODS if method in wanted]


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send stray prints of libraries to stderr while computing, so stdout holds only the result."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_json(document: dict) -> None:
    from stereo_depth_ros.evaluation.evaluate import json_ready

    print(json.dumps(json_ready(document), indent=2, allow_nan=False))


def _run_eval_pair(args: argparse.Namespace) -> int:
    from stereo_depth_ros.images import read_image_bgr
    from stereo_depth_ros.evaluation.evaluate import evaluate_pair, markdown_table
    from stereo_depth_ros.evaluation.figures import save_disparity_figure
    from stereo_depth_ros.evaluation.readers import read_disparity, read_middlebury2003_disparity

    if (args.focal_px is None) != (args.baseline_m is None):
        raise ValueError("give both --focal-px and --baseline-m, or neither")
    with _stdout_to_stderr():
        left, right = read_image_bgr(args.left), read_image_bgr(args.right)
        gt = (read_middlebury2003_disparity(args.gt_disparity) if args.gt_format == "middlebury2003"
              else read_disparity(args.gt_disparity))
        estimators = _estimators_from(args, args.method)
        rows, maps = evaluate_pair(left, right, gt, estimators, args.focal_px, args.baseline_m,
                                   disparity_offset_px=args.disparity_offset_px, warmup=not args.no_warmup,
                                   return_disparities=True)
        if args.figure:
            panels = [(_panel_title(method, stage), disparity) for method, stage, disparity in
                      sorted(maps, key=lambda m: (m[1] is not None, m[1] or 0))]
            save_disparity_figure(args.figure, left, panels, gt_disparity=gt)
            print(f"wrote {args.figure}", file=sys.stderr)
    if args.json:
        _print_json({"rows": rows})
    else:
        print(markdown_table(rows))
    return 0


def _panel_title(method: str, stage: int | None) -> str:
    return method if stage is None else f"{method} stage {stage}"


def _run_eval_dataset(args: argparse.Namespace) -> int:
    from stereo_depth_ros.evaluation.datasets import open_dataset
    from stereo_depth_ros.evaluation.evaluate import evaluate_dataset, markdown_table, mean_rows

    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    with _stdout_to_stderr():
        # Open every set first so a missing folder fails before any long computation.
        datasets = [open_dataset(name, args.data_root, args.focal_px, args.baseline_m).limit(args.limit)
                    for name in args.sets]
        estimators = _estimators_from(args, args.method)
        results = {}
        for dataset in datasets:
            per_pair, means = evaluate_dataset(dataset, estimators, description=dataset.name,
                                               warmup=not args.no_warmup)
            results[dataset.name] = {"pairs": len(dataset), "rows": means, "per_pair": per_pair}
    over_sets = mean_rows(row for result in results.values() for row in result["rows"])
    for row in over_sets:
        row["sets"] = row.pop("pairs")
    keys = ("method", "stage", "epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm", "runtime_ms")
    sections = []
    for name, result in results.items():
        sections.append(f"### {name} (mean over {result['pairs']} pairs)\n\n{markdown_table(result['rows'], keys)}")
    if len(results) > 1:
        sections.append(f"### mean over sets ({len(results)} sets, each set weighted equally)\n\n"
                        f"{markdown_table(over_sets, keys)}")
    text = "\n\n".join(sections)
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(text + "\n")
        print(f"wrote {args.markdown_out}", file=sys.stderr)
    if args.json:
        _print_json({"sets": results, "mean_over_sets": over_sets})
    else:
        print(text)
    return 0


PHOTOMETRIC_KEYS = ("method", "stage", "photometric_error", "sgbm_photometric_error", "common_pct",
                    "photometric_error_all", "coverage_pct")
PHOTOMETRIC_TITLES = {"photometric_error": "error (common px)", "sgbm_photometric_error": "SGBM error (same px)",
                      "common_pct": "common px %", "photometric_error_all": "error (all own px)",
                      "coverage_pct": "coverage %"}
PHOTOMETRIC_DIGITS = {"photometric_error": 4, "sgbm_photometric_error": 4, "photometric_error_all": 4}


def photometric_rows(left_bgr: np.ndarray, right_bgr: np.ndarray, active: np.ndarray, network_maps: list,
                     sgbm_map: np.ndarray, network_name: str = "coarse-to-fine") -> list[dict]:
    """Photometric comparison of network stages with SGBM on one pair.

    For each stage ``s``: ``common = valid(d_s) & valid(d_sgbm) & active`` (``valid`` =
    :func:`~stereo_depth_ros.evaluation.metrics.disparity_valid_mask`), and the row holds the stage's error on
    ``common``, SGBM's error on the same pixels, ``common_pct = 100 |common| / |active|``, the stage's error on all its
    valid active pixels and its coverage. The SGBM row (stage None) holds its error on its own valid active pixels.

    Returns:
        rows with :data:`PHOTOMETRIC_KEYS`; errors are nan when no pixel counts.
    """
    from stereo_depth_ros.evaluation.metrics import masked_mean, photometric_error_image

    active = np.asarray(active, dtype=bool)
    active_count = max(int(np.count_nonzero(active)), 1)
    sgbm_image = photometric_error_image(left_bgr, right_bgr, sgbm_map)
    sgbm_valid = np.isfinite(sgbm_image) & active
    sgbm_error = masked_mean(sgbm_image, active)
    rows = []
    for stage, disparity in enumerate(network_maps):
        image = photometric_error_image(left_bgr, right_bgr, disparity)
        own = np.isfinite(image) & active
        common = own & sgbm_valid
        rows.append({"method": network_name, "stage": stage,
                     "photometric_error": masked_mean(image, common),
                     "sgbm_photometric_error": masked_mean(sgbm_image, common),
                     "common_pct": 100.0 * np.count_nonzero(common) / active_count,
                     "photometric_error_all": masked_mean(image, active),
                     "coverage_pct": 100.0 * np.count_nonzero(own) / active_count})
    sgbm_pct = 100.0 * np.count_nonzero(sgbm_valid) / active_count
    rows.append({"method": "sgbm", "stage": None, "photometric_error": sgbm_error,
                 "sgbm_photometric_error": sgbm_error, "common_pct": sgbm_pct,
                 "photometric_error_all": sgbm_error, "coverage_pct": sgbm_pct})
    return rows


def _photometric_sets(paths: list[str]) -> list[Path]:
    sets = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f"folder {path} does not exist")
        if _has_pair_layout(path):
            sets.append(path)
            continue
        children = sorted((c for c in path.iterdir() if c.is_dir() and _has_pair_layout(c)),
                          key=lambda c: (len(c.name), c.name))
        if not children:
            raise FileNotFoundError(f"{path} has neither left/ and right/ nor images_rectified/{{left,right}}, "
                                    f"nor sub-folders that do")
        sets.extend(children)
    return sets


def _has_pair_layout(path: Path) -> bool:
    return ((path / "left").is_dir() and (path / "right").is_dir()) or \
        ((path / "images_rectified" / "left").is_dir() and (path / "images_rectified" / "right").is_dir())


def _run_eval_photometric(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stereo_depth_ros.data.stereo_folder import StereoFolderDataset
    from stereo_depth_ros.evaluation.evaluate import markdown_table, mean_rows

    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    keys = PHOTOMETRIC_KEYS[2:]
    results = {}
    with _stdout_to_stderr():
        sets = _photometric_sets(args.dirs)
        network, sgbm = _estimators_from(args)
        for folder in sets:
            dataset = StereoFolderDataset([folder])
            count = len(dataset.pairs) if args.limit is None else min(args.limit, len(dataset.pairs))
            per_pair = []
            for index in tqdm(range(count), desc=folder.name, unit="pair", file=sys.stderr):
                left, right, active = dataset.load_pair(index)
                stage_maps = network.estimate(left, right)  # all stages of one call (no timing here)
                sgbm_map = sgbm.estimate(left, right)[0]
                name = dataset.pairs[index][0].name
                per_pair.extend({"pair": name, **row} for row in photometric_rows(
                    left, right, active, stage_maps, sgbm_map, network.name))
            means = mean_rows(per_pair, keys)
            results[str(folder)] = {"pairs": count, "rows": means, "per_pair": per_pair}
    over_sets = mean_rows((row for r in results.values() for row in r["rows"]), keys)
    for row in over_sets:
        row["sets"] = row.pop("pairs")
    sections = [f"### {name} (mean over {r['pairs']} pairs)\n\n"
                f"{markdown_table(r['rows'], PHOTOMETRIC_KEYS, PHOTOMETRIC_TITLES, digits=PHOTOMETRIC_DIGITS)}"
                for name, r in results.items()]
    if len(results) > 1:
        sections.append(f"### mean over sets ({len(results)} sets)\n\n"
                        f"{markdown_table(over_sets, PHOTOMETRIC_KEYS, PHOTOMETRIC_TITLES, digits=PHOTOMETRIC_DIGITS)}")
    text = "\n\n".join(sections)
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(text + "\n")
    if args.json:
        _print_json({"sets": results, "mean_over_sets": over_sets})
    else:
        print(text)
    return 0


def _run_benchmark(args: argparse.Namespace) -> int:
    from stereo_depth_ros.commands.benchmark import benchmark_stereo
    from stereo_depth_ros.evaluation.evaluate import markdown_table

    with _stdout_to_stderr():
        rows = benchmark_stereo(args.height, args.width, repeats=args.repeats, backend=args.backend,
                                device=args.device, weights=args.weights, isolate=not args.in_process,
                                sgbm_disparities=args.sgbm_disparities, max_disparity=args.max_disparity,
                                paired=args.paired, input_scale=args.input_scale)
    if args.json:
        _print_json({"rows": rows})
    else:
        columns = ("method", "stage", "backend", "device", "height", "width", "input_scale", "median_ms", "peak_mb")
        if args.paired:
            columns += ("paired_median_ms", "paired_sgbm_median_ms", "paired_ratio")
        print(markdown_table(rows, columns, {"input_scale": "input scale", "median_ms": "median ms",
                                             "peak_mb": "peak MiB", "paired_median_ms": "paired: ms",
                                             "paired_sgbm_median_ms": "paired: SGBM ms",
                                             "paired_ratio": "paired: x SGBM"}))
        print(f"\nmedian of {args.repeats} calls after a warm-up; peak MiB = peak resident memory above the "
              f"process's size before the method was built ({rows[-1].get('memory_method')})")
        if args.paired:
            print(f"paired: {args.repeats} rounds of one network call and one SGBM call in the same process; "
                  f"x SGBM = median over rounds of network time / SGBM time")
    return 0
