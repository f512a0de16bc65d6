"""Side-by-side disparity and depth figures (matplotlib, Agg back-end, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def display_range(gt_disparity: np.ndarray | None, disparities: Sequence[np.ndarray] = (),
                  percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Colour range in pixels: the ``percentiles`` of the GT's valid values, or of all finite predicted values
    when there is no usable GT.

    Returns:
        ``(vmin, vmax)`` with ``vmax > vmin`` (a 1 px range around a constant map).
    """
    values = np.empty(0, dtype=np.float32)
    if gt_disparity is not None:
        gt = np.asarray(gt_disparity, dtype=np.float32)
        values = gt[np.isfinite(gt) & (gt > 0)]
    if values.size == 0:
        finite = [np.asarray(d, dtype=np.float32) for d in disparities]
        values = np.concatenate([d[np.isfinite(d)] for d in finite]) if finite else values
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        low, high = low - 0.5, low + 0.5
    return low, high


def save_disparity_figure(path: str | Path, left_bgr: np.ndarray, panels: Sequence[tuple[str, np.ndarray]],
                          gt_disparity: np.ndarray | None = None, cmap: str = "turbo", dpi: int = 100) -> Path:
    """Write one PNG: the left image, the GT (when given), then each disparity panel, all with the same colour map
    and range (:func:`display_range`: GT valid 1st..99th percentile) and one colour bar in pixels. Unknown (NaN)
    values are drawn black.

    Args:
        path: output ``.png``.
        left_bgr: (H, W, 3) uint8 BGR.
        panels: ``(title, (H, W) disparity in px)``, e.g. SGBM then stages 0..3.
        gt_disparity: optional (H, W) GT disparity (NaN unknown), shown after the image.

    Returns:
        the written path.

    Raises:
        ValueError: if a panel differs from the image in size or there is no panel.
    """
    if not panels:
        raise ValueError("no disparity to draw")
    h, w = left_bgr.shape[:2]
    maps = ([("ground truth", gt_disparity)] if gt_disparity is not None else []) + list(panels)
    for title, disparity in maps:
        if np.asarray(disparity).shape != (h, w):
            raise ValueError(f"{title} disparity shape {np.asarray(disparity).shape} differs from the image's "
                             f"{(h, w)}")
    vmin, vmax = display_range(gt_disparity, [d for _, d in panels])
    count = 1 + len(maps)
    columns = count if count <= 7 else 4  # one row: left | GT | SGBM | stages 0..3
    return save_map_grid(path, left_bgr, "left image", maps, vmin, vmax, cmap, "disparity (px)", columns, dpi)


def save_map_grid(path: str | Path, image_bgr: np.ndarray, image_title: str,
                  maps: Sequence[tuple[str, np.ndarray]], vmin: float, vmax: float, cmap: str, colorbar_label: str,
                  columns: int, dpi: int = 100) -> Path:
    """Write one PNG: the image, then each (H, W) map in ``columns`` columns, all maps with one colour map, one
    range ``[vmin, vmax]`` and one colour bar; NaN values are drawn black. The figures of disparity
    (:func:`save_disparity_figure`) and of monocular depth share it.

    Args:
        path: output ``.png`` (its folder is created).
        image_bgr: (H, W, 3) uint8 BGR, shown first in natural colours.
        image_title, colorbar_label: texts (e.g. "left image", "disparity (px)").
        maps: ``(title, (H, W) float map)``, drawn in order; NaN = unknown.
        vmin, vmax: the colour range, in the maps' unit.
        cmap: a matplotlib colour map name.
        columns: panels per row (>= 1).

    Returns:
        the written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = image_bgr.shape[:2]
    colour_map = matplotlib.colormaps[cmap].with_extremes(bad="black")
    rows = int(np.ceil((1 + len(maps)) / columns))
    panel_width = 2.6
    figure, axes = plt.subplots(rows, columns, figsize=(panel_width * columns + 1.0,
                                                        panel_width * h / w * rows + 0.5 * rows),
                                squeeze=False, layout="constrained")
    axes = axes.ravel()
    axes[0].imshow(image_bgr[..., ::-1])
    axes[0].set_title(image_title, fontsize=9)
    shown = None
    for axis, (title, values) in zip(axes[1:], maps):
        shown = axis.imshow(np.ma.masked_invalid(np.asarray(values, dtype=np.float32)), cmap=colour_map,
                            vmin=vmin, vmax=vmax, interpolation="nearest")
        axis.set_title(title, fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    figure.colorbar(shown, ax=list(axes), fraction=0.015, pad=0.01, label=colorbar_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path
