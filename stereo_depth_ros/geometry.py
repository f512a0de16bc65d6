"""Stereo geometry shared by the core and the ROS layer: the stereo camera model, disparity <-> depth,
reprojection and warping.

Conventions (used everywhere in this package):

- Images are rectified. An *image disparity* is ``d = x_left - x_right`` in pixels of the left image: a left pixel
  ``(x, y)`` with disparity ``d`` sees the same point as the right pixel ``(x - d, y)``. The estimators return
  image disparities.
- When the principal points of the two rectified cameras differ (``cx_left != cx_right``, e.g. Middlebury 2014,
  whose ``doffs = cx_right - cx_left``), depth is ``Z = fx B / (d + doffs) = fx B / (d - (cx_left - cx_right))``
  (image_geometry's ``StereoCameraModel::getZ``). :class:`StereoCameraModel` applies this offset. The functions
  :func:`disparity_to_depth`, :func:`depth_to_disparity` and :func:`reproject_disparity_to_points` take an
  *offset-corrected* disparity ``d' = d + doffs`` (the ``stereo_msgs/DisparityImage`` convention of
  stereo_image_proc, ``d' = x_l - x_r - (cx_l - cx_r)``), so ``Z = f B / d'``; for equal principal points
  ``d' = d``.
- Depth is in metres along the optical axis (REP-103 optical frame: x right, y down, z forward), ``f`` the focal
  length in pixels and ``B`` the baseline in metres (REP-118).
- Invalid values follow REP-117: a depth is NaN where there is no measurement (disparity NaN, inf or not
  positive), ``-inf`` where the point is nearer than ``min_depth`` and ``+inf`` where it is farther than
  ``max_depth``. Disparities and point clouds use NaN for every invalid value (never 0 or negative numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StereoCameraModel:
    """A rectified stereo pair as its two ``camera_info`` messages describe it (image_geometry's
    ``StereoCameraModel`` semantics, REP-104).

    The projection matrices ``P`` (3x4, row-major) of the rectified cameras give ``fx = P[0]``, ``fy = P[5]``,
    ``cx = P[2]``, ``cy = P[6]``; the right camera's ``P[3] = Tx = -fx * B`` gives the baseline ``B`` in metres.
    Build it from a camera_info pair with :meth:`from_camera_info`.

    Attributes:
        fx: horizontal focal length of the rectified cameras in pixels (left ``P[0]``), finite, > 0.
        cx: principal point x of the left camera in pixels (left ``P[2]``).
        cy: principal point y in pixels (left ``P[6]``).
        baseline_m: distance between the optical centres in metres, finite, > 0 (``-P_right[3] / P_right[0]``).
        fy: vertical focal length in pixels (left ``P[5]``); None (the default) means ``fx``.
        cx_right: principal point x of the right camera in pixels (right ``P[2]``); None (the default) means
            ``cx`` (equal principal points).

    Raises:
        ValueError: naming the attribute, if ``fx``, ``fy`` or ``baseline_m`` is not a finite positive number or
            ``cx``, ``cy``, ``cx_right`` is not finite.

    Example:
        >>> camera = StereoCameraModel(fx=999.421, cx=294.182, cy=252.932, baseline_m=0.193001, cx_right=326.96)
        >>> round(camera.disparity_offset_px, 3), round(float(camera.depth_from_disparity(60.0)), 4)
        (32.778, 2.079)
    """

    fx: float
    cx: float
    cy: float
    baseline_m: float
    fy: float | None = None
    cx_right: float | None = None

    def __post_init__(self) -> None:
        for name in ("fx", "cx", "cy", "baseline_m", "fy", "cx_right"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name} must be a number, got {value!r}") from error
            if not np.isfinite(value) or (name in ("fx", "fy", "baseline_m") and value <= 0):
                kind = "finite positive number" if name in ("fx", "fy", "baseline_m") else "finite number"
                unit = "metres" if name == "baseline_m" else "pixels"
                raise ValueError(f"{name} must be a {kind} of {unit}, got {value}")
            object.__setattr__(self, name, value)
        if self.fy is None:
            object.__setattr__(self, "fy", float(self.fx))
        if self.cx_right is None:
            object.__setattr__(self, "cx_right", float(self.cx))

    @classmethod
    def from_camera_info(cls, left, right) -> "StereoCameraModel":
        """The model of a rectified pair from its left and right ``camera_info`` (image_geometry's
        ``StereoCameraModel::fromCameraInfo``).

        Args:
            left, right: ``sensor_msgs/CameraInfo`` messages (rclpy or rosbags) or
                :class:`stereo_depth_ros.data.stereo_bag.CameraInfoData`; duck-typed, fields ``p`` (12 numbers),
                ``k`` (9 numbers), ``width`` and ``height`` (pixels, 0 = not set).

        Returns:
            :class:`StereoCameraModel` with ``fx``, ``fy``, ``cx``, ``cy`` from the left ``P``, ``cx_right`` from
            the right ``P`` and ``baseline_m = -P_right[3] / P_right[0]``.

        Raises:
            ValueError: naming the side and the field: ``p`` or ``k`` all zero (camera not calibrated), ``P[0]``
                (fx) or ``P[5]`` (fy) not finite and positive, right ``P[3]`` zero (no baseline) or positive (left
                and right swapped), or ``width`` x ``height`` of the two sides differ.
        """
        matrices = {}
        for side, info in (("left", left), ("right", right)):
            for field_name, size, what in (("p", 12, "projection matrix P"), ("k", 9, "intrinsic matrix K")):
                try:
                    values = np.asarray(getattr(info, field_name), dtype=np.float64).reshape(-1)
                except (AttributeError, TypeError, ValueError) as error:
                    raise ValueError(f"{side} camera_info field '{field_name}' ({what}) must hold {size} numbers: "
                                     f"{error}") from error
                if values.size != size:
                    raise ValueError(f"{side} camera_info field '{field_name}' ({what}) must hold {size} numbers, "
                                     f"got {values.size}")
                if not np.any(values):
                    raise ValueError(f"{side} camera_info field '{field_name}' ({what}) is all zero: camera not "
                                     f"calibrated")
                matrices[side, field_name] = values
            p = matrices[side, "p"]
            if not (np.isfinite(p).all() and p[0] > 0 and p[5] > 0):
                raise ValueError(f"{side} camera_info field 'p': P[0] (fx) = {p[0]} and P[5] (fy) = {p[5]} must be "
                                 f"finite and positive")
        sizes = [(int(getattr(info, "width", 0) or 0), int(getattr(info, "height", 0) or 0)) for info in (left, right)]
        if all(w or h for w, h in sizes) and sizes[0] != sizes[1]:
            raise ValueError(f"camera_info fields 'width' x 'height' differ: left {sizes[0][0]} x {sizes[0][1]}, "
                             f"right {sizes[1][0]} x {sizes[1][1]}")
        p_left, p_right = matrices["left", "p"], matrices["right", "p"]
        tx = p_right[3]
        if tx == 0:
            raise ValueError("right camera_info field 'p': P[3] (Tx = -fx * baseline) is 0, so the baseline is "
                             "unknown")
        if tx > 0:
            raise ValueError(f"right camera_info field 'p': P[3] (Tx = -fx * baseline) = {tx} is positive, i.e. the "
                             f"'right' camera is left of the left one (left and right swapped?)")
        return cls(fx=float(p_left[0]), cx=float(p_left[2]), cy=float(p_left[6]), baseline_m=float(-tx / p_right[0]),
                   fy=float(p_left[5]), cx_right=float(p_right[2]))

    @property
    def focal_px(self) -> float:
        """``fx`` in pixels (the name the metrics' arguments use)."""
        return float(self.fx)

    @property
    def principal_point_offset(self) -> float:
        """``cx - cx_right`` in pixels (image_geometry's offset; subtracted from an image disparity)."""
        return float(self.cx - self.cx_right)

    @property
    def disparity_offset_px(self) -> float:
        """Middlebury's ``doffs = cx_right - cx`` in pixels, added to an image disparity:
        ``Z = fx B / (d + doffs)``."""
        return float(self.cx_right - self.cx)

    def scaled(self, scale: float) -> "StereoCameraModel":
        """The model of the pair resized by ``scale`` (focal lengths and principal points scale, the baseline
        does not; pixel centres are not shifted, as OpenCV's ``resize`` of a whole image approximately does).

        Raises:
            ValueError: if ``scale`` is not a finite positive number.
        """
        _check_positive(scale=scale)
        return StereoCameraModel(fx=self.fx * scale, cx=self.cx * scale, cy=self.cy * scale,
                                 baseline_m=self.baseline_m, fy=self.fy * scale, cx_right=self.cx_right * scale)

    def depth_from_disparity(self, disparity, min_depth: float = 0.0, max_depth: float = float("inf")):
        """Depth of an image disparity ``d = x_l - x_r``: ``Z = fx B / (d - (cx - cx_right))`` (image_geometry's
        ``getZ``), with REP-117 values for invalid and out-of-range pixels (see :func:`disparity_to_depth`).

        Args:
            disparity: image disparity in pixels, a number or an array of any shape.
            min_depth, max_depth: depth limits in metres.

        Returns:
            float32 array of the shape of ``disparity`` (a Python float for a number), metres; NaN where
            ``d - (cx - cx_right)`` is NaN, inf or <= 0, ``-inf`` below ``min_depth``, ``+inf`` above
            ``max_depth``.
        """
        corrected = np.asarray(disparity, dtype=np.float32) - np.float32(self.principal_point_offset)
        depth = disparity_to_depth(corrected, self.fx, self.baseline_m, min_depth, max_depth)
        return float(depth) if depth.ndim == 0 else depth

    def disparity_from_depth(self, depth):
        """Image disparity of a depth: ``d = fx B / Z + (cx - cx_right)`` (image_geometry's ``getDisparity``).

        Args:
            depth: metres, a number or an array of any shape; NaN, inf (REP-117's out of range) and values <= 0
                have no disparity.

        Returns:
            float32 array of the shape of ``depth`` (a Python float for a number), pixels, NaN where invalid.
        """
        disparity = depth_to_disparity(depth, self.fx, self.baseline_m)
        disparity = disparity + np.float32(self.principal_point_offset)
        return float(disparity) if disparity.ndim == 0 else disparity.astype(np.float32)

    def reproject(self, disparity: np.ndarray, min_depth: float = 0.0, max_depth: float = float("inf")
                  ) -> np.ndarray:
        """Organised point cloud of an image disparity map in the left optical frame (image_geometry's
        ``projectDisparityImageTo3d``): ``Z = fx B / (d - (cx - cx_right))``, ``X = (u - cx) Z / fx``,
        ``Y = (v - cy) Z / fy``.

        Args:
            disparity: (H, W) float image disparity in pixels; NaN, inf and ``d - (cx - cx_right) <= 0`` invalid.
            min_depth, max_depth: points outside this depth range (metres) are invalid.

        Returns:
            (H, W, 3) float32 x, y, z in metres; all three NaN where invalid or out of range.

        Raises:
            ValueError: if ``disparity`` is not two-dimensional.
        """
        corrected = np.asarray(disparity, dtype=np.float32) - np.float32(self.principal_point_offset)
        return reproject_disparity_to_points(corrected, self, min_depth, max_depth)

    def reprojection_matrix(self) -> np.ndarray:
        """The 4x4 reprojection matrix ``Q`` of image_geometry (and OpenCV's ``stereoRectify``) for image
        disparities: ``[x y z w]^T = Q [u v d 1]^T``, point ``(x, y, z) / w`` in metres (assumes ``fx = fy``, as
        ``Q`` does).

        Returns:
            (4, 4) float64 array ``[[1, 0, 0, -cx], [0, 1, 0, -cy], [0, 0, 0, fx],
            [0, 0, 1 / B, -(cx - cx_right) / B]]``.
        """
        return np.array([[1.0, 0.0, 0.0, -self.cx], [0.0, 1.0, 0.0, -self.cy], [0.0, 0.0, 0.0, self.fx],
                         [0.0, 0.0, 1.0 / self.baseline_m, -self.principal_point_offset / self.baseline_m]])


def disparity_to_depth(disparity: np.ndarray, focal_px: float, baseline_m: float,
                       min_depth: float = 0.0, max_depth: float = float("inf")) -> np.ndarray:
    """Convert an offset-corrected disparity map (pixels) to a depth map (metres) with ``Z = f * B / d``.

    For a pair whose principal points differ, pass ``d = x_l - x_r - (cx_l - cx_r)`` (the ``DisparityImage``
    convention) or use :meth:`StereoCameraModel.depth_from_disparity` with the image disparity.

    Args:
        disparity: any shape, float, pixels; NaN, inf and values <= 0 are no measurement.
        focal_px: focal length in pixels, > 0.
        baseline_m: baseline in metres, > 0.
        min_depth, max_depth: depth limits in metres (``max_depth`` inf: no far limit).

    Returns:
        float32 array of the same shape, metres, with REP-117's invalid values: NaN where there is no measurement
        (disparity NaN, inf or <= 0), ``-inf`` where the depth is below ``min_depth``, ``+inf`` where it is above
        ``max_depth``.

    Raises:
        ValueError: if ``focal_px`` or ``baseline_m`` is not a finite positive number.

    Example:
        >>> disparity_to_depth(np.array([10.0, 0.0, 1.0, 100.0]), focal_px=500.0, baseline_m=0.005,
        ...                    min_depth=0.05, max_depth=1.0)
        array([0.25,  nan,  inf, -inf], dtype=float32)
    """
    _check_positive(focal_px=focal_px, baseline_m=baseline_m)
    d = np.asarray(disparity, dtype=np.float32)
    depth = np.full(d.shape, np.nan, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        valid = np.isfinite(d) & (d > 0)
        np.divide(np.float32(focal_px * baseline_m), d, out=depth, where=valid)
        depth[valid & (depth < min_depth)] = -np.inf
        depth[valid & (depth > max_depth)] = np.inf
    return depth


def depth_to_disparity(depth: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """Convert a depth map (metres) to an offset-corrected disparity map (pixels) with ``d = f * B / Z``.

    Args:
        depth: any shape, float, metres; NaN, +-inf (REP-117's out of range) and values <= 0 are invalid.
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
    """Reproject an offset-corrected left disparity map to an organised point cloud in the left optical frame
    (REP-103).

    ``Z = fx B / d``, ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, the same maths as OpenCV's
    ``reprojectImageTo3D`` with ``Q`` from ``stereoRectify``. ``d`` is offset-corrected (``x_l - x_r - (cx_l -
    cx_r)``, the ``DisparityImage`` convention); for an image disparity use :meth:`StereoCameraModel.reproject`.

    Args:
        disparity: (H, W) float, pixels; NaN, inf and values <= 0 are invalid.
        calibration: focal lengths, left principal point and baseline of the rectified pair.
        min_depth, max_depth: points whose depth is outside this range (metres) are invalid.

    Returns:
        (H, W, 3) float32 array of x, y, z in metres; all three NaN for every invalid or out-of-range pixel (an
        organised cloud keeps no infinities).

    Raises:
        ValueError: if ``disparity`` is not two-dimensional.
    """
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be (H, W), got shape {disparity.shape}")
    depth = disparity_to_depth(disparity, calibration.fx, calibration.baseline_m, min_depth, max_depth)
    depth[~np.isfinite(depth)] = np.nan
    h, w = disparity.shape
    u = np.arange(w, dtype=np.float32)[None, :]
    v = np.arange(h, dtype=np.float32)[:, None]
    points = np.empty((h, w, 3), dtype=np.float32)
    points[..., 0] = (u - np.float32(calibration.cx)) * depth / np.float32(calibration.fx)
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
        >>> [round(value, 4) for value in warped[0, 0, 0, 2:].tolist()]
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
