"""``stereo-depth-ros eval-cross-modal`` and ``eval-cross-spectral``: NIR-to-RGB translation (CycleGAN, issue 14)
measured on held-out real NIR/RGB pairs and on synthetic cross-spectral stereo.

``eval-cross-modal`` (default data ``../shared/data/nir_rgb/indoor``, 20 pairs never trained on): each RGB is warped
onto its NIR by the pair's affine matrix (:func:`stereo_depth_ros.data.nir_rgb.read_aligned_pairs`); NIR, RGB and
the valid mask are downscaled so the short side is ``--short-side`` pixels (default 256, the scale the generators
were trained at; area interpolation, the mask by nearest neighbour). Three images are made from each NIR:

- ``replicated-nir``: the NIR in all three channels;
- ``linear-colour``: each channel an affine function of the NIR, fitted by least squares on the 52 aligned
  training pairs (``nir_rgb/country``, at the same scale) (:func:`~stereo_depth_ros.evaluation.cross_modal_metrics.
  fit_linear_colour`);
- ``pseudo-rgb``: the ``cyclegan-nir-to-rgb`` generator;
- with ``--oracle-colour`` also ``oracle-linear-colour``: the per-channel affine fit on the scored pair itself, a
  bound for any global colour mapping (it reads the answer; not a method).

Each is scored against the warped real RGB inside the valid mask: PSNR (dB), SSIM and the mean angular colour error
(degrees) (:mod:`stereo_depth_ros.evaluation.cross_modal_metrics`). Depth: the packaged monocular ``dispnet-subpixel``
runs on each method's image and on the real RGB (every image with the area outside the valid mask set to black, as
the warped RGB has it); the method's depth is scored against the depth from the real RGB inside the valid mask
(AbsRel, delta < 1.25; :func:`stereo_depth_ros.evaluation.depth_metrics.depth_metrics`) with per-frame median
scaling, since these photographs are not from the rig DispNet was trained on (BDIS synthetic) and its metric scale
means nothing here. The reference is itself a network output: the numbers say how close each input brings the
depth to what RGB gives, not how right any depth is.

``eval-cross-spectral``: rectified RGB stereo pairs with GT disparity (BDIS synthetic sets 32 and 33, Middlebury
2003 cones and teddy, Middlebury 2014 Motorcycle quarter size); the left view is turned into NIR by the
``cyclegan-rgb-to-nir`` generator (a simulated NIR camera). With ``--real-nir DIR`` also real aligned NIR/RGB
photographs made into stereo pairs by a known shift (:func:`stereo_depth_ros.data.nir_rgb.shifted_real_pairs`). The
stereo method (``--method``: the packaged ``coarse-to-fine`` network, final stage, or SGBM) is scored by EPE (and
density) on (NIR, RGB), on the NIR given the RGB view's histograms, on the pair in each modality of
:func:`stereo_depth_ros.models.cross_modal.same_modality_pair` (what ``cross_modal_node`` matches) and on (RGB, RGB)
as the upper bound.

stdout carries only the result (a markdown table, or with ``--json`` exactly one JSON document); progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from stereo_depth_ros.data.nir_rgb import downscale_aligned_pair, find_nir_rgb_pairs, read_aligned_pairs, \
    resize_short_side, shifted_real_pairs
from stereo_depth_ros.evaluation.cross_modal_metrics import apply_linear_colour, colour_metrics, fit_linear_colour
from stereo_depth_ros.evaluation.datasets import default_data_root
from stereo_depth_ros.evaluation.depth_metrics import depth_metrics, mean_over_frames
from stereo_depth_ros.images import read_image
from stereo_depth_ros.models.cross_modal import PAIR_MODALITIES, match_colour_histograms, nir_to_grey, \
    same_modality_pair
from stereo_depth_ros.resources import check_training_folders

METHODS = ("replicated-nir", "linear-colour", "pseudo-rgb")
ORACLE_METHOD = "oracle-linear-colour"
ROW_FIELDS = ("method", "psnr_db", "ssim", "angular_error_deg", "depth_abs_rel", "depth_delta1")
DATA_ENV = "STEREO_DEPTH_ROS_NIR_RGB"
SPECTRAL_SETS = ("bdis-synthetic-32", "bdis-synthetic-33", "middlebury2003-cones", "middlebury2003-teddy",
                 "middlebury2014-motorcycle-q")
#: The stereo inputs eval-cross-spectral scores, left view first: the raw NIR, the NIR given the RGB view's
#: histograms, the three modalities of models.cross_modal.same_modality_pair, and (RGB, RGB), the upper bound.
PAIR_KEYS = {"pseudo-rgb": "pseudo-rgb-rgb", "pseudo-rgb-matched": "pseudo-rgb-matched-rgb",
             "pseudo-nir": "nir-pseudo-nir"}
SPECTRAL_PAIRS = ("nir-rgb", "nir-matched-rgb", *PAIR_KEYS.values(), "rgb-rgb")
SPECTRAL_HEADINGS = {"nir-rgb": "(NIR, RGB)", "nir-matched-rgb": "(NIR matched, RGB)",
                     "pseudo-rgb-rgb": "(pseudo-RGB, RGB)", "pseudo-rgb-matched-rgb": "(pseudo-RGB matched, RGB)",
                     "nir-pseudo-nir": "(NIR, pseudo-NIR)", "rgb-rgb": "(RGB, RGB)"}
REAL_SHIFT_PX = 16
SPECTRAL_METHODS = ("coarse-to-fine", "sgbm")
MIN_DEPTH = 1e-6  # relative depth: only its ratio to the reference counts (median scaling)


def default_nir_rgb_root() -> Path:
    """``$STEREO_DEPTH_ROS_NIR_RGB`` when set, else ``../shared/data/nir_rgb`` beside the repository."""
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else default_data_root() / "nir_rgb"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-cross-modal`` and ``eval-cross-spectral``."""
    modal = sub.add_parser("eval-cross-modal", help="NIR-to-RGB translation on held-out NIR/RGB pairs: colour "
                                                    "metrics and monocular depth against the real RGB",
                           description="Score replicated NIR, a linear colour fit and the CycleGAN pseudo-RGB "
                                       "against the aligned real RGB (docs/cross_modal.md).")
    modal.add_argument("--data", metavar="DIR", help="held-out pairs (default ../shared/data/nir_rgb/indoor, or "
                                                     f"${DATA_ENV}/indoor)")
    modal.add_argument("--train-data", metavar="DIR", help="aligned pairs the linear colour baseline is fitted on "
                                                           "(default ../shared/data/nir_rgb/country)")
    modal.add_argument("--weights", metavar="PATH", help="nir-to-rgb generator (default: the packaged one)")
    modal.add_argument("--short-side", type=int, default=256, help="evaluate at this short side in pixels "
                                                                   "(default 256, the training scale)")
    modal.add_argument("--limit", type=int, help="first N pairs only")
    modal.add_argument("--figure", metavar="OUT.jpg", help="figure: NIR | pseudo-RGB | real RGB | depth of each")
    modal.add_argument("--oracle-colour", action="store_true",
                       help="add the row oracle-linear-colour: a per-channel affine colour map fitted on each scored "
                            "pair itself (a bound for any global colour mapping, not a method)")
    modal.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    modal.add_argument("--json", action="store_true", help="print exactly one JSON document instead of a table")
    modal.set_defaults(run=_run_cross_modal)

    spectral = sub.add_parser("eval-cross-spectral", help="stereo EPE on NIR/RGB pairs (simulated NIR, or real NIR "
                                                          "shifted by a known disparity) in every pair modality",
                              description="Turn the left view of GT stereo pairs into NIR with the rgb-to-nir "
                                          "generator (and, with --real-nir, shift real aligned NIR/RGB photographs "
                                          "by a known disparity) and measure the stereo EPE on the raw pair, in "
                                          "each modality of cross_modal_node's pair_modality and on (RGB, RGB) "
                                          "(docs/cross_modal.md).")
    spectral.add_argument("--sets", nargs="*", default=list(SPECTRAL_SETS), help="registered sets with GT disparity "
                                                                                "(none: only --real-nir)")
    spectral.add_argument("--data-root", help="folder holding the registered sets (default ../shared/data)")
    spectral.add_argument("--limit", type=int, help="first N pairs of each set only")
    spectral.add_argument("--nir-weights", metavar="PATH", help="rgb-to-nir generator (default: packaged)")
    spectral.add_argument("--rgb-weights", metavar="PATH", help="nir-to-rgb generator (default: packaged)")
    spectral.add_argument("--real-nir", metavar="DIR", help="also score real aligned NIR/RGB photographs (e.g. "
                                                            "../shared/data/nir_rgb/indoor) made into stereo pairs "
                                                            "by a known shift")
    spectral.add_argument("--shift", type=int, default=REAL_SHIFT_PX, help="that shift, the GT disparity in pixels "
                                                                           f"(default {REAL_SHIFT_PX})")
    spectral.add_argument("--pixel-aligned", action="store_true", help="the --real-nir photographs are pixel-aligned "
                                                                       "already (nir_rgb/country: no matrices)")
    spectral.add_argument("--stereo-weights", metavar="PATH", help="coarse-to-fine weights (default: packaged)")
    spectral.add_argument("--method", default="coarse-to-fine", choices=SPECTRAL_METHODS,
                          help="stereo method (default the packaged network; sgbm: OpenCV SGBM)")
    spectral.add_argument("--stage", type=int, default=None, choices=range(4), metavar="{0,1,2,3}",
                          help="coarse-to-fine: the stage scored (default 3, the last; cross_modal_node's default "
                               "output_stage)")
    spectral.add_argument("--confidence-threshold", type=float, default=0.0, metavar="T",
                          help="coarse-to-fine: score only pixels with confidence >= T, as the node's "
                               "confidence_threshold does (default 0 = off)")
    spectral.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    spectral.add_argument("--json", action="store_true", help="print exactly one JSON document instead of a table")
    spectral.set_defaults(run=_run_cross_spectral)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fit_training_colour(folder: Path, short_side: int | None) -> np.ndarray:
    """The ``linear-colour`` fit ((3, 2), BGR rows) on the aligned pairs of ``folder`` at ``short_side``.

    Raises:
        FileNotFoundError: if the folder has no pairs.
    """
    nirs, rgbs = [], []
    for nir_path, rgb_path in find_nir_rgb_pairs(folder):
        nirs.append(resize_short_side(read_image(nir_path, cv2.IMREAD_GRAYSCALE, "NIR image"), short_side))
        rgbs.append(resize_short_side(read_image(rgb_path, cv2.IMREAD_COLOR, "RGB image"), short_side))
    return fit_linear_colour(nirs, rgbs)


