"""Classical baseline: OpenCV's semi-global block matching (Hirschmueller 2008, the paper's SGM baseline)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from stereo_depth_ros.images import check_stereo_pair
from stereo_depth_ros.models.base import StereoEstimator, check_image_size, check_min_disparity, resolve_stage

DEFAULT_NUM_DISPARITIES = 192


@dataclass
class SGBMEstimator(StereoEstimator):
    """OpenCV ``StereoSGBM`` in 3-way mode as a :class:`~stereo_depth_ros.models.base.StereoEstimator` (one stage).

    The parameters are OpenCV's (see ``cv2.StereoSGBM_create``); ``p1``/``p2`` default to the values OpenCV's
    documentation recommends, ``8 * 3 * block_size**2`` and ``32 * 3 * block_size**2``.

    Attributes:
        num_disparities: disparity search range in pixels, a positive multiple of 16 (default 192).
        min_disparity: smallest disparity searched, pixels.
        block_size: odd matching block size, 1..11 (3-way mode works best with 3..11).
        uniqueness_ratio, speckle_window_size, speckle_range, disp12_max_diff, pre_filter_cap: OpenCV's.
        mode: one of ``cv2.STEREO_SGBM_MODE_*`` (default 3-way).

    Raises:
        ValueError: at construction for an invalid parameter (naming it).
    """

    num_disparities: int = DEFAULT_NUM_DISPARITIES
    min_disparity: int = 0
    block_size: int = 5
    p1: int | None = None
    p2: int | None = None
    uniqueness_ratio: int = 10
    speckle_window_size: int = 100
    speckle_range: int = 2
    disp12_max_diff: int = 1
    pre_filter_cap: int = 63
    mode: int = cv2.STEREO_SGBM_MODE_SGBM_3WAY
    name: ClassVar[str] = "sgbm"
    backend: ClassVar[str] = "opencv"
    num_stages: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if isinstance(self.num_disparities, bool) or not isinstance(self.num_disparities, (int, np.integer)) \
                or self.num_disparities <= 0 or self.num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0 or self.block_size > 11:
            raise ValueError(f"block_size must be odd and in 1..11, got {self.block_size}")
        channels = 3
        p1 = self.p1 if self.p1 is not None else 8 * channels * self.block_size ** 2
        p2 = self.p2 if self.p2 is not None else 32 * channels * self.block_size ** 2
        if not 0 <= p1 < p2:
            raise ValueError(f"SGBM needs 0 <= p1 < p2, got p1={p1}, p2={p2}")
        self._matcher = cv2.StereoSGBM_create(
            minDisparity=self.min_disparity, numDisparities=self.num_disparities, blockSize=self.block_size,
            P1=p1, P2=p2, disp12MaxDiff=self.disp12_max_diff, preFilterCap=self.pre_filter_cap,
            uniquenessRatio=self.uniqueness_ratio, speckleWindowSize=self.speckle_window_size,
            speckleRange=self.speckle_range, mode=self.mode)

    @property
    def max_disparity(self) -> int:
        """The search range in pixels (``num_disparities``; the largest value returned is
        ``min_disparity + num_disparities - 1``)."""
        return int(self.num_disparities)

    def disparity_range(self) -> tuple[float, float]:
        """``(min_disparity, min_disparity + num_disparities - 1)`` in pixels: what SGBM can return."""
        return float(self.min_disparity), float(self.min_disparity + self.num_disparities - 1)

    def valid_window(self, width: int, height: int, min_disparity: float = 0.0) -> tuple[int, int, int, int]:
        """The window of potentially valid disparities, as ROS 1 stereo_image_proc computed it for block matching.

        A border of ``block_size // 2`` pixels on every side cannot be matched; on the left, the first
        ``num_disparities + min_disparity - 1`` columns (plus that border) cannot be searched over the whole range;
        on the right, the border plus ``min_disparity`` (or ``-min_disparity`` when negative). With a
        ``min_disparity`` argument the window also starts no earlier than ``ceil(min_disparity)``.

        Returns:
            ``(x_offset, y_offset, width, height)`` in pixels, as ``stereo_msgs/DisparityImage.valid_window``.

        Raises:
            ValueError: for a size that is not positive or a negative or non-finite ``min_disparity``.

        Example:
            >>> SGBMEstimator(num_disparities=64, block_size=5).valid_window(640, 480)
            (65, 2, 572, 475)
        """
        check_image_size(height, width)
        check_min_disparity(min_disparity)
        border = self.block_size // 2
        left_edge = max(self.num_disparities + self.min_disparity + border - 1, math.ceil(min_disparity))
        right_margin = border + self.min_disparity if self.min_disparity >= 0 else max(border, -self.min_disparity)
        right_edge = width - 1 - right_margin
        return (min(left_edge, width), border, max(right_edge - left_edge, 0), max(height - 1 - 2 * border, 0))

    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None
                 ) -> list[np.ndarray]:
        """Run SGBM on a rectified uint8 BGR pair.

        Args:
            left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified images of the same size.
            max_stage: None or 0 (SGBM has one stage; the argument exists so callers treat every method alike).

        Returns:
            ``[disparity]``: (H, W) float32, pixels, NaN where SGBM has no value (its fixed-point output below
            ``min_disparity``, i.e. rejected by the uniqueness, left-right or speckle checks, or outside the search
            range at the left border).

        Raises:
            ValueError: for images that are not a same-size (H, W, 3) uint8 pair, narrower than the search range, or
                a ``max_stage`` other than None or 0.
        """
        check_stereo_pair(left_bgr, right_bgr)
        resolve_stage(max_stage, 1, self.name)
        width = left_bgr.shape[1]
        if self.min_disparity + self.num_disparities >= width:
            raise ValueError(f"SGBM searches min_disparity + num_disparities = "
                             f"{self.min_disparity + self.num_disparities} px but the images are only {width} px "
                             f"wide; use a smaller search range (e.g. --sgbm-disparities) or larger images")
        raw = self._matcher.compute(left_bgr, right_bgr)  # int16, disparity * 16
        disparity = raw.astype(np.float32) / 16.0
        disparity[raw < self.min_disparity * 16] = np.nan
        # OpenCV cannot match the first min_disparity + num_disparities columns over the whole range; it marks
        # them invalid already, nothing to add here.
        return [disparity]
