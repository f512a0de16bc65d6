"""How faithfully the other view of a real endoscopic pair can stand in for this one (docs/super_resolution.md).

Stereo super-resolution can only gain over single-image SR from what the other view adds. This script measures, on
real pairs, how closely the right view reproduces the left one at full resolution once aligned, next to how closely
the single-image SR networks already reproduce it from the left low-resolution view alone.

For every pair of the lists (default: the SR validation pairs and the 14 held-out test pairs), cropped to its active
area and to multiples of 4 as ``eval-sr-dataset`` crops it:

1. the packaged ``coarse-to-fine`` disparity of the **high-resolution** pair (final stage), and of the mirrored,
   swapped pair for the right view;
2. the HR right view warped onto the left by that disparity (bilinear, ``geometry.warp_right_to_left``);
3. on the left-right consistent pixels (``|d_L(x) - d_R(x - d_L(x))| < 0.5`` px, the match inside the right view):
   the PSNR of that warp against the HR left view, and the PSNR there of ``single-image-sr-x2`` and
   ``single-image-sr-x4`` run on the left view's bicubic LR image (the standard degradation).

The warped view uses the disparity of the HR pair, which no SR method sees, and copies pixels: it is what the other
view offers as pixels with the best alignment at hand. A learned fusion (biPAM) combines features rather than
copying pixels, so this is a guide to how much the other view can add, not a bound on it.

A whole view also differs in what SR does not have to supply (shading, colour, highlights: low frequencies the LR
image already gives). So, per scale ``s``, the script also moves only the **detail** across, the part of a view that
the degradation removes and SR must restore (``D = view - bicubic_up(bicubic_down(view))``), on the same pixels:

4. ``detail_transplant_x{s}``: the left view's bicubic image plus the right view's HR detail, warped
   (``bicubic_up(LR_L) + warp(D_R)``; an oracle: it reads the HR right view);
5. ``detail_transplant_blend_gain_x{s}``: how much the best per-pair blend ``SR_L + w (transplant - SR_L)``, w in
   [0, 1] fitted on the HR left view (an oracle too), adds to single-image SR's PSNR: the detail of the HR right view
   that single-image SR lacks;
6. ``lr_right_blend_gain_x{s}``: the same with what a stereo SR method can have, the right view's own single-image
   SR detail (``SR(LR_R) - bicubic_up(LR_R)``, warped) instead of its HR detail: the detail the **LR** right view
   adds to the left's single-image SR through a warp;
7. ``lr_right_local_gain_x{s}``: the same blend with its own oracle weight in every 16 x 16 block (a fusion that
   knows where the other view helps), and ``lr_right_local_gain_misaligned_x{s}``, its control: the same detail
   warped 3 px off, which keeps the image structure but not the alignment, so what the local oracle gains from
   fitting weights to structure alone.

Usage::

    python benchmarks/sr_cross_view.py [--pairs LIST ...] [--data-root DIR] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stereo_depth_ros.commands.sr import held_out_pairs, prepare_pair
from stereo_depth_ros.evaluation.datasets import default_data_root
from stereo_depth_ros.evaluation.sr_metrics import psnr
from stereo_depth_ros.geometry import warp_right_to_left
from stereo_depth_ros.images import read_image
from stereo_depth_ros.models.confidence import left_right_confidence
from stereo_depth_ros.models.registry import create_estimator
from stereo_depth_ros.models.stereo_sr import bicubic_upscale
from stereo_depth_ros.resources import HELD_OUT_PAIR_LIST, SR_VALIDATION_PAIR_LIST, split_file

DEFAULT_LISTS = (split_file(SR_VALIDATION_PAIR_LIST), split_file(HELD_OUT_PAIR_LIST))
CONSISTENT_PX = 0.5
SCALES = (2, 4)


def warp_to_left(right: np.ndarray, disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(right sampled at x - d, (H, W, 3) float32; in_view (H, W) bool)``: a uint8 BGR view comes back in
    [0, 1], a float32 array (e.g. a detail image, any sign) in its own units."""
    values = right.astype(np.float32) / 255.0 if right.dtype == np.uint8 else right.astype(np.float32)
    warped, in_view = warp_right_to_left(torch.from_numpy(values).permute(2, 0, 1)[None],
                                         torch.from_numpy(np.nan_to_num(disparity))[None, None])
    return warped[0].permute(1, 2, 0).numpy(), in_view[0, 0].numpy() > 0