def _check_positive(value, label: str) -> None:
    if value is not None and (int(value) != value or value <= 0):
        raise ValueError(f"{label} must be a positive integer, got {value!r}")


def evaluate_cross_modal(data: Path, train_data: Path, weights=None, short_side: int | None = 256,
                         limit: int | None = None, backend: str = "auto", figure: str | Path | None = None,
                         oracle_colour: bool = False) -> dict:
    """Run the ``eval-cross-modal`` protocol (module docstring).

    ``oracle_colour`` adds the row ``oracle-linear-colour``: each channel an affine function of the NIR fitted by
    least squares on the very pair it is scored on (inside its valid mask). It reads the answer, so it is not a
    method: it bounds what any global per-channel colour mapping of the NIR could reach on these pairs.

    Returns:
        ``{"rows": [{"method", "psnr_db", "ssim", "angular_error_deg", "depth_abs_rel", "depth_delta1"}, ...],
        "pairs": N, "frames": [per-pair rows], "linear_colour_fit": (3, 2) list}``, means over the pairs.

    Raises:
        FileNotFoundError: for missing data; ValueError: for a bad limit or short side, or test data as
        ``train_data`` (:func:`~stereo_depth_ros.resources.check_training_folders`: e.g. the held-out indoor pairs);
        stereo_depth_ros.models.weights.WeightsError: for bad weights.
    """
    from stereo_depth_ros.models.registry import create_estimator

    _check_positive(limit, "limit")
    _check_positive(short_side, "short side")
    check_training_folders([train_data], "eval-cross-modal (the linear colour baseline's fit)")
    pairs = read_aligned_pairs(data, limit)
    _progress(f"eval-cross-modal: {len(pairs)} pairs from {data}; fitting the linear colour baseline on {train_data}")
    coefficients = fit_training_colour(train_data, short_side)
    translator = create_estimator("cyclegan-nir-to-rgb", weights=weights, backend=backend)
    depth_model = create_estimator("dispnet-subpixel", backend=backend)
    methods = (*METHODS, ORACLE_METHOD) if oracle_colour else METHODS
    frames = []
    figure_rows = []
    for index, pair in enumerate(pairs):
        nir, rgb, valid = downscale_aligned_pair(pair, short_side)
        images = {"replicated-nir": np.repeat(nir[..., None], 3, axis=2),
                  "linear-colour": apply_linear_colour(nir, coefficients),
                  "pseudo-rgb": translator.predict(nir)["image"]}
        if oracle_colour:
            images[ORACLE_METHOD] = apply_linear_colour(nir, fit_linear_colour([nir], [rgb], [valid]))
        images = {name: np.where(valid[..., None], image, 0).astype(np.uint8) for name, image in images.items()}
        reference_depth = depth_model.predict(rgb)["depth"]
        depths = {}
        for method, image in images.items():
            depths[method] = depth_model.predict(image)["depth"]
            scores = colour_metrics(image, rgb, valid)
            depth_row = depth_metrics(depths[method], reference_depth, min_depth_m=MIN_DEPTH, median_scaling=True,
                                      mask=valid)
            frames.append({"pair": pair.name, "method": method, **scores, "depth_abs_rel": depth_row["abs_rel"],
                           "depth_delta1": depth_row["delta1"]})
        if index < 3:
            figure_rows.append((pair.name, nir, images["pseudo-rgb"], rgb, depths, reference_depth, valid))
        _progress(f"  pair {pair.name}: " + ", ".join(
            f"{row['method']} PSNR {row['psnr_db']:.2f}" for row in frames[-len(methods):]))
    rows = []
    for method in methods:
        mine = [row for row in frames if row["method"] == method]
        rows.append({"method": method, **{key: float(np.nanmean([row[key] for row in mine]))
                                          for key in ROW_FIELDS[1:]}})
    if figure:
        write_figure(figure, figure_rows)
    return {"rows": rows, "pairs": len(pairs), "frames": frames, "linear_colour_fit": coefficients.tolist()}


