"""``stereo-depth-ros eval-stereo-proxy``: the validation signal without ground truth (issue 15, item 1).

For every candidate (weights x input scale x stage) it reports, on the held-out real in-vivo pairs (never trained
on; ``config/splits/bdis_invivo_test.txt``), the photometric error (the training objective's appearance term,
:func:`stereo_depth_ros.evaluation.metrics.photometric_error`) and the end-point error against confident SGBM
disparities (:func:`stereo_depth_ros.evaluation.proxy_validation.proxy_epe`), and the candidate the proxy EPE
selects. With ``--gt-sets`` it also measures how well each signal agrees with the ground truth: on each GT set it
computes the same two signals and the GT EPE of every candidate, their Spearman rank correlations across the
candidates, and the GT EPE of the confident SGBM pixels themselves (how good the proxy is).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from stereo_depth_ros.resources import split_file


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-stereo-proxy``."""
    from stereo_depth_ros.commands.evaluation import input_scale_argument

    parser = sub.add_parser(
        "eval-stereo-proxy", help="validation without ground truth: EPE against confident SGBM and photometric "
                                  "error per stage on held-out real pairs (and their agreement with GT)",
        description="Per candidate (weights x input scale x stage): photometric error and end-point error against "
                    "confident SGBM (left-right <= 1 px, unique, speckle-filtered) on the held-out real in-vivo "
                    "pairs; with --gt-sets, the Spearman rank correlation of each signal with the GT EPE across the "
                    "candidates (docs/stereo.md).")
    parser.add_argument("--weights", nargs="+", default=["packaged"], metavar="W",
                        help="network weights to compare ('packaged' = the package's; default packaged)")
    parser.add_argument("--input-scales", nargs="+", type=input_scale_argument, default=[None], metavar="auto|S",
                        help="network input scales to compare (default auto)")
    parser.add_argument("--pair-list", default=str(split_file()), metavar="LIST",
                        help="held-out real pairs (default config/splits/bdis_invivo_test.txt)")
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N held-out pairs (and GT pairs)")
    parser.add_argument("--gt-sets", nargs="*", default=[], metavar="SET",
                        help="GT sets (eval-dataset names) on which to check each signal's agreement with GT")
    parser.add_argument("--gt-every", type=int, default=1, metavar="K", help="use every K-th pair of each GT set")
    parser.add_argument("--data-root", default=None, help="root of the shared data (default ../shared/data)")
    parser.add_argument("--sgbm-max-disparity", type=int, default=192,
                        help="SGBM search range of the proxy, a multiple of 16 (default 192)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="network backend (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0 = its default)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=_run)


def held_out_pairs(pair_list: str | Path, data_root: Path, limit: int | None = None) -> list[tuple[Path, Path]]:
    """The (left, right) paths of the held-out BDIS in-vivo pairs named in ``pair_list``.

    Raises:
        FileNotFoundError: if the list or the BDIS in-vivo folder is missing, or no listed pair is found.
    """
    from stereo_depth_ros.data.stereo_folder import path_in_list, read_pair_list
    from stereo_depth_ros.images import pair_stereo_folders

    entries = read_pair_list(pair_list)
    root = data_root / "endoscopic_stereo" / "bdis_invivo"
    if not root.is_dir():
        raise FileNotFoundError(f"the BDIS in-vivo folder {root} does not exist (see ../shared/data/README.md)")
    pairs = []
    for set_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        folder = set_dir / "images_rectified"
        pairs += [pair for pair in pair_stereo_folders(folder / "left", folder / "right")
                  if path_in_list(pair[0], entries)]
    if not pairs:
        raise FileNotFoundError(f"no pair of {pair_list} found under {root}")
    return pairs[:limit] if limit is not None else pairs


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def _candidate_label(weights: str, input_scale: float | None) -> tuple[str, str]:
    return (weights if weights == "packaged" else Path(weights).name,
            "auto" if input_scale is None else f"{input_scale:g}")


