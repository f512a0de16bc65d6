"""Classical baseline: OpenCV's semi-global block matching (Hirschmueller 2008, the paper's SGM baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereo_depth_ros.models.base import check_stereo_pair


@dataclass
class SGBMEstimator:
    """OpenCV ``StereoSGBM`` in 3-way mode behind the :class:`DisparityEstimator` interface.

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

    num_disparities: int = 192
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
    name: str = "sgbm"
    num_stages: int = 1

    def __post_init__(self) -> None:
        if self.num_disparities <= 0 or self.num_disparities % 16:
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

    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> list[np.ndarray]:
        """Run SGBM on a rectified uint8 BGR pair.

        Returns:
            ``[disparity]``: (H, W) float32, pixels, NaN where SGBM has no value (its fixed-point output below
            ``min_disparity``, i.e. rejected by the uniqueness, left-right or speckle checks, or outside the search
            range at the left border).

        Raises:
            ValueError: for images that are not a same-size (H, W, 3) uint8 pair, or narrower than the search range.
        """
        check_stereo_pair(left_bgr, right_bgr)
        width = left_bgr.shape[1]
        if self.min_disparity + self.num_disparities >= width:
            raise ValueError(f"SGBM's search range min_disparity + num_disparities = "
                             f"{self.min_disparity + self.num_disparities} px must be smaller than the image width "
                             f"{width} px; lower num_disparities")
        raw = self._matcher.compute(left_bgr, right_bgr)  # int16, disparity * 16
        disparity = raw.astype(np.float32) / 16.0
        disparity[raw < self.min_disparity * 16] = np.nan
        # OpenCV cannot match the first min_disparity + num_disparities columns over the whole range; it marks
        # them invalid already, nothing to add here.
        return [disparity]
