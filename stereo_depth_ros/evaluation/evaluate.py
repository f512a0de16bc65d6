"""Run disparity estimators on pairs with ground truth and tabulate the metrics per method and stage.

The estimators are given (duck-typed :class:`~stereo_depth_ros.models.base.StereoEstimator` objects: ``name``,
``num_stages`` and ``estimate(left, right, max_stage=...)``); this module never builds one (the command line does,
through the model registry).

Timing (``runtime_ms``): wall time of the estimator's ``estimate`` call measured with ``time.perf_counter``. For a
multi-stage method every stage is run and timed on its own (``estimate(left, right, max_stage=s)``), so the runtime
of stage ``s`` is the cost of an anytime answer at that stage, and its metrics come from that call's last map. Each
(method, stage, image size) is run once untimed before it is timed (the ONNX back-end builds a graph per input size
on its first call); with ``warmup=False`` the first call's time includes that set-up.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from stereo_depth_ros.evaluation.metrics import METRIC_KEYS, stereo_metrics
from stereo_depth_ros.images import check_stereo_pair

ROW_KEYS = ("method", "stage") + METRIC_KEYS + ("runtime_ms",)
COLUMN_TITLES = {"method": "method", "stage": "stage", "epe_px": "EPE px", "bad2_pct": "bad2 %", "d1_pct": "D1 %",
                 "density_pct": "density %", "mae_mm": "MAE mm", "rmse_mm": "RMSE mm", "runtime_ms": "runtime ms"}


def _timed(function, *args, **kwargs) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    outputs = function(*args, **kwargs)
    return outputs, 1000.0 * (time.perf_counter() - start)


def run_estimator(estimator, left_bgr: np.ndarray, right_bgr: np.ndarray, warmup: bool = True,
                  warmed: set | None = None) -> list[tuple[int | None, np.ndarray, float]]:
    """Run one estimator and return ``(stage, disparity, runtime_ms)`` per stage.

    ``stage`` is None for a single-stage method (SGBM) and 0..n-1 otherwise. A multi-stage method is run and timed
    stage by stage (``estimate(left, right, max_stage=s)``); a single-stage one with one ``estimate(left, right)``.

    Args:
        estimator: a stereo estimator (``name``, ``num_stages``, ``estimate``).
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        warmup: run each (method, stage, size) once untimed first (unless it is in ``warmed``).
        warmed: set of keys already warmed up, updated in place (shared across the pairs of a data set).

    Raises:
        ValueError: from the estimator (e.g. SGBM's search range wider than the images).
        RuntimeError: if the estimator returns another number of maps than its stages.
    """
    warmed = set() if warmed is None else warmed
    size = left_bgr.shape[:2]
    stages = int(estimator.num_stages)
    results: list[tuple[int | None, np.ndarray, float]] = []
    if stages > 1:
        for stage in range(stages):
            key = (id(estimator), stage, size)
            if warmup and key not in warmed:
                estimator.estimate(left_bgr, right_bgr, max_stage=stage)
            warmed.add(key)
            outputs, runtime_ms = _timed(estimator.estimate, left_bgr, right_bgr, max_stage=stage)
            if len(outputs) != stage + 1:
                raise RuntimeError(f"{estimator.name} returned {len(outputs)} maps for max_stage={stage}")
            results.append((stage, outputs[stage], runtime_ms))
        return results
    key = (id(estimator), None, size)
    if warmup and key not in warmed:
        estimator.estimate(left_bgr, right_bgr)
    warmed.add(key)
    outputs, runtime_ms = _timed(estimator.estimate, left_bgr, right_bgr)
    if len(outputs) != 1:
        raise RuntimeError(f"{estimator.name} returned {len(outputs)} maps but declares 1 stage")
    return [(None, outputs[0], runtime_ms)]


def evaluate_pair(left_bgr: np.ndarray, right_bgr: np.ndarray, gt_disparity: np.ndarray, estimators: Sequence,
                  focal_px: float | None = None, baseline_m: float | None = None, valid: np.ndarray | None = None,
                  disparity_offset_px: float = 0.0, warmup: bool = True, warmed: set | None = None,
                  return_disparities: bool = False):
    """Metrics of every stage of every estimator on one rectified pair with ground truth.

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        gt_disparity: (H, W) float GT left disparity in pixels, NaN (or <= 0) where unknown.
        estimators: :class:`~stereo_depth_ros.models.base.StereoEstimator` objects (or duck-typed alike).
        focal_px, baseline_m: calibration (pixels, metres) for the depth errors, or None.
        valid: optional (H, W) bool of pixels to score (e.g. non-occluded).
        disparity_offset_px: Middlebury 2014 ``doffs`` for depth (0 otherwise).
        warmup, warmed: see :func:`run_estimator`.
        return_disparities: also return the maps, ``[(method, stage, disparity), ...]``.

    Returns:
        rows ``{"method", "stage", "epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm",
        "runtime_ms"}`` (one per network stage with ``stage`` 0..3, one for SGBM with ``stage`` None); with
        ``return_disparities`` a tuple ``(rows, disparities)``.

    Raises:
        ValueError: if the images are not a same-size uint8 pair, or the GT (or mask) differs from them in size.
    """
    check_stereo_pair(left_bgr, right_bgr)
    gt = np.asarray(gt_disparity, dtype=np.float32)
    if gt.shape != left_bgr.shape[:2]:
        raise ValueError(f"ground-truth disparity is {gt.shape[0]}x{gt.shape[1]} (HxW) but the images are "
                         f"{left_bgr.shape[0]}x{left_bgr.shape[1]}; they must be the same size")
    if valid is not None and np.asarray(valid).shape != gt.shape:
        raise ValueError(f"valid mask shape {np.asarray(valid).shape} differs from the ground truth's {gt.shape}")
    if not estimators:
        raise ValueError("no estimator given")
    rows, maps = [], []
    for estimator in estimators:
        for stage, disparity, runtime_ms in run_estimator(estimator, left_bgr, right_bgr, warmup, warmed):
            metrics = stereo_metrics(disparity, gt, focal_px, baseline_m, valid, disparity_offset_px)
            rows.append({"method": estimator.name, "stage": stage, **metrics, "runtime_ms": runtime_ms})
            maps.append((estimator.name, stage, disparity))
    return (rows, maps) if return_disparities else rows


def mean_rows(rows: Iterable[dict], keys: Sequence[str] = METRIC_KEYS + ("runtime_ms",)) -> list[dict]:
    """Average rows per (method, stage), in first-seen order.

    Each metric is the mean over the rows where it is a finite number; None when it is None in every row (no
    calibration), nan when no row has a finite value. Adds ``"pairs"``: how many rows were averaged.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["stage"]), []).append(row)
    result = []
    for (method, stage), group in groups.items():
        mean = {"method": method, "stage": stage}
        for key in keys:
            values = [row.get(key) for row in group]
            if all(v is None for v in values):
                mean[key] = None
                continue
            finite = [float(v) for v in values if v is not None and math.isfinite(v)]
            mean[key] = float(np.mean(finite)) if finite else math.nan
        mean["pairs"] = len(group)
        result.append(mean)
    return result