def score_candidates(pairs: list[dict], weights_list: list[str], input_scales: list, backend: str,
                     with_gt: bool, description: str) -> list[dict]:
    """Per candidate (weights, input scale, stage) the mean photometric error, proxy EPE and (``with_gt``) GT EPE.

    Args:
        pairs: dicts with ``left``, ``right`` (uint8 BGR), ``active`` (bool mask of pixels that count),
            ``proxy`` (:class:`ConfidentDisparity`) and, with GT, ``gt`` (float32 pixels, NaN unknown) and
            ``valid`` (bool or None).
    """
    from tqdm import tqdm

    from stereo_depth_ros.evaluation.metrics import epe_px, photometric_error
    from stereo_depth_ros.evaluation.proxy_validation import proxy_epe
    from stereo_depth_ros.models.registry import create_estimator

    rows = []
    for weights in weights_list:
        for input_scale in input_scales:
            estimator = create_estimator("coarse-to-fine", weights=None if weights == "packaged" else weights,
                                         device="cpu", input_scale=input_scale, backend=backend)
            per_stage: dict[int, dict[str, list]] = {}
            label = _candidate_label(weights, input_scale)
            for pair in tqdm(pairs, desc=f"{description} {label[0]} scale {label[1]}", file=sys.stderr):
                stages = estimator.estimate(pair["left"], pair["right"])
                for stage, disparity in enumerate(stages):
                    values = per_stage.setdefault(stage, {"photometric": [], "proxy_epe_px": [], "gt_epe_px": []})
                    values["photometric"].append(photometric_error(pair["left"], pair["right"], disparity,
                                                                   pair["active"]))
                    values["proxy_epe_px"].append(proxy_epe(disparity, pair["proxy"].left,
                                                            pair["proxy"].left_mask & pair["active"]))
                    if with_gt:
                        values["gt_epe_px"].append(epe_px(disparity, pair["gt"], pair["valid"]))
            for stage, values in per_stage.items():
                row = {"weights": label[0], "input_scale": label[1], "stage": stage,
                       "photometric": _mean(values["photometric"]), "proxy_epe_px": _mean(values["proxy_epe_px"])}
                if with_gt:
                    row["gt_epe_px"] = _mean(values["gt_epe_px"])
                rows.append(row)
    return rows


def held_out_report(args: argparse.Namespace, data_root: Path, config) -> dict:
    """The validation signal on the held-out real pairs, and the candidate it selects (lowest proxy EPE)."""
    from stereo_depth_ros.data.stereo_folder import black_border_mask
    from stereo_depth_ros.evaluation.proxy_validation import confident_sgbm
    from stereo_depth_ros.images import read_image_bgr

    pairs = []
    for left_path, right_path in held_out_pairs(args.pair_list, data_root, args.limit):
        left, right = read_image_bgr(left_path), read_image_bgr(right_path)
        pairs.append({"left": left, "right": right, "active": black_border_mask(left) & black_border_mask(right),
                      "proxy": confident_sgbm(left, right, config), "name": str(left_path)})
    rows = score_candidates(pairs, args.weights, args.input_scales, args.backend, False, "held-out")
    density = _mean([100.0 * (p["proxy"].left_mask & p["active"]).sum() / max(p["active"].sum(), 1)
                     for p in pairs])
    scored = [row for row in rows if row["proxy_epe_px"] is not None]
    selected = min(scored, key=lambda row: row["proxy_epe_px"]) if scored else None
    return {"pairs": len(pairs), "proxy_density_pct": density, "candidates": rows, "selected_by_proxy_epe": selected}