BLOCK = 16
MISALIGNMENT_PX = 3.0


def blend_weight(base: np.ndarray, other: np.ndarray, reference: np.ndarray) -> float:
    """The least-squares ``w`` of ``base + w (other - base) ~ reference``, clipped to [0, 1] (any equal shapes)."""
    step = (other - base).ravel().astype(np.float64)
    return float(np.clip(step @ (reference - base).ravel() / max(step @ step, 1e-12), 0.0, 1.0))


def best_blend_gain(base: np.ndarray, other: np.ndarray, reference: np.ndarray) -> float:
    """PSNR gain (dB) of ``base + w (other - base)`` over ``base`` for the least-squares ``w`` clipped to [0, 1]
    (an oracle: ``w`` is fitted on ``reference``). Arrays (N, 3) float in [0, 1]; 0 when ``other`` adds nothing."""
    blend = np.clip(base + blend_weight(base, other, reference) * (other - base), 0.0, 1.0)
    return psnr(blend[None], reference[None]) - psnr(base[None], reference[None])


def local_blend_gain(base: np.ndarray, other: np.ndarray, reference: np.ndarray, mask: np.ndarray,
                     block: int = BLOCK) -> float:
    """:func:`best_blend_gain` with one oracle weight per ``block`` x ``block`` tile, fitted on the tile's pixels of
    ``mask`` (tiles with fewer than 8 keep ``base``); PSNR over ``mask``. Images (H, W, 3) float in [0, 1]."""
    blend = base.copy()
    for y in range(0, mask.shape[0], block):
        for x in range(0, mask.shape[1], block):
            tile = mask[y:y + block, x:x + block]
            if tile.sum() < 8:
                continue
            window = (slice(y, y + block), slice(x, x + block))
            b, o = base[window][tile], other[window][tile]
            blend[window][tile] = b + blend_weight(b, o, reference[window][tile]) * (o - b)
    return psnr(np.clip(blend, 0.0, 1.0)[mask][None], reference[mask][None]) - psnr(base[mask][None],
                                                                                   reference[mask][None])


