"""Shared fixtures: the real data folder (skips when absent) and scikit-image's real Middlebury Motorcycle pair."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent (a user's fresh clone)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it is present in CI); see ../shared/data/README.md")
    return SHARED_DATA


@pytest.fixture(scope="session")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury 2014 Motorcycle pair: (left BGR uint8, right BGR uint8, GT disparity float32 NaN)."""
    from skimage import data

    left, right, disparity = data.stereo_motorcycle()
    disparity = disparity.astype(np.float32)
    disparity[~np.isfinite(disparity)] = np.nan
    return (cv2.cvtColor(left, cv2.COLOR_RGB2BGR), cv2.cvtColor(right, cv2.COLOR_RGB2BGR), disparity)


@pytest.fixture(scope="session")
def motorcycle_small(motorcycle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Motorcycle pair at 1/4 size (125 x 185), disparity scaled with it; fast enough for every test."""
    left, right, disparity = motorcycle
    size = (left.shape[1] // 4, left.shape[0] // 4)
    small_disparity = cv2.resize(disparity, size, interpolation=cv2.INTER_NEAREST) / 4.0
    return (cv2.resize(left, size, interpolation=cv2.INTER_AREA), cv2.resize(right, size, interpolation=cv2.INTER_AREA),
            small_disparity.astype(np.float32))