def gt_agreement(args: argparse.Namespace, data_root: Path, config) -> dict:
    """Per GT set: every candidate's GT EPE, photometric error and proxy EPE, and the two Spearman correlations."""
    from stereo_depth_ros.evaluation.datasets import open_dataset
    from stereo_depth_ros.evaluation.metrics import epe_px, gt_valid_mask
    from stereo_depth_ros.evaluation.proxy_validation import confident_sgbm, spearman_correlation

    if args.gt_every < 1:
        raise ValueError(f"--gt-every must be >= 1, got {args.gt_every}")
    report = {}
    for name in args.gt_sets:
        dataset = open_dataset(name, data_root)
        pairs = []
        for index, sample in enumerate(dataset):
            if index % args.gt_every:
                continue
            if args.limit is not None and len(pairs) >= args.limit:
                break
            active = np.ones(sample.left_bgr.shape[:2], dtype=bool)
            proxy = confident_sgbm(sample.left_bgr, sample.right_bgr, config)
            pairs.append({"left": sample.left_bgr, "right": sample.right_bgr, "active": active, "proxy": proxy,
                          "gt": sample.gt_disparity, "valid": sample.valid, "name": sample.name})
        rows = score_candidates(pairs, args.weights, args.input_scales, args.backend, True, name)
        proxy_gt = _mean([epe_px(p["proxy"].left, p["gt"], p["proxy"].left_mask if p["valid"] is None
                                 else p["proxy"].left_mask & p["valid"]) for p in pairs])
        coverage = _mean([100.0 * (p["proxy"].left_mask & gt_valid_mask(p["gt"], p["valid"])).sum()
                          / max(gt_valid_mask(p["gt"], p["valid"]).sum(), 1) for p in pairs])
        usable = [row for row in rows if None not in (row["gt_epe_px"], row["photometric"], row["proxy_epe_px"])]
        gt = [row["gt_epe_px"] for row in usable]
        correlations = {"photometric": None, "proxy_epe": None}
        if len(usable) >= 3:
            correlations = {"photometric": spearman_correlation(gt, [row["photometric"] for row in usable]),
                            "proxy_epe": spearman_correlation(gt, [row["proxy_epe_px"] for row in usable])}
        report[name] = {"pairs": len(pairs), "proxy_gt_epe_px": proxy_gt, "proxy_coverage_pct": coverage,
                        "spearman_with_gt_epe": correlations, "candidates": rows}
    return report


def _markdown(report: dict) -> str:
    lines = [f"Held-out real pairs: {report['held_out']['pairs']}; confident SGBM covers "
             f"{report['held_out']['proxy_density_pct']:.1f} % of the active area.", "",
             "| weights | input scale | stage | photometric error | EPE vs confident SGBM px |",
             "|---|---|---|---|---|"]
    for row in report["held_out"]["candidates"]:
        cells = [f"{row[k]:.4f}" if row[k] is not None else "-" for k in ("photometric", "proxy_epe_px")]
        lines.append(f"| {row['weights']} | {row['input_scale']} | {row['stage']} | " + " | ".join(cells) + " |")
    selected = report["held_out"]["selected_by_proxy_epe"]
    if selected:
        lines += ["", f"Selected by EPE vs confident SGBM: {selected['weights']}, input scale "
                      f"{selected['input_scale']}, stage {selected['stage']}."]
    for name, result in report.get("gt", {}).items():
        correlation = result["spearman_with_gt_epe"]
        lines += ["", f"#### {name}: {result['pairs']} pairs; confident SGBM covers {result['proxy_coverage_pct']:.1f} "
                      f"% of the GT pixels at GT EPE {result['proxy_gt_epe_px']:.3f} px; Spearman with GT EPE: "
                      f"photometric {correlation['photometric']}, EPE vs confident SGBM {correlation['proxy_epe']}",
                  "", "| weights | input scale | stage | GT EPE px | photometric | EPE vs confident SGBM px |",
                  "|---|---|---|---|---|---|"]
        for row in result["candidates"]:
            cells = [f"{row[k]:.4f}" if row[k] is not None else "-" for k in ("gt_epe_px", "photometric",
                                                                            "proxy_epe_px")]
            lines.append(f"| {row['weights']} | {row['input_scale']} | {row['stage']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import torch

    from stereo_depth_ros.evaluation.datasets import default_data_root
    from stereo_depth_ros.evaluation.proxy_validation import ConfidentSGBMConfig

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.threads:
        torch.set_num_threads(args.threads)
    for weights in args.weights:
        if weights != "packaged" and not Path(weights).is_file():
            raise FileNotFoundError(f"weights file {weights} does not exist")
    config = ConfidentSGBMConfig(max_disparity=args.sgbm_max_disparity)
    data_root = Path(args.data_root) if args.data_root else default_data_root()
    report = {"sgbm": {"max_disparity": config.max_disparity, "block_size": config.block_size,
                       "uniqueness_ratio": config.uniqueness_ratio, "speckle_window_size": config.speckle_window_size,
                       "speckle_range": config.speckle_range,
                       "left_right_threshold_px": config.left_right_threshold_px,
                       "right_view": "SGBM on the mirrored, swapped pair"},
              "held_out": held_out_report(args, data_root, config)}
    if args.gt_sets:
        report["gt"] = gt_agreement(args, data_root, config)
    print(json.dumps(report, indent=2) if args.json else _markdown(report))
    return 0
