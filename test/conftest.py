"""Shared fixtures: the real data folder (skips when absent) and scikit-image's real Middlebury Motorcycle pair."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stereo_depth_ros.evaluation.datasets import load_skimage_motorcycle

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_folder(tmp_path_factory) -> Path:
    """Exported ONNX graphs go to a folder of this test session, never to the user's ~/.cache (and no test passes
    because of a graph an earlier run left there)."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    previous = os.environ.get("STEREO_DEPTH_ROS_CACHE")
    os.environ["STEREO_DEPTH_ROS_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("STEREO_DEPTH_ROS_CACHE", None)
    else:
        os.environ["STEREO_DEPTH_ROS_CACHE"] = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent (a user's fresh clone)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it is present in CI); see ../shared/data/README.md")
    return SHARED_DATA


@pytest.fixture(scope="session")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury 2014 Motorcycle pair (the package's loader,
    :func:`stereo_depth_ros.evaluation.datasets.load_skimage_motorcycle`): (left BGR uint8, right BGR uint8, GT
    image disparity float32 px, NaN unknown); calibration ``SKIMAGE_MOTORCYCLE_CAMERA``."""
    return load_skimage_motorcycle()


@pytest.fixture(scope="session")
def motorcycle_small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Motorcycle pair at 1/4 size (125 x 185), disparity scaled with it; fast enough for every test;
    calibration ``SKIMAGE_MOTORCYCLE_CAMERA.scaled(0.25)``."""
    return load_skimage_motorcycle(0.25)