def _depth_colour(depth: np.ndarray, valid: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.clip((depth - low) / max(high - low, 1e-9), 0, 1)
    colour = cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    colour[~valid] = 0
    return colour


def write_figure(path: str | Path, rows) -> Path:
    """Write the figure: one row per pair, NIR | pseudo-RGB | real RGB | depth(NIR) | depth(pseudo-RGB) |
    depth(RGB) (depth median-scaled to the RGB's, one colour range per row: 2nd..98th percentile of the RGB's
    depth inside the valid mask; turbo, near = blue), as a JPEG (or PNG by the suffix).

    Raises:
        ValueError: for no rows, or an image format OpenCV cannot write.
    """
    if not rows:
        raise ValueError("no pairs to draw")
    lines = []
    for name, nir, pseudo, rgb, depths, reference, valid in rows:
        low, high = np.percentile(reference[valid], [2, 98])
        tiles = [np.repeat(nir[..., None], 3, axis=2), pseudo, rgb]
        for method in ("replicated-nir", "pseudo-rgb"):
            depth = depths[method]
            scale = np.median(reference[valid]) / np.median(depth[valid])
            tiles.append(_depth_colour(depth * scale, valid, low, high))
        tiles.append(_depth_colour(reference, valid, low, high))
        line = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
        lines.append(line)
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    header = np.full((24, width, 3), 255, np.uint8)
    tile_width = lines[0].shape[1] // 6
    for column, label in enumerate(("NIR", "pseudo-RGB", "real RGB (warped)", "depth: NIR", "depth: pseudo-RGB",
                                    "depth: real RGB")):
        cv2.putText(header, label, (column * tile_width + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    image = np.concatenate([header, *lines], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise ValueError(f"cannot write the figure {path} (unknown image format?)")
    return path


def _json_number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _print_rows(rows, fields, title: str) -> None:
    print(title)
    print("| " + " | ".join(fields) + " |")
    print("|" + "---|" * len(fields))
    for row in rows:
        print("| " + " | ".join(row[f] if isinstance(row[f], str) else f"{row[f]:.3f}" for f in fields) + " |")


def _run_cross_modal(args: argparse.Namespace) -> int:
    root = default_nir_rgb_root()
    data = Path(args.data) if args.data else root / "indoor"
    train_data = Path(args.train_data) if args.train_data else root / "country"
    result = evaluate_cross_modal(data, train_data, weights=args.weights, short_side=args.short_side,
                                  limit=args.limit, backend=args.backend, figure=args.figure,
                                  oracle_colour=args.oracle_colour)
    if args.json:
        rows = [{"method": row["method"], **{key: _json_number(row[key]) for key in ROW_FIELDS[1:]}}
                for row in result["rows"]]
        print(json.dumps({"rows": rows}, indent=2, allow_nan=False))
    else:
        _print_rows(result["rows"], ROW_FIELDS, f"NIR -> RGB on {result['pairs']} held-out pairs of {data} "
                                                f"(means; depth: dispnet-subpixel vs on the real RGB, median-scaled)")
    return 0


class _LastTranslation:
    """An image-to-image estimator that reuses its last result for an equal input, so that the two pseudo-RGB
    modalities of ``same_modality_pair`` run the NIR -> RGB generator once per pair (only ``predict`` is used)."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator
        self._last: tuple[np.ndarray, dict] | None = None

    def predict(self, image: np.ndarray) -> dict:
        if self._last is None or not np.array_equal(self._last[0], image):
            self._last = (image.copy(), self.estimator.predict(image))
        return self._last[1]


def evaluate_cross_spectral(sets, data_root=None, limit: int | None = None, nir_weights=None, rgb_weights=None,
                            backend: str = "auto", real_nir=None, shift_px: int = REAL_SHIFT_PX,
                            pixel_aligned: bool = False, method: str = "coarse-to-fine",
                            confidence_threshold: float = 0.0, stereo_weights=None, stage: int | None = None
                            ) -> dict:
    """Run the ``eval-cross-spectral`` protocol (module docstring).

    Args:
        sets: registered GT sets whose left view becomes simulated NIR.
        real_nir: optional folder of aligned NIR/RGB photographs (``nir_rgb/indoor``) scored as real NIR/RGB pairs
            with a known shift of ``shift_px`` pixels (``data.nir_rgb.shifted_real_pairs``), set name
            ``"<folder>-shift<s>"``; ``pixel_aligned`` for photographs that need no warp.
        method: the stereo method, ``"coarse-to-fine"`` (the packaged network, final stage) or ``"sgbm"`` (OpenCV
            SGBM as the stereo node runs it; its EPE is on the pixels where it has a value, see the density).
        stereo_weights: coarse-to-fine weights (None: the packaged ones), e.g. those of ``train-stereo
            --cross-spectral``.
        stage: coarse-to-fine only: the stage scored, 0..3 (None: the last, 3; the node's ``output_stage``).
        confidence_threshold: coarse-to-fine only: drop the pixels whose confidence (the node's
            ``disparity/confidence``, the estimator's default measure) is below it, as the node's
            ``confidence_threshold`` parameter does (:func:`stereo_depth_ros.models.confidence
            .apply_confidence_threshold`); 0 = off.

    Returns:
        ``{"rows": [{"set", "pairs", and for each key of SPECTRAL_PAIRS its EPE in pixels and, as
        ``"density:<key>"``, the percentage of GT-valid pixels with a disparity}, ..., {"set": "all", ...}
        (mean over every pair of the simulated sets)], "frames": [...]}``. The real set's row comes after "all".

    Raises:
        FileNotFoundError: for a missing set; ValueError: for an unknown set, a bad limit or shift.
    """
    from stereo_depth_ros.evaluation.datasets import open_dataset
    from stereo_depth_ros.evaluation.metrics import density_pct, epe_px
    from stereo_depth_ros.models.confidence import apply_confidence_threshold
    from stereo_depth_ros.models.registry import create_estimator

    _check_positive(limit, "limit")
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"unknown stereo method {method!r}; expected one of {', '.join(SPECTRAL_METHODS)}")
    if method == "sgbm" and (stereo_weights is not None or stage is not None):
        raise ValueError("stereo weights and stages are the coarse-to-fine network's; sgbm has none")
    if not 0.0 <= confidence_threshold <= 1.0 or (confidence_threshold > 0 and method == "sgbm"):
        raise ValueError(f"confidence threshold must be in [0, 1] and needs the coarse-to-fine network, got "
                         f"{confidence_threshold} with {method}")
    to_nir = create_estimator("cyclegan-rgb-to-nir", weights=nir_weights, backend=backend)
    to_rgb = _LastTranslation(create_estimator("cyclegan-nir-to-rgb", weights=rgb_weights, backend=backend))
    stereo = (create_estimator(method) if method == "sgbm"
              else create_estimator(method, backend=backend, weights=stereo_weights,
                                    **({} if stage is None else {"max_stage": stage})))

    def score(set_name: str, name: str, nir, left_rgb, right_rgb, gt, valid=None) -> dict:
        nir_bgr = np.repeat(nir_to_grey(nir)[..., None], 3, axis=2)
        views = {"nir-rgb": (nir_bgr, right_rgb),
                 "nir-matched-rgb": (match_colour_histograms(nir_bgr, right_rgb), right_rgb),
                 **{PAIR_KEYS[modality]: same_modality_pair(nir, right_rgb, modality, to_rgb, to_nir)
                    for modality in PAIR_MODALITIES},
                 "rgb-rgb": (left_rgb, right_rgb)}
        row = {"set": set_name, "pair": name}
        for key, (left, right) in views.items():
            if confidence_threshold > 0:
                disparities, confidence = stereo.estimate_with_confidence(left, right)
                disparity = apply_confidence_threshold(disparities[-1], confidence, confidence_threshold)
            else:
                disparity = stereo.estimate(left, right)[-1]
            row[key] = epe_px(disparity, gt, valid)
            row[f"density:{key}"] = density_pct(disparity, gt, valid)
        _progress(f"  {name}: " + ", ".join(f"{key} {row[key]:.2f} px" for key in SPECTRAL_PAIRS))
        return row

    fields = [*SPECTRAL_PAIRS, *(f"density:{key}" for key in SPECTRAL_PAIRS)]

    def summary(set_name: str, mine: list[dict]) -> dict:
        means = mean_over_frames(mine, keys=fields)  # a pair with no scored pixel is left out of that mean
        return {"set": set_name, "pairs": len(mine), **{f: means[f] for f in fields}}

    frames, rows = [], []
    for name in sets:
        dataset = open_dataset(name, data_root).limit(limit)
        mine = [score(name, sample.name, to_nir.predict(sample.left_bgr)["image"], sample.left_bgr,
                      sample.right_bgr, sample.gt_disparity, sample.valid) for sample in dataset]
        frames.extend(mine)
        rows.append(summary(name, mine))
    if sets:
        rows.append(summary("all", frames))
    if real_nir is not None:
        real_name = f"{Path(real_nir).name}-shift{shift_px}"
        _progress(f"eval-cross-spectral: real NIR/RGB pairs of {real_nir}, shifted by {shift_px} px")
        mine = [score(real_name, pair["name"], pair["nir"], pair["left_rgb"], pair["right_rgb"], pair["gt_disparity"])
                for pair in shifted_real_pairs(real_nir, shift_px, limit=limit, pixel_aligned=pixel_aligned)]
        frames.extend(mine)
        rows.append(summary(real_name, mine))
    return {"rows": rows, "frames": frames}


def _run_cross_spectral(args: argparse.Namespace) -> int:
    result = evaluate_cross_spectral(args.sets, args.data_root, args.limit, args.nir_weights, args.rgb_weights,
                                     args.backend, args.real_nir, args.shift, args.pixel_aligned,
                                     args.method, args.confidence_threshold, args.stereo_weights, args.stage)
    if args.json:
        rows = [{"set": row["set"], "pairs": row["pairs"],
                 **{f"epe_px_{key.replace('-', '_')}": _json_number(row[key]) for key in SPECTRAL_PAIRS},
                 **{f"density_pct_{key.replace('-', '_')}": _json_number(row[f"density:{key}"])
                    for key in SPECTRAL_PAIRS}}
                for row in result["rows"]]
        print(json.dumps({"rows": rows}, indent=2, allow_nan=False))
    else:
        dense = args.method != "sgbm" and args.confidence_threshold == 0
        stage = "final stage" if args.stage is None else f"stage {args.stage}"
        print(f"Stereo EPE (px, {args.method}{', ' + stage if dense else ', on its pixels (density %)'}"
              f"{f', confidence >= {args.confidence_threshold}' if args.confidence_threshold else ''}); "
              "simulated sets: the left view turned into NIR by cyclegan-rgb-to-nir")
        print("| set | pairs | " + " | ".join(SPECTRAL_HEADINGS[key] for key in SPECTRAL_PAIRS) + " |")
        print("|---|---|" + "---|" * len(SPECTRAL_PAIRS))
        for row in result["rows"]:
            cells = [f"{row[key]:.2f}" + ("" if dense else f" ({row[f'density:{key}']:.0f} %)")
                     for key in SPECTRAL_PAIRS]
            print(f"| {row['set']} | {row['pairs']} | " + " | ".join(cells) + " |")
    return 0
