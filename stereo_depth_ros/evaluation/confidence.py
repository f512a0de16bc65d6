"""Sparsification curves: how well a per-pixel confidence orders the errors of a disparity map (pure NumPy).

The stereo confidence literature's standard test (Hu and Mordohai, "A Quantitative Evaluation of Confidence Measures
for Stereo Vision", TPAMI 2012, section 4; Poggi et al., "On the confidence of stereo matching in a deep-learning
era", TPAMI 2021, section 5): remove the pixels with the lowest confidence, a growing fraction at a time, and plot
the error (here the end-point error, EPE, in pixels) of the pixels that remain. A useful confidence gives a curve
that falls; the *oracle* curve removes the pixels with the largest true error first and is the lowest possible.
The area under the curve (AUC) summarises it: lower is better, and the oracle AUC is its floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stereo_depth_ros.evaluation.masks import restrict_to_mask

#: Removed fractions reported in tables (0 %, 10 %, 30 %, 50 %, 70 %, 90 % of the pixels).
TABLE_FRACTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
#: Removed fractions the curve and its AUC are computed at: 0 to 90 % in steps of 1 %.
CURVE_FRACTIONS = np.round(np.arange(0, 91) / 100.0, 2)


@dataclass(frozen=True)
class Sparsification:
    """A sparsification curve and its area.

    Attributes:
        fractions: (K,) float64 removed fractions in [0, 0.9] (:data:`CURVE_FRACTIONS`).
        epe: (K,) float64 mean absolute disparity error (pixels) of the pixels left after removing that fraction
            of lowest-confidence pixels.
        oracle_epe: (K,) float64 the same when the pixels with the largest true error are removed first.
        auc: area under ``epe`` over the fractions, divided by their span (0.9): the curve's mean EPE, pixels.
        oracle_auc: the same for the oracle (the lowest AUC any confidence can reach on these errors).
        pixels: number of pixels scored.
    """

    fractions: np.ndarray
    epe: np.ndarray
    oracle_epe: np.ndarray
    auc: float
    oracle_auc: float
    pixels: int

    def epe_at(self, fraction: float) -> float:
        """The curve's EPE (pixels) after removing ``fraction`` of the pixels (one of :attr:`fractions`).

        Raises:
            ValueError: for a fraction that is not on the curve.
        """
        index = np.flatnonzero(np.isclose(self.fractions, fraction))
        if index.size == 0:
            raise ValueError(f"fraction {fraction} is not on the curve (0 to 0.9 in steps of 0.01)")
        return float(self.epe[index[0]])


def _remaining_mean(sorted_errors: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Mean of ``sorted_errors[removed:]`` for each fraction removed from the front (cumulative sums, O(N))."""
    n = sorted_errors.size
    tail_sums = np.concatenate((np.cumsum(sorted_errors[::-1], dtype=np.float64)[::-1], [0.0]))
    removed = np.minimum(np.floor(fractions * n + 1e-9).astype(np.int64), n - 1)
    return tail_sums[removed] / (n - removed)


