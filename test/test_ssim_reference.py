"""Our SSIM (losses.ssim, behind the training loss and the photometric error) against scikit-image's reference.

scikit-image's ``structural_similarity`` with a 3x3 uniform window, population (co)variances, data range 1 and the
same constants (K1 = 0.01, K2 = 0.03, so C1 = 0.01**2, C2 = 0.03**2) computes the same SSIM map. The borders differ
only by padding convention (reflect vs symmetric), so one pixel of border is left out.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from stereo_depth_ros.losses import SSIM_C1, SSIM_C2, ssim


def _reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _, full = structural_similarity(x, y, win_size=3, gaussian_weights=False, use_sample_covariance=False,
                                    data_range=1.0, K1=0.01, K2=0.03, full=True)
    return full


def _ours(x: np.ndarray, y: np.ndarray, dtype=torch.float64) -> np.ndarray:
    def as_tensor(image):
        return torch.from_numpy(image).to(dtype)[None, None]

    return ssim(as_tensor(x), as_tensor(y))[0, 0].double().numpy()


@pytest.mark.parametrize("shift", [0, 3, 17])
def test_ssim_equals_scikit_image_on_the_motorcycle_pair(motorcycle_small, shift):
    left, right, _ = motorcycle_small
    x = cv2.cvtColor(left, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    y = cv2.cvtColor(right, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    y = np.roll(y, shift, axis=1)  # the views compared at several offsets: high and low similarity alike
    ours, reference = _ours(x, y)[1:-1, 1:-1], _reference(x, y)[1:-1, 1:-1]
    assert reference.std() > 0.1  # the map varies: a wrong window or constant shows
    np.testing.assert_allclose(ours, reference, atol=1e-9)  # the same formula, both in float64
    # In float32 (as training and evaluation run it) E[x^2] - E[x]^2 loses digits: a few 1e-4 at most.
    np.testing.assert_allclose(_ours(x, y, torch.float32)[1:-1, 1:-1], reference, atol=1e-3)
    assert abs(_ours(x, y, torch.float32).mean() - _ours(x, y).mean()) < 1e-5


def test_constants_are_scikit_image_defaults():
    assert (SSIM_C1, SSIM_C2) == pytest.approx(((0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2))
