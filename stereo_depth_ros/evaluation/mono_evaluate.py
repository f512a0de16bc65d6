"""Run monocular depth models (and the two baselines) on images with GT depth and tabulate the metrics.

The models are given, never built here (this module imports no model): duck-typed monocular estimators with
``name``, ``metric`` (bool: depth in metres) and ``predict(image_bgr) -> {"depth": (H, W) float32}``, as
:class:`stereo_depth_ros.models.mono_estimator.MonocularEstimator` offers. The command line
(:mod:`stereo_depth_ros.commands.mono`) builds them through the model registry.

Rows (one per method and frame; :func:`mean_rows` averages them over frames as monodepth2 does):

- one per model: median-scaled per frame when the model is scale-free (``metric`` False) or when
  ``median_scaling=True`` is asked for every model (monodepth2 / AF-SfMLearner evaluate that way); the row's
  ``median_scaling`` says which. Its ``scale`` is always ``median GT / median prediction`` (1 for a right unit).
- ``gt-mean``: the frame's mean GT depth everywhere (:func:`~.depth_metrics.constant_depth_like`), never
  scaled: what a model that learnt no geometry would score.
- ``stereo``: the stereo network on the same view (left image) when a right image and the stereo camera model are
  given (:class:`StereoDepth`); metric, scaled only with ``median_scaling=True``.
- ``depth-filled`` (with ``fusion=True`` and a stereo method): stereo where valid, the first model's depth aligned
  to stereo elsewhere (:func:`~.depth_fusion.fuse_depth`), never scaled.
- ``stereo-confident`` (with ``fusion=True`` and a stereo method whose ``confidence_threshold`` is above 0): the
  stereo depth with the pixels whose confidence is below the threshold made invalid (NaN), as the stereo node's
  ``confidence_threshold`` parameter does; ``depth-filled`` then fills those pixels (and the no-match band) with
  the aligned monocular depth. Its ``density_pct`` says how much of the GT it covers.

Timing (``runtime_ms``): wall time of one ``predict`` (or stereo ``estimate``) call with ``time.perf_counter``,
after one untimed call per method and image size (the ONNX back-end builds a graph per input size).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from stereo_depth_ros.evaluation.figures import save_map_grid
from stereo_depth_ros.evaluation.depth_fusion import fuse_depth
from stereo_depth_ros.evaluation.depth_metrics import METRIC_KEYS, constant_depth_like, depth_metrics, \
    mean_over_frames
from stereo_depth_ros.geometry import StereoCameraModel
from stereo_depth_ros.images import check_image

GT_MEAN = "gt-mean"
STEREO = "stereo"
STEREO_CONFIDENT = "stereo-confident"
DEPTH_FILLED = "depth-filled"

JSON_ROW_KEYS = ("model", "median_scaling", "scale", "abs_rel", "sq_rel", "rmse_m", "rmse_log", "delta1", "delta2",
                 "delta3", "density_pct", "runtime_ms")
"""The fields of each row of ``eval-mono --json``, in order (the issue's contract)."""

TABLE_KEYS = ("model", "median_scaling", "frames", "scale") + tuple(k for k in METRIC_KEYS if k != "scale") + \
    ("parameters", "runtime_ms")
"""The columns of ``eval-mono-dataset``'s tables."""

COLUMN_TITLES = {"model": "model", "median_scaling": "median scaled", "frames": "frames", "scale": "scale",
                 "abs_rel": "AbsRel", "sq_rel": "SqRel m", "rmse_m": "RMSE m", "rmse_log": "RMSE log",
                 "delta1": "d<1.25", "delta2": "d<1.25^2", "delta3": "d<1.25^3", "mse_m2": "MSE m^2", "ard": "ARD",
                 "lrmse": "LRMSE", "lrmse_si": "LRMSE-SI", "srd": "SRD m", "mse_normalised": "MSE [0,1]",
                 "ssim_normalised": "SSIM [0,1]", "density_pct": "density %", "parameters": "parameters",
                 "runtime_ms": "runtime ms"}


class StereoDepth:
    """The ``stereo`` baseline: a stereo estimator's finest disparity turned into metric depth on the left view.

    Args:
        estimator: duck-typed stereo estimator (``name``, ``estimate(left_bgr, right_bgr) -> [(H, W) disparity
            px, ...]``, coarse to fine).
        camera: the pair's :class:`~stereo_depth_ros.geometry.StereoCameraModel` (``Z = fx B / (d - (cx -
            cx_right))``).
        confidence_threshold: in [0, 1]; above 0, :meth:`depth_and_confident_depth` also gives the depth with the
            pixels of confidence below it made NaN (the estimator must offer ``estimate_with_confidence(left_bgr,
            right_bgr) -> (disparities, (H, W) confidence in [0, 1])``), as the stereo node's
            ``confidence_threshold`` parameter does.

    Attributes:
        name: ``"stereo"``; metric: True.

    Raises:
        ValueError: without a camera, for a threshold outside [0, 1], or a threshold above 0 with an estimator
            that has no ``estimate_with_confidence``.
    """

    name = STEREO
    metric = True

    def __init__(self, estimator, camera: StereoCameraModel, confidence_threshold: float = 0.0) -> None:
        if camera is None:
            raise ValueError("the stereo baseline needs the pair's calibration (focal length and baseline)")
        if not 0.0 <= float(confidence_threshold) <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {confidence_threshold}")
        if confidence_threshold > 0 and not hasattr(estimator, "estimate_with_confidence"):
            raise ValueError(f"confidence_threshold {confidence_threshold} needs a stereo estimator with a "
                             f"confidence (estimate_with_confidence); {getattr(estimator, 'name', estimator)!r} "
                             f"has none")
        self.estimator = estimator
        self.camera = camera
        self.confidence_threshold = float(confidence_threshold)

    def depth(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> np.ndarray:
        """(H, W) float32 depth in metres of the left view; NaN or +-inf where stereo gives none (REP-117)."""
        disparity = self.estimator.estimate(left_bgr, right_bgr)[-1]
        return self._depth(disparity)

    def depth_and_confident_depth(self, left_bgr: np.ndarray, right_bgr: np.ndarray
                                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """The dense depth of :meth:`depth` and, with a threshold above 0, the same depth with NaN where the
        confidence is below it (None without a threshold); one network run.
        """
        if self.confidence_threshold <= 0:
            return self.depth(left_bgr, right_bgr), None
        disparities, confidence = self.estimator.estimate_with_confidence(left_bgr, right_bgr)
        depth = self._depth(disparities[-1])
        confident = depth.copy()
        confident[np.asarray(confidence) < self.confidence_threshold] = np.nan
        return depth, confident

    def _depth(self, disparity: np.ndarray) -> np.ndarray:
        return np.asarray(self.camera.depth_from_disparity(disparity), dtype=np.float32)


def parameter_count(model) -> int | None:
    """Trainable parameters of a model's network (``model.model.parameters()``), None when it has no network."""
    network = getattr(model, "model", None)
    parameters = getattr(network, "parameters", None)
    if parameters is None:
        return None
    return int(sum(p.numel() for p in parameters()))


def _timed(function: Callable, *args) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, 1000.0 * (time.perf_counter() - start)


def _predict_depth(model, image_bgr: np.ndarray) -> np.ndarray:
    outputs = model.predict(image_bgr)
    if not isinstance(outputs, Mapping) or "depth" not in outputs:
        raise RuntimeError(f"model {getattr(model, 'name', model)!r} gave no 'depth' output")
    depth = np.asarray(outputs["depth"], dtype=np.float32)
    if depth.shape != image_bgr.shape[:2]:
        raise RuntimeError(f"model {model.name!r} gave depth of shape {depth.shape} for an image of "
                           f"{image_bgr.shape[:2]}")
    return depth


def _check_inputs(image_bgr: np.ndarray, gt_depth: np.ndarray, right_bgr: np.ndarray | None) -> None:
    check_image(np.asarray(image_bgr))
    image_bgr = np.asarray(image_bgr)
    gt_depth = np.asarray(gt_depth)
    if gt_depth.shape != image_bgr.shape[:2]:
        raise ValueError(f"GT depth shape {gt_depth.shape} differs from the image's {image_bgr.shape[:2]}")
    if right_bgr is not None and np.asarray(right_bgr).shape != image_bgr.shape:
        raise ValueError(f"right image shape {np.asarray(right_bgr).shape} differs from the image's "
                         f"{image_bgr.shape}")


def evaluate_frame(image_bgr: np.ndarray, gt_depth: np.ndarray, models: Sequence = (), *,
                   right_bgr: np.ndarray | None = None, stereo: StereoDepth | None = None,
                   min_depth_m: float = 1e-3, max_depth_m: float | None = None, median_scaling: bool = False,
                   mask: np.ndarray | None = None, fusion: bool = False, warmed: set | None = None,
                   ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score every model, ``gt-mean`` and (with ``right_bgr`` and ``stereo``) ``stereo`` on one image.

    Args:
        image_bgr: (H, W, 3) uint8 BGR image (the left view of a pair).
        gt_depth: (H, W) GT depth in metres; <= 0, NaN and inf unknown.
        models: duck-typed monocular estimators (see the module doc).
        right_bgr: (H, W, 3) uint8 right image for the stereo baseline, or None.
        stereo: the stereo baseline, or None.
        min_depth_m, max_depth_m: the evaluated range (metres; None: the frame's largest GT), see
            :func:`~.depth_metrics.depth_metrics`.
        median_scaling: median-scale every model and ``stereo`` (scale-free models are scaled anyway).
        mask: optional (H, W) bool of pixels to evaluate.
        fusion: also score ``depth-filled`` (needs ``stereo``, ``right_bgr`` and a model; uses the first model) and,
            when ``stereo.confidence_threshold`` is above 0, ``stereo-confident`` (what ``depth-filled`` fills).
        warmed: keys of (method, size) already run once, updated in place (shared across a data set's frames).

    Returns:
        ``(rows, depths)``: one dict per method with ``model``, ``runtime_ms``, ``parameters`` and every key of
        :func:`~.depth_metrics.depth_metrics`; and method name -> the (H, W) float32 depth it scored (after
        scaling), for figures.

    Raises:
        ValueError: for an image that is not (H, W, 3) uint8, a GT or right image of another size, a bad range.
        RuntimeError: if a model gives no ``depth`` of the image's size.
    """
    _check_inputs(image_bgr, gt_depth, right_bgr)
    warmed = set() if warmed is None else warmed
    size = image_bgr.shape[:2]
    rows: list[dict] = []
    depths: dict[str, np.ndarray] = {}

    def score(name: str, depth: np.ndarray, runtime_ms: float, scaled: bool, parameters: int | None) -> None:
        row = depth_metrics(depth, gt_depth, min_depth_m, max_depth_m, median_scaling=scaled, mask=mask)
        row.update(model=name, runtime_ms=float(runtime_ms), parameters=parameters)
        rows.append(row)
        factor = row["scale"] if scaled and math.isfinite(row["scale"]) else 1.0
        depths[name] = (depth * np.float32(factor)).astype(np.float32)

    first_model_depth = None
    for model in models:
        key = (id(model), size)
        if key not in warmed:
            _predict_depth(model, image_bgr)
            warmed.add(key)
        depth, runtime_ms = _timed(_predict_depth, model, image_bgr)
        if first_model_depth is None:
            first_model_depth = depth
        scaled = bool(median_scaling or not getattr(model, "metric", False))
        score(model.name, depth, runtime_ms, scaled, parameter_count(model))

    baseline, runtime_ms = _timed(constant_depth_like, gt_depth, min_depth_m, max_depth_m, mask)
    score(GT_MEAN, baseline, runtime_ms, False, 0)

    if stereo is not None and right_bgr is not None:
        key = (id(stereo), size)
        if key not in warmed:
            stereo.depth(image_bgr, right_bgr)
            warmed.add(key)
        (stereo_depth, confident_depth), runtime_ms = _timed(stereo.depth_and_confident_depth, image_bgr, right_bgr)
        score(STEREO, stereo_depth, runtime_ms, bool(median_scaling), parameter_count(stereo.estimator))
        if fusion and confident_depth is not None:
            score(STEREO_CONFIDENT, confident_depth, runtime_ms, bool(median_scaling), None)
            stereo_depth = confident_depth
        if fusion and first_model_depth is not None:
            fused, _ = fuse_depth(stereo_depth, first_model_depth)
            score(DEPTH_FILLED, fused, runtime_ms, False, None)
    return rows, depths


def mean_rows(frame_rows: Iterable[Mapping]) -> list[dict]:
    """Average per-frame rows by method (monodepth2: metrics per frame, then the mean over frames).

    Returns:
        one dict per method (first-seen order) with ``model``, ``median_scaling`` (True if any frame was scaled),
        ``frames`` (frames scored), ``parameters`` and the mean of every metric key and ``runtime_ms``.
    """
    grouped: dict[str, list[Mapping]] = {}
    for row in frame_rows:
        grouped.setdefault(row["model"], []).append(row)
    result = []
    for name, rows in grouped.items():
        mean = mean_over_frames(rows, METRIC_KEYS + ("runtime_ms",))
        result.append({"model": name, "median_scaling": any(r["median_scaling"] for r in rows),
                       "frames": mean["frames_scored"], "parameters": rows[0].get("parameters"),
                       **{key: mean[key] for key in METRIC_KEYS + ("runtime_ms",)}})
    return result


def json_row(row: Mapping) -> dict:
    """The ``eval-mono --json`` row: exactly :data:`JSON_ROW_KEYS` (floats; nan becomes None in JSON)."""
    result = {}
    for key in JSON_ROW_KEYS:
        value = row[key]
        if key == "model":
            result[key] = str(value)
        elif key == "median_scaling":
            result[key] = bool(value)
        else:
            result[key] = None if value is None or not math.isfinite(float(value)) else float(value)
    return result


def _format(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("model",):
        return str(value)
    if key == "median_scaling":
        return "yes" if value else "no"
    if key in ("frames", "parameters"):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    if key in ("density_pct", "runtime_ms"):
        return f"{value:.1f}"
    if key == "scale":
        return f"{value:.3g}"
    return f"{value:.4f}"


def markdown_table(rows: Sequence[Mapping], keys: Sequence[str] = TABLE_KEYS) -> str:
    """A markdown table of ``rows`` with the given columns (titles from :data:`COLUMN_TITLES`)."""
    keys = [key for key in keys if any(key in row for row in rows)]
    lines = ["| " + " | ".join(COLUMN_TITLES.get(key, key) for key in keys) + " |",
             "|" + "|".join("---" for _ in keys) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_format(key, row.get(key)) for key in keys) + " |")
    return "\n".join(lines)


def save_depth_figure(path: str | Path, image_bgr: np.ndarray, gt_depth: np.ndarray,
                      panels: Sequence[tuple[str, np.ndarray]], cmap: str = "turbo_r", dpi: int = 100) -> Path:
    """One PNG: input | GT | each depth panel, one colour map and range (GT's 1st-99th percentile, metres).

    Args:
        path: output ``.png``.
        image_bgr: (H, W, 3) uint8 BGR input.
        gt_depth: (H, W) GT depth in metres (NaN unknown, drawn black).
        panels: ``(title, (H, W) depth in metres)`` (scaled as scored).

    Returns:
        the written path.

    Raises:
        ValueError: for a panel of another size, or no panel.
    """
    if not panels:
        raise ValueError("no depth map to draw")
    h, w = image_bgr.shape[:2]
    maps = [("ground truth", gt_depth)] + list(panels)
    for title, depth in maps:
        if np.asarray(depth).shape != (h, w):
            raise ValueError(f"{title} depth shape {np.asarray(depth).shape} differs from the image's {(h, w)}")
    gt = np.asarray(gt_depth, dtype=np.float64)
    known = gt[np.isfinite(gt) & (gt > 0)]
    vmin, vmax = (float(v) for v in np.percentile(known, (1, 99))) if known.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-3
    shown = []
    for title, depth in maps:
        depth = np.asarray(depth, dtype=np.float32)
        with np.errstate(invalid="ignore"):
            shown.append((title, np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)))
    return save_map_grid(path, image_bgr, "input", shown, vmin, vmax, cmap, "depth (m)", min(1 + len(maps), 5), dpi)