def _scored_pixels(error, confidence, mask) -> tuple[np.ndarray, np.ndarray]:
    """The (N,) float64 errors and confidences of the scored pixels (finite error, and ``mask``); NaN confidence
    becomes -inf (the lowest).

    Raises:
        ValueError: for arrays of different shapes, no pixel to score, or a negative error.
    """
    error = np.asarray(error, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if error.shape != confidence.shape:
        raise ValueError(f"error {error.shape} and confidence {confidence.shape} differ in shape")
    keep = restrict_to_mask(np.isfinite(error), mask, "error")
    errors = error[keep]
    if errors.size == 0:
        raise ValueError("no pixel to score: the error is unknown (NaN) or masked everywhere")
    if np.any(errors < 0):
        raise ValueError("errors must be absolute (>= 0)")
    return errors, np.nan_to_num(confidence[keep], nan=-np.inf)


def _least_confident_first(scores: np.ndarray, seed: int) -> np.ndarray:
    """Indices of the (N,) ``scores`` (no NaN) in increasing order, ties in a fixed random order (``seed``) so
    that they never favour the image's raster order."""
    shuffle = np.random.default_rng(seed).permutation(scores.size)
    return shuffle[np.argsort(scores[shuffle], kind="stable")]


def _area(values: np.ndarray, fractions: np.ndarray) -> float:
    span = fractions[-1] - fractions[0]
    return float(np.sum((values[1:] + values[:-1]) * np.diff(fractions)) / 2.0 / span)


def sparsification(error: np.ndarray, confidence: np.ndarray, mask: np.ndarray | None = None,
                   fractions: np.ndarray = CURVE_FRACTIONS, seed: int = 0) -> Sparsification:
    """The sparsification curve of a confidence map against the true errors.

    Pixels are removed in increasing order of confidence; pixels of equal confidence (e.g. a binary confidence) are
    removed in a fixed random order (``seed``), so that ties never favour the image's raster order.

    Args:
        error: (H, W) or (N,) absolute disparity error per pixel, pixels (>= 0), NaN where unknown.
        confidence: same shape, any real values (higher = more confident); NaN counts as the lowest.
        mask: optional bool array of the same shape: pixels to score (and-ed with finite error).
        fractions: increasing removed fractions in [0, 1), the first 0 (default 0 to 0.9 in 1 % steps).
        seed: seed of the tie-breaking order.

    Returns:
        :class:`Sparsification`.

    Raises:
        ValueError: for arrays of different shapes, bad fractions, or no pixel to score.

    Example:
        >>> error = np.array([4.0, 3.0, 2.0, 1.0])
        >>> result = sparsification(error, -error, fractions=np.array([0.0, 0.5]))
        >>> result.epe.tolist(), result.oracle_epe.tolist()
        ([2.5, 1.5], [2.5, 1.5])
        >>> sparsification(error, error, fractions=np.array([0.0, 0.5])).epe.tolist()   # the worst order
        [2.5, 3.5]
    """
    errors, scores = _scored_pixels(error, confidence, mask)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size < 2 or fractions[0] != 0.0 or np.any(np.diff(fractions) <= 0) \
            or fractions[-1] >= 1.0:
        raise ValueError("fractions must increase from 0 and stay below 1, with at least two values")
    by_confidence = _least_confident_first(scores, seed)
    epe = _remaining_mean(errors[by_confidence], fractions)
    oracle = _remaining_mean(np.sort(errors)[::-1], fractions)
    return Sparsification(fractions, epe, oracle, _area(epe, fractions), _area(oracle, fractions), int(errors.size))


def epe_at_density(error: np.ndarray, confidence: np.ndarray, density: float, mask: np.ndarray | None = None,
                   seed: int = 0) -> tuple[float, float]:
    """EPE of the most confident ``density`` share of the scored pixels, and the confidence threshold that keeps them.

    Compares a dense method with a sparse one at the same density (Poggi et al., TPAMI 2021, section 5: a
    confidence measure turns a dense map into a sparse one of any density): give ``density`` = the sparse method's
    share of the pixels, then compare the two EPEs. Ties in confidence are broken as :func:`sparsification` breaks
    them (a fixed random order, ``seed``).

    Args:
        error: (H, W) or (N,) absolute disparity error per pixel, pixels (>= 0), NaN where unknown.
        confidence: same shape, higher = more confident; NaN counts as the lowest.
        density: share of the scored pixels to keep, in (0, 1]; at least one pixel is kept.
        mask: optional bool array of the same shape: pixels to score (and-ed with finite error).
        seed: seed of the tie-breaking order.

    Returns:
        ``(epe, threshold)``: the mean error (pixels) of the kept pixels, and the lowest confidence among them (the
        node's ``confidence_threshold`` that keeps about that share).

    Raises:
        ValueError: for arrays of different shapes, a density outside (0, 1], or no pixel to score.

    Example:
        >>> epe_at_density(np.array([4.0, 3.0, 2.0, 1.0]), np.array([0.1, 0.2, 0.7, 0.9]), 0.5)
        (1.5, 0.7)
    """
    if not (np.isfinite(density) and 0.0 < density <= 1.0):
        raise ValueError(f"density must be in (0, 1], got {density}")
    errors, scores = _scored_pixels(error, confidence, mask)
    most_confident_first = _least_confident_first(scores, seed)[::-1]
    kept = most_confident_first[:max(1, int(round(density * errors.size)))]
    return float(errors[kept].mean()), float(scores[kept[-1]])


def mean_sparsification(curves: list[Sparsification]) -> Sparsification:
    """The mean of per-image curves (each image weighs the same, as in Poggi et al. 2021) and of their AUCs.

    Raises:
        ValueError: for an empty list or curves on different fractions.
    """
    if not curves:
        raise ValueError("no sparsification curve to average")
    fractions = curves[0].fractions
    if any(not np.array_equal(c.fractions, fractions) for c in curves):
        raise ValueError("the curves were computed at different fractions")
    return Sparsification(fractions, np.mean([c.epe for c in curves], axis=0),
                          np.mean([c.oracle_epe for c in curves], axis=0), float(np.mean([c.auc for c in curves])),
                          float(np.mean([c.oracle_auc for c in curves])), int(sum(c.pixels for c in curves)))


#: Confidence thresholds of :func:`threshold_effect` tables (the node's ``confidence_threshold``).
TABLE_THRESHOLDS = (0.0, 0.1, 0.25, 0.5, 0.75)


def threshold_effect(error: np.ndarray, confidence: np.ndarray, thresholds=TABLE_THRESHOLDS,
                     mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What a confidence threshold does: the share of pixels kept (confidence >= t) and their EPE.

    Args:
        error: (H, W) absolute disparity error, pixels, NaN where unknown.
        confidence: same shape, in [0, 1].
        thresholds: the thresholds t.
        mask: optional bool array: the pixels to score (and-ed with finite error).

    Returns:
        ``(kept, epe)``: float64 arrays, one value per threshold: the fraction of scored pixels kept (0..1) and the
        mean error of those (pixels; NaN when none is kept).

    Raises:
        ValueError: for arrays of different shapes, no pixel to score, or a negative error.

    Example:
        >>> kept, epe = threshold_effect(np.array([4.0, 2.0, 1.0]), np.array([0.1, 0.6, 0.9]), (0.0, 0.5, 0.95))
        >>> kept.round(3).tolist(), epe.tolist()
        ([1.0, 0.667, 0.0], [2.3333333333333335, 1.5, nan])
    """
    errors, scores = _scored_pixels(error, confidence, mask)  # NaN confidence (-inf) is below every threshold
    kept, epe = [], []
    for threshold in thresholds:
        keep = scores >= threshold
        kept.append(keep.mean())
        epe.append(errors[keep].mean() if keep.any() else np.nan)
    return np.array(kept), np.array(epe)