def score_pair(left: np.ndarray, right: np.ndarray, stereo, sr_models) -> dict:
    """The PSNRs and gains of the module docstring (items 3-7) for one HR pair (cropped as eval-sr-dataset crops
    it)."""
    hr_left, hr_right, _, _ = prepare_pair(left, right, max(SCALES))
    disparity = stereo.estimate(hr_left, hr_right)[-1]
    right_disparity = stereo.estimate(cv2.flip(hr_right, 1), cv2.flip(hr_left, 1))[-1][:, ::-1]
    warped, in_view = warp_to_left(hr_right, disparity)
    # left_right_confidence = exp(-|d_L - d_R(x - d_L)| / scale): above exp(-1) at scale 0.5 px <=> within 0.5 px
    consistent = (left_right_confidence(disparity, np.ascontiguousarray(right_disparity), CONSISTENT_PX)
                  > np.exp(-1.0)) & in_view
    reference = hr_left.astype(np.float32) / 255.0
    row = {"consistent_pct": 100.0 * float(consistent.mean()),
           "warped_right_psnr_db": psnr(warped[consistent][None], reference[consistent][None])}
    for scale, model in sr_models.items():
        lr_left, lr_right = prepare_pair(hr_left, hr_right, scale, border_crop=False)[2:]
        sr_left = model.super_resolve(lr_left, lr_right)[0].astype(np.float32) / 255.0
        row[f"single_image_sr_x{scale}_psnr_db"] = psnr(sr_left[consistent][None], reference[consistent][None])
        bicubic_left, bicubic_right = (bicubic_upscale(view, scale).astype(np.float32) / 255.0
                                       for view in (lr_left, lr_right))
        hr_detail = warp_to_left(hr_right.astype(np.float32) / 255.0 - bicubic_right, disparity)[0]
        sr_right = model.super_resolve(lr_right, lr_left)[0].astype(np.float32) / 255.0
        right_sr_detail = sr_right - bicubic_right
        sr_detail = warp_to_left(right_sr_detail, disparity)[0]
        base, target = sr_left[consistent], reference[consistent]
        transplant = np.clip(bicubic_left + hr_detail, 0.0, 1.0)[consistent]
        row[f"detail_transplant_x{scale}_psnr_db"] = psnr(transplant[None], target[None])
        row[f"detail_transplant_blend_gain_x{scale}_db"] = best_blend_gain(base, transplant, target)
        lr_transplant = np.clip(bicubic_left + sr_detail, 0.0, 1.0)
        row[f"lr_right_blend_gain_x{scale}_db"] = best_blend_gain(base, lr_transplant[consistent], target)
        row[f"lr_right_local_gain_x{scale}_db"] = local_blend_gain(sr_left, lr_transplant, reference, consistent)
        misaligned = warp_to_left(right_sr_detail, disparity + MISALIGNMENT_PX)[0]
        row[f"lr_right_local_gain_misaligned_x{scale}_db"] = local_blend_gain(
            sr_left, np.clip(bicubic_left + misaligned, 0.0, 1.0), reference, consistent)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", default=[str(p) for p in DEFAULT_LISTS],
                        help="pair lists (left-image paths relative to the data root)")
    parser.add_argument("--data-root", help="endoscopic_stereo folder (default ../shared/data/endoscopic_stereo)")
    parser.add_argument("--limit", type=int, help="first N pairs of each list only")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args(argv)
    data_root = Path(args.data_root) if args.data_root else default_data_root() / "endoscopic_stereo"
    stereo = create_estimator("coarse-to-fine")
    sr_models = {scale: create_estimator(f"single-image-sr-x{scale}") for scale in SCALES}
    rows = []
    for list_path in args.pairs:
        pairs = held_out_pairs(list_path, data_root)[:args.limit]
        for left_path, right_path in tqdm(pairs, desc=Path(list_path).stem, file=sys.stderr):
            left = read_image(left_path, cv2.IMREAD_COLOR, "left image")
            right = read_image(right_path, cv2.IMREAD_COLOR, "right image")
            rows.append({"list": Path(list_path).stem, "pair": str(left_path.relative_to(data_root)),
                         **score_pair(left, right, stereo, sr_models)})
    fields = ["consistent_pct", "warped_right_psnr_db", *(f"single_image_sr_x{s}_psnr_db" for s in SCALES)]
    detail_fields = [f"{name}_x{s}_{unit}" for s in SCALES for name, unit in
                     (("single_image_sr", "psnr_db"), ("detail_transplant_blend_gain", "db"),
                      ("lr_right_blend_gain", "db"), ("lr_right_local_gain", "db"),
                      ("lr_right_local_gain_misaligned", "db"))]
    means = [{"list": name, "pair": "mean", **{f: float(np.mean([r[f] for r in rows if r["list"] == name]))
                                              for f in dict.fromkeys(fields + detail_fields)}}
             for name in dict.fromkeys(r["list"] for r in rows)]
    if args.json:
        print(json.dumps({"rows": rows, "means": means}, indent=2))
        return 0
    print("| list | pair | left-right consistent % | HR right warped to left, PSNR dB | single-image SR x2 "
          "(left, same pixels), PSNR dB | single-image SR x4, PSNR dB |")
    print("|---|---|---|---|---|---|")
    for row in rows + means:
        print(f"| {row['list']} | {row['pair']} | " + " | ".join(f"{row[f]:.1f}" if f == "consistent_pct"
                                                                 else f"{row[f]:.2f}" for f in fields) + " |")
    print("\nDetail only (same pixels; PSNR dB, gains dB over single-image SR; module docstring, items 4-7):\n")
    print("| list | pair | " + " | ".join(f"x{s}: single-image SR | x{s}: gain, HR right detail | x{s}: gain, LR "
                                         f"right detail | x{s}: same, weight per 16 px block | x{s}: same, "
                                         f"misaligned 3 px" for s in SCALES) + " |")
    print("|---|---|" + "---|" * len(detail_fields))
    for row in rows + means:
        print(f"| {row['list']} | {row['pair']} | " + " | ".join(f"{row[f]:.2f}" for f in detail_fields) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
