"""How well each decoding of the BDIS synthetic depth PNGs fits the rendered images (docs/evaluation.md).

For every pair of BDIS synthetic sets 30..33 and each formula of ``readers.decode_bdis_depth``
(``integer-fraction``, this package's; ``main-synthetic`` and ``load-gt-depth``, the BDIS repository's MATLAB
ones), the GT depth is turned into disparity (``520 * 0.5 / depth``) and the right view warped onto the left one
with it. Printed per set, means over its pairs, on the pixels where every formula has a value:

- ``photometric``: the photometric error of that reconstruction (``metrics.photometric_error_image``: 0.85 SSIM +
  0.15 L1, lower is better); the right GT reconstructs the left view at least as well as any matcher does, so
  SGBM's own disparity on its own pixels is given for scale;
- ``|GT - SGBM| px``: the median absolute difference between the GT disparity and SGBM's (192 px, left-right
  checked) on the pixels where SGBM has a value;
- ``step at green edges``: the median absolute depth difference (units) between horizontal neighbours whose green
  values differ, i.e. where the encoding's integer part steps; a decoding that reads the file right is continuous
  there, like between any two neighbours (printed below the table);
- ``ray length photometric``: the ``integer-fraction`` depth read as the distance along each pixel's ray instead
  of the z coordinate (z = distance / |K^-1 (u, v, 1)|), same pixels.

``--figure OUT.png`` also plots one image row of one pair (default: row 240 of set 33, pair 5) decoded with each
formula, with the places where green steps marked.

Usage::

    python benchmarks/bdis_depth_decoding.py [--data-root ../shared/data] [--every N] [--figure OUT.png]
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
from tqdm import tqdm

from stereo_depth_ros.evaluation.datasets import (BDIS_BASELINE_DEPTH_UNITS, BDIS_CAMERA, BDIS_FOCAL_PX, BDIS_SETS,
                                                   bdis_synthetic_files, default_data_root)
from stereo_depth_ros.evaluation.metrics import masked_mean, photometric_error_image
from stereo_depth_ros.evaluation.readers import BDIS_DEPTH_FORMULAS, decode_bdis_depth
from stereo_depth_ros.images import read_image_bgr
from stereo_depth_ros.models.registry import create_estimator

FOCAL_TIMES_BASELINE = BDIS_FOCAL_PX * BDIS_BASELINE_DEPTH_UNITS  # px * depth units: disparity = this / depth


def _ray_norm(height: int, width: int) -> np.ndarray:
    """|K^-1 (u, v, 1)| per pixel: distance along the ray = z * this."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.sqrt(((u - BDIS_CAMERA.cx) / BDIS_CAMERA.fx) ** 2 + ((v - BDIS_CAMERA.cy) / BDIS_CAMERA.fy) ** 2 + 1.0)


