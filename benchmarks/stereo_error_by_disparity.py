"""Where the network loses to SGBM: disparity error per ground-truth disparity range (docs/stereo.md).

On every pair of a GT set it scores each network stage and SGBM on the same pixels (GT valid and SGBM has a value,
as benchmarks/stereo_accuracy.py does), split by the GT disparity: mean absolute error (EPE) and mean signed error
(prediction minus GT; negative = under-estimated disparity, i.e. too far) in pixels, pooled over the pixels of all
pairs, with each range's share of the pixels.

Usage::

    python benchmarks/stereo_error_by_disparity.py [--weights W] [--set bdis-synthetic] [--every N]
        [--bins 0 30 45 60 80 120 1000] [--input-scale S]

``--input-scale 0.5`` runs the network on images resized by that factor (disparities scaled back; default auto, as
the package runs it): a search-range limit would show as errors that depend on the disparity in pixels, a
generalisation gap as errors that follow the disparity relative to the image width.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from stereo_depth_ros.commands.evaluation import add_input_scale_option
from stereo_depth_ros.evaluation.datasets import open_dataset
from stereo_depth_ros.evaluation.metrics import scored_mask
from stereo_depth_ros.models.registry import create_estimator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="network weights (default: the packaged ones)")
    parser.add_argument("--set", default="bdis-synthetic", help="GT set (eval-dataset name or folder)")
    parser.add_argument("--every", type=int, default=1, help="use every N-th pair (default 1 = all)")
    parser.add_argument("--bins", type=float, nargs="+", default=[0, 30, 45, 60, 80, 120, 1000],
                        help="GT disparity bin edges in pixels")
    add_input_scale_option(parser)
    parser.add_argument("--sgbm-disparities", type=int, default=192)
    args = parser.parse_args(argv)
    if args.every < 1 or len(args.bins) < 2 or np.any(np.diff(args.bins) <= 0):
        parser.error("--every must be >= 1, --bins at least two increasing edges")

    network = create_estimator("coarse-to-fine", weights=args.weights, input_scale=args.input_scale)
    sgbm = create_estimator("sgbm", max_disparity=args.sgbm_disparities)
    bins = np.asarray(args.bins)
    labels = [f"stage {i}" for i in range(network.num_stages)] + ["sgbm"]
    sums = {label: np.zeros((len(bins) - 1, 2)) for label in labels}  # per bin: sum |error|, sum error
    counts = np.zeros(len(bins) - 1)
    dataset = open_dataset(args.set)
    for index, sample in enumerate(tqdm(dataset, desc=dataset.name, file=sys.stderr)):
        if index % args.every:
            continue
        sgbm_disparity = sgbm.estimate(sample.left_bgr, sample.right_bgr)[0]
        maps = network.estimate(sample.left_bgr, sample.right_bgr) + [sgbm_disparity]
        gt = sample.gt_disparity
        common = scored_mask(sgbm_disparity, gt, sample.valid)  # GT valid and SGBM has a value
        which = np.digitize(gt, bins) - 1
        for b in range(len(bins) - 1):
            selected = common & (which == b)
            counts[b] += selected.sum()
            for label, disparity in zip(labels, maps):
                error = disparity[selected] - gt[selected]
                sums[label][b] += (np.abs(error).sum(), error.sum())
    total = counts.sum()
    scale = "auto" if args.input_scale is None else args.input_scale
    print(f"{dataset.name}, input scale {scale}: EPE px / mean signed error px (prediction - GT) on pixels where the "
          f"GT is valid and SGBM has a value\n")
    print("| GT disparity px | share % | " + " | ".join(labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    for b in range(len(bins) - 1):
        cells = [f"{s[b, 0] / counts[b]:.2f} / {s[b, 1] / counts[b]:+.2f}" if counts[b] else "-"
                 for s in sums.values()]
        print(f"| {bins[b]:g}-{bins[b + 1]:g} | {100 * counts[b] / max(total, 1):.1f} | " + " | ".join(cells) + " |")
    cells = [f"{s[:, 0].sum() / total:.2f} / {s[:, 1].sum() / total:+.2f}" for s in sums.values()]
    print("| all | 100.0 | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