def evaluate_dataset(samples: Iterable, estimators: Sequence, progress: bool = True, description: str | None = None,
                     warmup: bool = True) -> tuple[list[dict], list[dict]]:
    """Evaluate every pair of a data set (an iterable of
    :class:`~stereo_depth_ros.evaluation.datasets.StereoSample`).

    Returns:
        ``(per_pair_rows, mean_rows)``: the :func:`evaluate_pair` rows with a ``"pair"`` name added, and their
        :func:`mean_rows` per method and stage.

    Raises:
        ValueError: as :func:`evaluate_pair`, with the pair's name.
    """
    per_pair: list[dict] = []
    warmed: set = set()
    total = len(samples) if hasattr(samples, "__len__") else None
    for sample in tqdm(samples, total=total, desc=description, unit="pair", disable=not progress, file=sys.stderr):
        try:
            rows = evaluate_pair(sample.left_bgr, sample.right_bgr, sample.gt_disparity, estimators,
                                 sample.focal_px, sample.baseline_m, sample.valid,
                                 getattr(sample, "disparity_offset_px", 0.0), warmup=warmup, warmed=warmed)
        except ValueError as error:
            raise ValueError(f"pair {sample.name}: {error}") from error
        per_pair.extend({"pair": sample.name, **row} for row in rows)
    return per_pair, mean_rows(per_pair)


def format_value(value, digits: int = 2) -> str:
    """Table cell: '-' for None/nan, ints as they are, floats with ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict], keys: Sequence[str] = ROW_KEYS, titles: dict | None = None,
                   mean_row: bool = False, digits: int | dict = 2) -> str:
    """Render rows as a GitHub markdown table (one row per method and stage).

    Args:
        rows: dicts holding ``keys``.
        keys: columns, in order.
        titles: column headings (default :data:`COLUMN_TITLES`, else the key).
        mean_row: append a row "mean" averaging every numeric column over the rows.
        digits: decimals of floats, one number or ``{key: decimals}`` (others 2).
    """
    def places(key: str) -> int:
        return digits.get(key, 2) if isinstance(digits, dict) else digits

    titles = {**COLUMN_TITLES, **(titles or {})}
    lines = ["| " + " | ".join(titles.get(k, k) for k in keys) + " |",
             "|" + "|".join("---" for _ in keys) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(k), places(k)) for k in keys) + " |")
    if mean_row and rows:
        cells = []
        for index, key in enumerate(keys):
            values = [r.get(key) for r in rows]
            numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v)]
            if index == 0:
                cells.append("**mean**")
            elif key == "stage" or not numbers:
                cells.append("")
            else:
                cells.append(format_value(float(np.mean(numbers)), places(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_ready(value):
    """Replace nan/inf floats by None (JSON has no nan) recursively in dicts and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
