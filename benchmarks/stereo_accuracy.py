"""Accuracy report behind docs/stereo.md: every network stage against SGBM on the *same* pixels.

``eval-dataset`` scores each method over the GT-valid pixels where that method gave a value (the network gives
one everywhere, SGBM leaves holes). The issue's goal compares stage 3 with SGBM on the same pixels, so this script
scores every method on the pixels where the GT is valid AND SGBM gave a value, and also reports the plain
per-method numbers. On real pairs without GT it compares photometric errors on pixels where both have a value.

Usage::

    python benchmarks/stereo_accuracy.py [--weights W] [--data-root ../shared/data] [--json] [--markdown-out F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stereo_depth_ros.commands.evaluation import add_input_scale_option
from stereo_depth_ros.commands.stereo_proxy import held_out_pairs
from stereo_depth_ros.data.stereo_folder import black_border_mask
from stereo_depth_ros.evaluation.datasets import default_data_root, open_dataset
from stereo_depth_ros.evaluation.metrics import masked_mean, photometric_error_image, scored_mask, stereo_metrics
from stereo_depth_ros.images import read_image_bgr
from stereo_depth_ros.models.registry import create_estimator
from stereo_depth_ros.resources import split_file

KEYS = ("epe_px", "bad2_pct", "d1_pct", "mae_mm", "rmse_mm")


def gt_sets(network, sgbm, data_root: Path, names: list[str]) -> dict:
    """Mean metrics per set on SGBM-valid pixels ("same pixels") and on each method's own pixels."""
    report = {}
    for name in names:
        dataset = open_dataset(name, data_root)
        rows = {"same": [], "own": []}
        for sample in tqdm(dataset, desc=name, file=sys.stderr):
            stages = network.estimate(sample.left_bgr, sample.right_bgr)
            sgbm_disparity = sgbm.estimate(sample.left_bgr, sample.right_bgr)[0]
            common = scored_mask(sgbm_disparity, sample.gt_disparity, sample.valid)  # GT valid, SGBM has a value
            maps = [(f"stage {i}", d) for i, d in enumerate(stages)] + [("sgbm", sgbm_disparity)]
            for kind, mask in (("same", common), ("own", sample.valid)):
                rows[kind].append({label: stereo_metrics(d, sample.gt_disparity, sample.focal_px, sample.baseline_m,
                                                         mask, sample.disparity_offset_px) for label, d in maps})
        report[name] = {kind: {label: {k: _mean([r[label][k] for r in per_pair]) for k in KEYS}
                               for label in per_pair[0]} for kind, per_pair in rows.items()}
        report[name]["pairs"] = len(rows["same"])
    return report


def photometric_held_out(network, sgbm, data_root: Path, pair_list: Path) -> dict:
    """Photometric error of every stage and SGBM on held-out real pairs, on pixels where both have a value."""
    per_pair = []
    for left_path, right_path in tqdm(held_out_pairs(pair_list, data_root), desc="held-out in-vivo", file=sys.stderr):
        left, right = read_image_bgr(left_path), read_image_bgr(right_path)
        active = black_border_mask(left) & black_border_mask(right)
        labels = [f"stage {i}" for i in range(network.num_stages)] + ["sgbm"]
        maps = network.estimate(left, right) + sgbm.estimate(left, right)
        # per-pixel errors, NaN where a map has no usable disparity (metrics.disparity_valid_mask)
        errors = [photometric_error_image(left, right, disparity) for disparity in maps]
        common = active & np.logical_and.reduce([np.isfinite(error) for error in errors])
        row = {label: masked_mean(error, common) for label, error in zip(labels, errors)}
        row["common_pct"] = 100.0 * common.sum() / active.sum()
        per_pair.append(row)
    return {"pairs": len(per_pair), "mean": {k: _mean([r[k] for r in per_pair]) for k in per_pair[0]},
            "stage3_lower_on_pairs": int(sum(r["stage 3"] < r["sgbm"] for r in per_pair))}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def markdown(report: dict) -> str:
    """Markdown tables of :func:`gt_sets` and :func:`photometric_held_out` results."""
    lines = [f"Network input scale: {report.get('network_input_scale', 'auto')}; search range "
             f"{report.get('network_max_disparity')} px; SGBM {report.get('sgbm_disparities')} disparities.", ""]
    for name, result in report.get("gt", {}).items():
        for kind, title in (("same", "on pixels where SGBM has a value (the comparison the goal asks for)"),
                            ("own", "each method on its own pixels (as eval-dataset)")):
            lines += [f"#### {name}: {result['pairs']} pairs, {title}", "",
                      "| method | EPE px | bad2 % | D1 % | MAE mm | RMSE mm |", "|---|---|---|---|---|---|"]
            for label, metrics in result[kind].items():
                cells = [f"{metrics[k]:.3f}" if metrics[k] is not None else "-" for k in KEYS]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    if "photometric" in report:
        result = report["photometric"]
        lines += [f"#### Held-out real in-vivo pairs ({result['pairs']}): photometric error "
                  f"(0.85 (1-SSIM)/2 + 0.15 L1) on pixels where both have a value", "",
                  "| method | photometric error |", "|---|---|"]
        for label, value in result["mean"].items():
            if label != "common_pct":
                lines.append(f"| {label} | {value:.4f} |")
        lines += ["", f"Pixels compared: {result['mean']['common_pct']:.1f} % of the active image area; stage 3 "
                      f"is lower than SGBM on {result['stage3_lower_on_pairs']} of {result['pairs']} pairs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="network weights (default: the packaged ones)")
    parser.add_argument("--data-root", type=Path, default=None, help="default ../shared/data")
    parser.add_argument("--sets", nargs="+", default=["bdis-synthetic"], help="GT sets (eval-dataset names)")
    parser.add_argument("--pair-list", type=Path, default=split_file(),
                        help="held-out real pairs for the photometric comparison")
    parser.add_argument("--sgbm-disparities", type=int, default=192)
    add_input_scale_option(parser)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args(argv)
    data_root = args.data_root or default_data_root()
    network = create_estimator("coarse-to-fine", weights=args.weights, device="cpu", input_scale=args.input_scale)
    sgbm = create_estimator("sgbm", max_disparity=args.sgbm_disparities)
    report = {"weights": str(network.weights_path), "sgbm_disparities": args.sgbm_disparities,
              "network_max_disparity": network.max_disparity,
              "network_input_scale": "auto" if args.input_scale is None else args.input_scale,
              "gt": gt_sets(network, sgbm, data_root, args.sets),
              "photometric": photometric_held_out(network, sgbm, data_root, args.pair_list)}
    text = markdown(report)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