def _steps(depth: np.ndarray, green: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute depth differences of horizontal neighbours where green steps, and elsewhere."""
    difference = np.abs(np.diff(depth.astype(np.float64), axis=1))
    steps = np.diff(green.astype(np.int32), axis=1) != 0
    finite = np.isfinite(difference)
    return difference[finite & steps], difference[finite & ~steps]


def pair_row(left_path, right_path, depth_path, sgbm) -> dict:
    left, right = read_image_bgr(left_path), read_image_bgr(right_path)
    green = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)[..., 1]
    depths = {formula: decode_bdis_depth(depth_path, formula) for formula in BDIS_DEPTH_FORMULAS}
    errors = {formula: photometric_error_image(left, right, FOCAL_TIMES_BASELINE / depth)
              for formula, depth in depths.items()}
    as_ray = depths["integer-fraction"] / _ray_norm(*left.shape[:2])
    ray_error = photometric_error_image(left, right, FOCAL_TIMES_BASELINE / as_ray)
    common = np.logical_and.reduce([np.isfinite(error) for error in errors.values()] + [np.isfinite(ray_error)])
    sgbm_disparity = sgbm.estimate(left, right)[0]
    sgbm_error = photometric_error_image(left, right, sgbm_disparity)
    row = {"sgbm photometric": masked_mean(sgbm_error, np.isfinite(sgbm_error)),
           "ray length photometric": masked_mean(ray_error, common)}
    for formula, depth in depths.items():
        gt = FOCAL_TIMES_BASELINE / depth
        answered = np.isfinite(sgbm_disparity) & np.isfinite(gt)
        at_steps, elsewhere = _steps(depth, green)
        row[f"{formula} photometric"] = masked_mean(errors[formula], common)
        row[f"{formula} |GT - SGBM| px"] = float(np.median(np.abs(gt[answered] - sgbm_disparity[answered])))
        row[f"{formula} step at green edges"] = at_steps
        row[f"{formula} step elsewhere"] = elsewhere
    return row


def save_row_figure(path: str, depth_path, row: int) -> None:
    """Depth along one image row under each formula, green steps marked (matplotlib, Agg back-end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    green = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)[row, :, 1].astype(np.int32)
    depths = {formula: decode_bdis_depth(depth_path, formula)[row] for formula in BDIS_DEPTH_FORMULAS}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    top.plot(depths["integer-fraction"], label="integer-fraction (NaN at the far limit)", linewidth=1.2)
    top.plot(depths["main-synthetic"], label="main-synthetic", linewidth=1.0)
    top.set_ylabel("depth (units, cm)")
    top.legend(loc="upper left")
    for formula in ("main-synthetic", "load-gt-depth"):
        bottom.plot(depths[formula] - depths["integer-fraction"], label=f"{formula} minus integer-fraction",
                    linewidth=1.0)
    bottom.set_ylabel("difference (units)")
    bottom.set_xlabel("column (px)")
    bottom.legend(loc="upper left")
    for axis in (top, bottom):
        for x in np.flatnonzero(np.diff(green) != 0):
            axis.axvline(x + 0.5, color="grey", linewidth=0.5, alpha=0.6)
    top.set_title(f"BDIS synthetic {depth_path.parent.name}/{depth_path.name}, row {row}; grey lines: green steps")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None, help="default ../shared/data")
    parser.add_argument("--every", type=int, default=1, help="use every N-th pair of each set (default 1 = all)")
    parser.add_argument("--figure", help="also write the one-row profile figure here (PNG)")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error(f"--every must be positive, got {args.every}")
    data_root = args.data_root or default_data_root()
    sgbm = create_estimator("sgbm", max_disparity=192)
    columns = [f"{formula} {what}" for what in ("photometric", "|GT - SGBM| px", "step at green edges")
               for formula in BDIS_DEPTH_FORMULAS] + ["ray length photometric", "sgbm photometric"]
    print("| set | pairs | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    every_row = []
    for set_id in BDIS_SETS:
        files = bdis_synthetic_files(data_root, set_id)[::args.every]
        rows = [pair_row(*paths, sgbm) for paths in tqdm(files, desc=f"set {set_id}", file=sys.stderr)]
        every_row.extend(rows)
        cells = []
        for column in columns:
            if column.endswith("step at green edges"):
                cells.append(f"{np.median(np.concatenate([row[column] for row in rows])):.3f}")
            else:
                cells.append(f"{np.mean([row[column] for row in rows]):.4f}")
        print(f"| {set_id} | {len(rows)} | " + " | ".join(cells) + " |")
    print("\nmedian depth step between other horizontal neighbours (units, every set): " + ", ".join(
        f"{formula} {np.median(np.concatenate([row[f'{formula} step elsewhere'] for row in every_row])):.4f}"
        for formula in BDIS_DEPTH_FORMULAS))
    if args.figure:
        save_row_figure(args.figure, bdis_synthetic_files(data_root, 33)[4][2], row=240)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
