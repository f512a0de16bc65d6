"""Scale alignment of a relative depth to a metric one, and the fused ``depth_filled``: stereo where it measured,
aligned monocular depth where it did not.

Beyond the papers (issue 11): a monocular network gives a depth everywhere, but only up to a scale unless it is
metric on this rig; a stereo network gives metric depth but none in the band at the left edge that the right camera
does not see, in occlusions and where it finds no match (NaN or +-inf, REP-117). Aligning the monocular depth to
the stereo depth by the median ratio over the pixels where both are valid (the per-frame median scaling of Zhou et
al. CVPR 2017 sec. 4.1, with stereo in place of the ground truth) gives it the stereo unit; the fused map takes the
stereo value where there is one and the aligned monocular value elsewhere.

Pure NumPy; used by the monocular node (:mod:`stereo_depth_ros.ros.mono_node`) and measured against ground truth
by ``stereo-depth-ros eval-mono-dataset --fusion``.

>>> import numpy as np
>>> stereo = np.array([[np.nan, 2.0, 4.0]], np.float32)
>>> mono = np.array([[0.5, 1.0, 2.0]], np.float32)
>>> fused, scale = fuse_depth(stereo, mono)
>>> scale, fused
(2.0, array([[1., 2., 4.]], dtype=float32))
"""

from __future__ import annotations

import math

import numpy as np

MIN_ALIGNMENT_PIXELS = 16
"""Fewest pixels valid in both maps for an alignment; with fewer the scale is unknown (nan)."""


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: finite and > 0 (REP-117's NaN, +inf and -inf are all invalid here).

    Raises:
        ValueError: if ``depth`` is not 2-D.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def alignment_scale(relative_depth: np.ndarray, reference_depth: np.ndarray, mask: np.ndarray | None = None,
                    min_pixels: int = MIN_ALIGNMENT_PIXELS) -> float:
    """Median ratio ``median(reference / relative)`` over the pixels where both are valid (and ``mask`` is True).

    Args:
        relative_depth: (H, W) depth known up to a scale (any positive unit).
        reference_depth: (H, W) metric depth in metres (e.g. the stereo node's ``depth``); NaN, +-inf, <= 0
            invalid.
        mask: optional (H, W) bool of pixels that may be used.
        min_pixels: fewest common valid pixels for a scale.

    Returns:
        float > 0 (metres per unit of ``relative_depth``); nan when fewer than ``min_pixels`` pixels are valid in
        both.

    Raises:
        ValueError: for shapes that differ or are not 2-D.
    """
    relative_depth = np.asarray(relative_depth, dtype=np.float64)
    reference_depth = np.asarray(reference_depth, dtype=np.float64)
    if relative_depth.shape != reference_depth.shape:
        raise ValueError(f"relative depth shape {relative_depth.shape} differs from the reference depth's "
                         f"{reference_depth.shape}")
    both = valid_depth(relative_depth) & valid_depth(reference_depth)
    if mask is not None:
        both &= np.asarray(mask, dtype=bool)
    if np.count_nonzero(both) < min_pixels:
        return math.nan
    return float(np.median(reference_depth[both] / relative_depth[both]))


def fuse_depth(stereo_depth: np.ndarray, mono_depth: np.ndarray, scale: float | None = None,
               min_pixels: int = 1) -> tuple[np.ndarray, float]:
    """``depth_filled``: the stereo depth where it is valid, the aligned monocular depth everywhere else.

    Args:
        stereo_depth: (H, W) float depth in metres; NaN, +-inf (REP-117) and <= 0 mean no stereo measurement
            (the no-match band, occlusions, failed matches, out of range).
        mono_depth: (H, W) monocular depth: relative (``scale=None``: aligned here with :func:`alignment_scale`) or
            already in metres (``scale=1.0``).
        scale: metres per monocular unit, or None to align on this frame.
        min_pixels: fewest common valid pixels for the alignment (default 1 for small examples; the node uses
            :data:`MIN_ALIGNMENT_PIXELS`).

    Returns:
        ``(fused, scale)``: (H, W) float32 metres, NaN only where neither map has a value (or no scale could be
        found); the scale used (nan when alignment failed, then ``fused`` is the stereo depth with invalid pixels
        NaN).

    Raises:
        ValueError: for shapes that differ or are not 2-D, or a scale that is not a finite positive number.
    """
    stereo_depth = np.asarray(stereo_depth, dtype=np.float32)
    mono_depth = np.asarray(mono_depth, dtype=np.float32)
    if stereo_depth.shape != mono_depth.shape:
        raise ValueError(f"stereo depth shape {stereo_depth.shape} differs from the monocular depth's "
                         f"{mono_depth.shape}")
    if scale is None:
        scale = alignment_scale(mono_depth, stereo_depth, min_pixels=min_pixels)
    elif not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number of metres per unit, got {scale!r}")
    stereo_valid = valid_depth(stereo_depth)
    fused = np.where(stereo_valid, stereo_depth, np.float32(np.nan)).astype(np.float32)
    if math.isfinite(scale):
        fill = ~stereo_valid & valid_depth(mono_depth)
        fused[fill] = mono_depth[fill] * np.float32(scale)
    return fused, float(scale)
