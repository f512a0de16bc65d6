"""Stereo geometry shared by the core and the ROS layer: warping, disparity <-> depth, reprojection.

Conventions (used everywhere in this package):

- Images are rectified; disparity is in pixels of the image it belongs to, for the *left* view, positive, and
  ``d = x_left - x_right``. A left pixel ``(x, y)`` with disparity ``d`` sees the same point as the right pixel
  ``(x - d, y)``.
- Depth is in metres along the optical axis (REP-103 optical frame: x right, y down, z forward) and
  ``Z = f * B / d`` with ``f`` the focal length in pixels and ``B`` the baseline in metres (REP-118).
- Invalid values are NaN (never 0 or negative numbers) in every NumPy array this module returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StereoCameraModel:
    """Calibration of a rectified stereo pair, as a ROS ``camera_info`` pair carries it.

    Attributes:
        focal_px: focal length ``fx`` of the rectified left camera in pixels (``P[0]``), > 0.
        cx: principal point x of the left camera in pixels (``P[2]``).
        cy: principal point y of the left camera in pixels (``P[6]``).
        baseline_m: distance between the optical centres in metres, > 0 (right ``P[3] = -fx * B``).
        focal_y_px: focal length ``fy`` in pixels (``P[5]``); defaults to ``focal_px``.
    """

    focal_px: float
    cx: float
    cy: float
    baseline_m: float
    focal_y_px: float | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.focal_px) or self.focal_px <= 0:
            raise ValueError(f"focal_px must be a finite positive number of pixels, got {self.focal_px}")
        if not np.isfinite(self.baseline_m) or self.baseline_m <= 0:
            raise ValueError(f"baseline_m must be a finite positive number of metres, got {self.baseline_m}")
        if self.focal_y_px is not None and (not np.isfinite(self.focal_y_px) or self.focal_y_px <= 0):
            raise ValueError(f"focal_y_px must be a finite positive number of pixels, got {self.focal_y_px}")

    @property
    def fy(self) -> float:
        """Vertical focal length in pixels (``focal_y_px`` or ``focal_px``)."""
        return float(self.focal_y_px if self.focal_y_px is not None else self.focal_px)


def disparity_to_depth(disparity: np.ndarray, focal_px: float, baseline_m: float,
                       min_depth: float = 0.0, max_depth: float = float("inf")) -> np.ndarray:
    """Convert a disparity map (pixels) to a depth map (metres) with ``Z = f * B / d``.

    Args:
        disparity: (H, W) or any shape, float, pixels; NaN, inf and values <= 0 are invalid.
        focal_px: focal length in pixels, > 0.
        baseline_m: baseline in metres, > 0.
        min_depth, max_depth: depths outside ``[min_depth, max_depth]`` metres become NaN.

    Returns:
        float32 array of the same shape, metres, NaN where invalid (REP-118).

    Raises:
        ValueError: if ``focal_px`` or ``baseline_m`` is not a finite positive number.

    Example:
        >>> disparity_to_depth(np.array([10.0, 0.0]), focal_px=500.0, baseline_m=0.005)
        array([0.25,  nan], dtype=float32)
    """
    _check_positive(focal_px=focal_px, baseline_m=baseline_m)
    d = np.asarray(disparity, dtype=np.float32)
    depth = np.full(d.shape, np.nan, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
        np.divide(np.float32(focal_px * baseline_m), d, out=depth, where=valid)
        depth[~((depth >= min_depth) & (depth <= max_depth))] = np.nan
    return depth


def depth_to_disparity(depth: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """Convert a depth map (metres) to a disparity map (pixels) with ``d = f * B / Z``.

    Args:
        depth: any shape, float, metres; NaN, inf and values <= 0 are invalid.
        focal_px: focal length in pixels, > 0.
        baseline_m: baseline in metres, > 0.

    Returns:
        float32 array of the same shape, pixels, NaN where invalid.

    Raises:
        ValueError: if ``focal_px`` or ``baseline_m`` is not a finite positive number.
    """
    _check_positive(focal_px=focal_px, baseline_m=baseline_m)
    z = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(z) & (z > 0)
    disparity = np.full(z.shape, np.nan, dtype=np.float64)
    disparity[valid] = focal_px * baseline_m / z[valid]
    return disparity.astype(np.float32)


def reproject_disparity_to_points(disparity: np.ndarray, calibration: StereoCameraModel,
                                  min_depth: float = 0.0, max_depth: float = float("inf")) -> np.ndarray:
    """Reproject a left disparity map to an organised point cloud in the left optical frame (REP-103).

    ``Z = f B / d``, ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, the same maths as OpenCV's
    ``reprojectImageTo3D`` with ``Q`` from ``stereoRectify`` (for equal principal points).

    Args:
        disparity: (H, W) float, pixels; NaN, inf and values <= 0 are invalid.
        calibration: focal length, principal point and baseline of the rectified pair.
        min_depth, max_depth: points whose depth is outside this range (metres) become NaN.

    Returns:
        (H, W, 3) float32 array of x, y, z in metres; all three NaN where invalid.

    Raises:
        ValueError: if ``disparity`` is not two-dimensional.
    """
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be (H, W), got shape {disparity.shape}")
    depth = disparity_to_depth(disparity, calibration.focal_px, calibration.baseline_m, min_depth, max_depth)
    h, w = disparity.shape
    u = np.arange(w, dtype=np.float32)[None, :]
    v = np.arange(h, dtype=np.float32)[:, None]
    points = np.empty((h, w, 3), dtype=np.float32)
    points[..., 0] = (u - np.float32(calibration.cx)) * depth / np.float32(calibration.focal_px)
    points[..., 1] = (v - np.float32(calibration.cy)) * depth / np.float32(calibration.fy)
    points[..., 2] = depth
    return points


def warp_right_to_left(right: torch.Tensor, disparity: torch.Tensor,
                       padding_mode: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct the left view by sampling the right view at ``x - d`` (bilinear, differentiable).

    Used for the photometric loss and for warping right features in the residual stages.

    Args:
        right: (B, C, H, W) float tensor (image or features).
        disparity: (B, 1, H, W) float tensor, left disparity in pixels of this resolution.
        padding_mode: ``grid_sample`` padding for samples outside the image ("zeros" or "border").

    Returns:
        ``(warped, in_view)``: warped is (B, C, H, W) like ``right``; in_view is (B, 1, H, W) float 0/1, 1 where
        ``0 <= x - d <= W - 1`` (the sample lies inside the right image).

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> right = torch.arange(8.0).view(1, 1, 1, 8)
        >>> warped, _ = warp_right_to_left(right, torch.full((1, 1, 1, 8), 2.0))
        >>> warped[0, 0, 0, 2:].tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    if right.ndim != 4 or disparity.ndim != 4 or disparity.shape[1] != 1:
        raise ValueError(f"expected right (B,C,H,W) and disparity (B,1,H,W), got {tuple(right.shape)} and "
                         f"{tuple(disparity.shape)}")
    if right.shape[0] != disparity.shape[0] or right.shape[2:] != disparity.shape[2:]:
        raise ValueError(f"right {tuple(right.shape)} and disparity {tuple(disparity.shape)} differ in batch or size")
    b, c, h, w = right.shape
    xs = torch.arange(w, device=right.device, dtype=right.dtype).view(1, 1, 1, w)
    x_src = xs - disparity.to(right.dtype)
    in_view = ((x_src >= 0) & (x_src <= w - 1)).to(right.dtype)
    if padding_mode == "border" and w > 1:
        # Rectified pairs only shift along rows, so bilinear sampling is linear interpolation between two
        # neighbours on the same row: two gathers instead of grid_sample (same values to ~1e-5, and 2x faster in
        # onnxruntime, where the network's warps run).
        x = x_src.clamp(0, w - 1)
        x0 = x.floor().clamp(max=w - 2)
        index = x0.long().expand(b, c, h, w)
        left_sample = torch.gather(right, 3, index)
        right_sample = torch.gather(right, 3, index + 1)
        return left_sample + (right_sample - left_sample) * (x - x0), in_view
    ys = torch.arange(h, device=right.device, dtype=right.dtype).view(1, 1, h, 1)
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    grid_x = 2.0 * x_src / max(w - 1, 1) - 1.0
    grid_y = (2.0 * ys / max(h - 1, 1) - 1.0).expand(b, 1, h, w)
    grid = torch.stack((grid_x[:, 0], grid_y[:, 0]), dim=-1)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return warped, in_view


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite positive number, got {value}")
