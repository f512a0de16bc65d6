"""The optional evaluation mask every metric takes: one check and one combination for all of them.

>>> import numpy as np
>>> restrict_to_mask(np.array([True, True, False]), np.array([1, 0, 1]), "values")
array([ True, False, False])
>>> restrict_to_mask(np.array([True]), None, "values")
array([ True])
"""

from __future__ import annotations

import numpy as np


def restrict_to_mask(valid: np.ndarray, mask: np.ndarray | None, what: str) -> np.ndarray:
    """``valid & mask``: the pixels a metric scores, limited to a caller's optional mask.

    Args:
        valid: (H, W) (or any shape) bool, the pixels the metric could score.
        mask: None (no limit) or an array of ``valid``'s shape, read as bool (True = may be scored).
        what: what ``valid`` describes, for the error message ("ground truth", "GT depth", ...).

    Returns:
        bool array of ``valid``'s shape (a new array when ``mask`` is given, ``valid`` itself otherwise).

    Raises:
        ValueError: if the mask's shape differs, naming both shapes.
    """
    if mask is None:
        return valid
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != valid.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the {what}'s {valid.shape}")
    return valid & mask
