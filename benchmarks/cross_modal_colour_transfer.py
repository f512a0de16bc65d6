"""Does the generator's colour help once its global cast and its luminance are taken out? (docs/cross_modal.md)

Issue 14 asks that the pseudo-RGB beat the NIR replicated to three channels on PSNR, SSIM and the angular colour
error on the 20 held-out indoor pairs. The generators were trained on outdoor photographs (the only NIR/RGB
training data), and on indoor scenes they add a colour cast. This script checks whether anything of the
generator's colour is right indoors once two things a camera pipeline could correct are removed:

- ``grey-world``: the grey-world white balance (Buchsbaum 1980: scale each channel so that the image's mean colour
  inside the valid area is grey), which removes a global cast such as the green of the training scenes;
- ``nir-luminance``: the pseudo-RGB's chroma (YCrCb, OpenCV's ITU-R BT.601 conversion) on the NIR as luminance,
  so that only the colour comes from the generator and the structure is the NIR's, as many NIR colourisation
  methods keep it;
- ``chroma xF``: the same with the chroma scaled by F towards grey (``128 + F (C - 128)`` for Cr and Cb): F = 0 is
  the replicated NIR, F = 1 the ``nir-luminance`` row, so the rows between say whether any part of the generator's
  colour is right.

Rows, each scored as ``eval-cross-modal`` scores (masked to the valid warp area, at the 256-pixel short side,
:func:`~stereo_depth_ros.evaluation.cross_modal_metrics.colour_metrics`): ``replicated-nir``, ``pseudo-rgb``
(the packaged generator), ``pseudo-rgb grey-world``, ``pseudo-rgb nir-luminance`` and both. Neither correction has
a parameter, so nothing is fitted on the test pairs. If no row beats ``replicated-nir`` on the angular error, the
generator's colour is wrong indoors beyond a global cast, which is what more outdoor training cannot mend.

Usage::

    python benchmarks/cross_modal_colour_transfer.py [--data DIR [--pixel-aligned]] [--limit N] [--weights W] [--json]
    python benchmarks/cross_modal_colour_transfer.py --data ../shared/data/nir_rgb/country --pixel-aligned
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stereo_depth_ros.commands.cross_modal import default_nir_rgb_root
from stereo_depth_ros.data.nir_rgb import downscale_aligned_pair, read_aligned_pairs
from stereo_depth_ros.evaluation.cross_modal_metrics import colour_metrics
from stereo_depth_ros.models.registry import create_estimator

SHORT_SIDE = 256
CHROMA_FACTORS = (0.25, 0.5)
ROWS = ("replicated-nir", "pseudo-rgb", "pseudo-rgb grey-world", "pseudo-rgb nir-luminance",
        "pseudo-rgb grey-world nir-luminance", *(f"pseudo-rgb nir-luminance chroma x{f:g}" for f in CHROMA_FACTORS))


def grey_world(image_bgr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Grey-world white balance: each channel scaled so that its mean over ``valid`` equals the mean of the three.

    Args:
        image_bgr: (H, W, 3) uint8.
        valid: (H, W) bool, the pixels whose mean is balanced (at least one).

    Returns:
        (H, W, 3) uint8, clipped to [0, 255].

    Raises:
        ValueError: for a wrong shape or an empty mask.

    Example:
        >>> image = np.dstack([np.full((2, 2), v, np.uint8) for v in (50, 100, 150)])
        >>> grey_world(image, np.ones((2, 2), bool))[0, 0].tolist()
        [100, 100, 100]
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or valid.shape != image_bgr.shape[:2]:
        raise ValueError(f"expected (H, W, 3) image and (H, W) mask, got {image_bgr.shape} and {valid.shape}")
    if not valid.any():
        raise ValueError("grey-world balance needs at least one valid pixel")
    image = image_bgr.astype(np.float32)
    means = image[valid].mean(axis=0)
    gains = means.mean() / np.maximum(means, 1e-3)
    return np.clip(np.rint(image * gains), 0, 255).astype(np.uint8)


def with_luminance(image_bgr: np.ndarray, luminance: np.ndarray, chroma_factor: float = 1.0) -> np.ndarray:
    """The chroma (Cr, Cb) of ``image_bgr``, scaled by ``chroma_factor`` towards grey, with ``luminance`` as Y
    (OpenCV's BT.601 YCrCb), back to BGR.

    Args:
        image_bgr: (H, W, 3) uint8; luminance: (H, W) uint8; chroma_factor: in [0, 1] (0: grey, 1: unchanged).

    Returns:
        (H, W, 3) uint8 BGR.

    Example:
        >>> grey = np.full((1, 1, 3), 128, np.uint8)
        >>> with_luminance(grey, np.full((1, 1), 40, np.uint8))[0, 0].tolist()
        [40, 40, 40]
    """
    ycrcb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YCrCb)
    ycrcb[..., 0] = luminance
    if chroma_factor != 1.0:
        chroma = 128.0 + chroma_factor * (ycrcb[..., 1:].astype(np.float32) - 128.0)
        ycrcb[..., 1:] = np.clip(np.round(chroma), 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def corrected_images(nir: np.ndarray, pseudo_rgb: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The images of :data:`ROWS` for one pair: NIR (H, W) uint8, pseudo-RGB (H, W, 3) uint8 BGR, valid mask."""
    balanced = grey_world(pseudo_rgb, valid)
    return {"replicated-nir": np.repeat(nir[..., None], 3, axis=2), "pseudo-rgb": pseudo_rgb,
            "pseudo-rgb grey-world": balanced, "pseudo-rgb nir-luminance": with_luminance(pseudo_rgb, nir),
            "pseudo-rgb grey-world nir-luminance": with_luminance(balanced, nir),
            **{f"pseudo-rgb nir-luminance chroma x{f:g}": with_luminance(pseudo_rgb, nir, f) for f in CHROMA_FACTORS}}


def evaluate(data: Path, limit: int | None = None, translator=None, pixel_aligned: bool = False) -> dict:
    """Mean colour metrics of every row over the pairs of ``data`` (aligned NIR/RGB pairs with their matrices, or
    ``pixel_aligned`` ones without).

    Returns:
        ``{"pairs": N, "rows": [{"method", "psnr_db", "ssim", "angular_error_deg"}, ...]}``.
    """
    translator = translator or create_estimator("cyclegan-nir-to-rgb")
    scores: dict[str, list[dict]] = {name: [] for name in ROWS}
    pairs = read_aligned_pairs(data, limit, pixel_aligned)
    for pair in tqdm(pairs, desc="pairs", file=sys.stderr):
        nir, rgb, valid = downscale_aligned_pair(pair, SHORT_SIDE)
        images = corrected_images(nir, translator.predict(nir)["image"], valid)
        for name, image in images.items():
            scores[name].append(colour_metrics(np.where(valid[..., None], image, 0).astype(np.uint8), rgb, valid))
    rows = [{"method": name, **{key: float(np.mean([row[key] for row in scores[name]]))
                                for key in ("psnr_db", "ssim", "angular_error_deg")}} for name in ROWS]
    return {"pairs": len(pairs), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_nir_rgb_root() / "indoor",
                        help="aligned NIR/RGB pairs with matrices (default: the held-out indoor pairs)")
    parser.add_argument("--pixel-aligned", action="store_true",
                        help="the pairs need no warp (nir_rgb/country, the generators' training pairs)")
    parser.add_argument("--limit", type=int, help="first N pairs only")
    parser.add_argument("--weights", help="NIR -> RGB generator weights (safetensors; default: the packaged ones)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        parser.error(f"--limit must be positive, got {args.limit}")
    translator = create_estimator("cyclegan-nir-to-rgb", weights=args.weights) if args.weights else None
    result = evaluate(args.data, args.limit, translator, pixel_aligned=args.pixel_aligned)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['pairs']} pairs of {args.data}, short side {SHORT_SIDE} px, inside the valid warp area\n")
    print("| method | PSNR (dB) | SSIM | angular error (deg) |\n|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['method']} | {row['psnr_db']:.3f} | {row['ssim']:.3f} | {row['angular_error_deg']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
