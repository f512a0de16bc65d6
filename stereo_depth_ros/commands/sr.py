"""``stereo-depth-ros eval-sr`` and ``eval-sr-dataset``: stereo super-resolution against bicubic and the
single-image baseline.

Protocol (iPASSR's, Wang et al., CVPRW 2021, section 4.1): the HR pair is cropped to the bounding box of its active
area (black borders of rectified endoscope frames removed, :func:`active_area_crop`) and to multiples of the scale;
the LR pair is its bicubic downscale with antialiasing, rounded to 8 bits
(:func:`stereo_depth_ros.models.stereo_sr.bicubic_downscale`); every method upscales the LR pair and is scored on
RGB in [0, 1] (PSNR, no Y channel, and SSIM; :mod:`stereo_depth_ros.evaluation.sr_metrics`) for the left view, the
right view and their mean. ``runtime_ms`` is the wall time of one call on the pair (after a warm-up call).

``eval-sr-dataset`` runs over held-out frames never trained on: the BDIS in-vivo pairs of
``config/splits/bdis_invivo_test.txt`` (14 pairs). With ``--stereo-epe`` it also runs the stereo network
(``coarse-to-fine``) on the HR pair and on each method's upscaled pair and reports the mean absolute difference of
the disparities (end-point error in HR pixels) against the HR result (these frames have no GT disparity).

stdout carries only the result (a markdown table, or with ``--json`` exactly one JSON document); progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from stereo_depth_ros.commands import parse_weights_overrides
from stereo_depth_ros.data.stereo_folder import black_border_mask
from stereo_depth_ros.evaluation.sr_metrics import pair_metrics
from stereo_depth_ros.images import check_stereo_pair, crop_to_multiple, read_image_bgr
from stereo_depth_ros.models.registry import model_names, model_spec
from stereo_depth_ros.resources import split_file

METHODS = ("bicubic", "single-image-sr", "stereo-sr")
ROW_FIELDS = ("method", "scale", "psnr_db", "ssim", "psnr_left_db", "psnr_right_db", "runtime_ms")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-sr`` and ``eval-sr-dataset``."""
    one = sub.add_parser("eval-sr", help="super-resolution PSNR/SSIM of bicubic and the SR models on one HR pair",
                         description="Make the LR pair from an HR pair by bicubic downscaling (antialiased) and "
                                     "score bicubic, the single-image baseline and the stereo SR network.")
    one.add_argument("--left", required=True, help="HR left image")
    one.add_argument("--right", required=True, help="HR right image")
    one.add_argument("--figure", metavar="OUT.png", help="write LR | bicubic | each model | HR crops as one PNG")
    _add_common(one)
    one.set_defaults(run=_run_one)

    many = sub.add_parser("eval-sr-dataset", help="super-resolution metrics averaged over held-out pairs",
                          description="Score the methods on the held-out BDIS in-vivo pairs (never trained on).")
    many.add_argument("--pairs", default=str(split_file()), metavar="LIST",
                      help="pair list (left-image paths relative to --data-root; default the held-out BDIS list)")
    many.add_argument("--data-root", help="folder the list is relative to (default ../shared/data/endoscopic_stereo)")
    many.add_argument("--limit", type=int, help="first N pairs only")
    many.add_argument("--stereo-epe", action="store_true",
                      help="also run the stereo network on the HR pair and each upscaled pair: disparity EPE (HR "
                           "pixels) of each against the HR result")
    many.add_argument("--figure", metavar="OUT.png", help="figure of the first pair")
    many.add_argument("--by-set", action="store_true",
                      help="also one table per set (the folder above each pair's left/ folder)")
    many.add_argument("--attention", action="store_true",
                      help="also report how the stereo network's parallax attention matches: its mean peak weight, "
                           "mean valid mask, and its disparity against confident SGBM on the LR pair")
    _add_common(many)
    many.set_defaults(run=_run_dataset)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, required=True, choices=(2, 4), help="upscaling factor")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="a registered super-resolution model (repeatable; default: single-image-sr-xS and "
                             "stereo-sr-xS where their weights exist)")
    parser.add_argument("--weights", action="append", metavar="NAME=PATH",
                        help="weights for a model, e.g. stereo-sr-x2=run.safetensors (repeatable)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--no-border-crop", action="store_true", help="keep the black border of the HR pair")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON document")


def method_of(name: str) -> str:
    """The table's method of a registered SR model: ``"stereo-sr"`` or ``"single-image-sr"``.

    Raises:
        ValueError: for a model that is not a super-resolution model.
    """
    spec = model_spec(name)
    if spec.family != "super-resolution":
        raise ValueError(f"model {name!r} is not a super-resolution model (family {spec.family!r})")
    return "stereo-sr" if name.startswith("stereo-sr") else "single-image-sr"


def default_models(scale: int) -> list[str]:
    """``single-image-sr-x<scale>`` and ``stereo-sr-x<scale>`` where their packaged weights exist."""
    names = [f"single-image-sr-x{scale}", f"stereo-sr-x{scale}"]
    return [n for n in names if n in model_names() and model_spec(n).default_weights is not None
            and Path(model_spec(n).default_weights).is_file()]


def active_area_crop(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both views cropped to the bounding box of the pixels inside the active area of both (no black border).

    Raises:
        ValueError: if no pixel is inside the active area.
    """
    active = black_border_mask(left, erode=0) & black_border_mask(right, erode=0)
    rows, columns = np.flatnonzero(active.any(1)), np.flatnonzero(active.any(0))
    if rows.size == 0:
        raise ValueError("the pair has no pixel outside its black border")
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    return np.ascontiguousarray(left[box]), np.ascontiguousarray(right[box])


def prepare_pair(left: np.ndarray, right: np.ndarray, scale: int, border_crop: bool = True):
    """``(hr_left, hr_right, lr_left, lr_right)``: the HR pair cropped (active area, multiples of ``scale``) and its
    bicubic LR pair, all uint8 BGR.

    Raises:
        ValueError: for a bad pair or scale.
    """
    from stereo_depth_ros.models.stereo_sr import bicubic_downscale

    check_stereo_pair(left, right)
    if border_crop:
        left, right = active_area_crop(left, right)
    left, right = crop_to_multiple(left, scale), crop_to_multiple(right, scale)
    return left, right, bicubic_downscale(left, scale), bicubic_downscale(right, scale)


class Methods:
    """The methods of one evaluation: bicubic and the SR estimators, built once and prepared per LR size."""

    def __init__(self, scale: int, names: list[str] | None, weights: dict[str, str], backend: str) -> None:
        from stereo_depth_ros.models.registry import create_estimator

        self.scale = scale
        names = default_models(scale) if names is None else names
        self.estimators = []
        for name in names:
            method = method_of(name)
            if model_spec(name).build is None or not name.endswith(f"x{scale}"):
                raise ValueError(f"model {name!r} is not an x{scale} model")
            options = {"backend": backend}
            if name in weights:
                options["weights"] = weights[name]
            self.estimators.append((method, create_estimator(name, **options)))
        self._prepared: set = set()

    def run(self, lr_left: np.ndarray, lr_right: np.ndarray) -> list[tuple[str, tuple, float]]:
        """``[(method, (sr_left, sr_right), runtime_ms), ...]``, bicubic first."""
        from stereo_depth_ros.models.stereo_sr import bicubic_upscale

        outputs = []
        bicubic_upscale(lr_left, self.scale)
        started = time.perf_counter()
        pair = (bicubic_upscale(lr_left, self.scale), bicubic_upscale(lr_right, self.scale))
        outputs.append(("bicubic", pair, (time.perf_counter() - started) * 1e3))
        for method, estimator in self.estimators:
            key = (id(estimator), lr_left.shape)
            if key not in self._prepared:
                estimator.prepare(lr_left.shape[0], lr_left.shape[1])
                estimator.super_resolve(lr_left, lr_right)  # warm-up
                self._prepared.add(key)
            started = time.perf_counter()
            pair = estimator.super_resolve(lr_left, lr_right)
            outputs.append((method, pair, (time.perf_counter() - started) * 1e3))
        return outputs


def score_pair(methods: Methods, hr_left, hr_right, lr_left, lr_right) -> tuple[list[dict], list]:
    """Rows (:data:`ROW_FIELDS`) of every method on one pair, and the methods' outputs."""
    rows, outputs = [], methods.run(lr_left, lr_right)
    for method, (sr_left, sr_right), runtime_ms in outputs:
        metrics = pair_metrics(sr_left, sr_right, hr_left, hr_right)
        rows.append({"method": method, "scale": methods.scale, "psnr_db": metrics["psnr_db"],
                     "ssim": metrics["ssim"], "psnr_left_db": metrics["psnr_left_db"],
                     "psnr_right_db": metrics["psnr_right_db"], "runtime_ms": runtime_ms})
    return rows, outputs


def save_figure(path: str | Path, hr_left: np.ndarray, lr_left: np.ndarray, outputs: list, scale: int,
                crop: int = 96) -> None:
    """LR (nearest upscale) | each method | HR, left view, a ``crop`` x ``crop`` HR window at the image centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = hr_left.shape[:2]
    size = min(crop, height, width) // scale * scale
    y, x = (height - size) // 2 // scale * scale, (width - size) // 2 // scale * scale
    window = (slice(y, y + size), slice(x, x + size))
    small = lr_left[y // scale:(y + size) // scale, x // scale:(x + size) // scale]
    panels = [("LR (nearest)", np.repeat(np.repeat(small, scale, 0), scale, 1))]
    panels += [(method, pair[0][window]) for method, pair, _ in outputs]
    panels.append(("HR", hr_left[window]))
    figure, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.7))
    for axis, (title, image) in zip(axes, panels):
        axis.imshow(image[..., ::-1], interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(f"x{scale}, left view, {size}x{size} HR pixels at the centre", fontsize=9)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    lines = ["| method | scale | PSNR (dB) | SSIM | PSNR left (dB) | PSNR right (dB) | runtime (ms) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | x{row['scale']} | {row['psnr_db']:.2f} | {row['ssim']:.4f} | "
                     f"{row['psnr_left_db']:.2f} | {row['psnr_right_db']:.2f} | {row['runtime_ms']:.1f} |")
    return "\n".join(lines)


def _run_one(args: argparse.Namespace) -> int:
    methods = Methods(args.scale, args.model, parse_weights_overrides(args.weights), args.backend)
    hr_left, hr_right, lr_left, lr_right = prepare_pair(read_image_bgr(args.left), read_image_bgr(args.right),
                                                        args.scale, not args.no_border_crop)
    rows, outputs = score_pair(methods, hr_left, hr_right, lr_left, lr_right)
    if args.figure:
        save_figure(args.figure, hr_left, lr_left, outputs, args.scale)
    print(json.dumps({"rows": rows}) if args.json else markdown(rows))
    return 0


def held_out_pairs(list_path: str | Path, data_root: str | Path) -> list[tuple[Path, Path]]:
    """(left, right) paths of a pair list (left-image paths relative to ``data_root``; right = ``left`` ->
    ``right`` folder).

    Raises:
        FileNotFoundError: for a missing list or image.
    """
    from stereo_depth_ros.data.folder_dataset import read_pair_list

    pairs = []
    for entry in read_pair_list(list_path):
        left = Path(data_root) / entry
        right = left.parent.parent / "right" / left.name
        for path in (left, right):
            if not path.is_file():
                raise FileNotFoundError(f"pair image {path} does not exist")
        pairs.append((left, right))
    return pairs


ATTENTION_FIELDS = ("peak_weight", "valid_mask", "proxy_pixels_pct", "match_error_px", "within_1px_pct")


def attention_statistics(network, lr_left: np.ndarray, lr_right: np.ndarray) -> dict:
    """How the stereo SR network's parallax attention matches on one LR pair (the left view's attention).

    Args:
        network: a :class:`~stereo_depth_ros.models.stereo_sr.StereoSuperResolutionNet` with biPAM (torch).
        lr_left, lr_right: (h, w, 3) uint8 BGR LR pair, wider than twice the proxy search range.

    Returns:
        ``peak_weight``: mean over pixels of the largest attention weight of the row (1 / w for a spread attention,
        1 for a sharp one); ``valid_mask``: mean of the valid mask ``V`` in [0, 1]; ``proxy_pixels_pct``: share of
        pixels with a confident SGBM disparity (:func:`stereo_depth_ros.training.sr_trainer.lr_proxy_disparities`);
        ``match_error_px``: median over those pixels of ``|(x - argmax_j M[x, j]) - d_sgbm|`` in LR pixels;
        ``within_1px_pct``: the share of them within 1 px (nan and 0 when no pixel is confident).

    Raises:
        ValueError: for a network without biPAM.
    """
    import torch

    from stereo_depth_ros.training.sr_trainer import lr_proxy_disparities

    if getattr(network, "bipam", None) is None:
        raise ValueError("attention statistics need the stereo network (with biPAM)")

    def tensor(image: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None].float() / 255.0

    with torch.no_grad():
        _, _, attention = network.eval()(tensor(lr_left), tensor(lr_right), return_attention=True)
    right_to_left = attention["right_to_left"][0]  # (h, w, w)
    peak, match = right_to_left.max(-1)
    columns = torch.arange(right_to_left.shape[-1]).view(1, -1)
    disparity = (columns - match).numpy().astype(np.float32)
    proxy, _ = lr_proxy_disparities(lr_left, lr_right, network.scale)
    known = np.isfinite(proxy)
    error = np.abs(disparity[known] - proxy[known])
    return {"peak_weight": float(peak.mean()), "valid_mask": float(attention["valid_left"].mean()),
            "proxy_pixels_pct": 100.0 * float(known.mean()),
            "match_error_px": float(np.median(error)) if error.size else math.nan,
            "within_1px_pct": 100.0 * float((error <= 1.0).mean()) if error.size else 0.0}


def stereo_network_of(methods: "Methods"):
    """The torch network of the ``stereo-sr`` method of ``methods`` (its weights, loaded again for torch).

    Raises:
        ValueError: when ``methods`` has no stereo-sr model.
    """
    from stereo_depth_ros.models.stereo_sr import STEREO_ARCHITECTURE, build_network
    from stereo_depth_ros.models.weights import load_weights

    for method, estimator in methods.estimators:
        if method == "stereo-sr":
            if estimator.weights is None:
                return build_network({**estimator.config, "stereo": True})
            return load_weights(estimator.weights, STEREO_ARCHITECTURE, build_network)[0]
    raise ValueError("--attention needs a stereo-sr model among the evaluated ones")


def mean_rows(per_frame: list[dict], scale: int) -> list[dict]:
    """One row per method: each metric of :data:`ROW_FIELDS` averaged over the frames (``per_frame`` entries as
    ``eval-sr-dataset --json`` lists them, each with its ``rows``)."""
    rows = []
    for method in [row["method"] for row in per_frame[0]["rows"]]:
        frame_rows = [next(r for r in frame["rows"] if r["method"] == method) for frame in per_frame]
        rows.append({"method": method, "scale": scale,
                     **{key: float(np.mean([r[key] for r in frame_rows])) for key in ROW_FIELDS[2:]}})
    return rows


def _run_dataset(args: argparse.Namespace) -> int:
    from stereo_depth_ros.evaluation.datasets import default_data_root

    root = Path(args.data_root) if args.data_root else Path(default_data_root()) / "endoscopic_stereo"
    pairs = held_out_pairs(args.pairs, root)[:args.limit]
    methods = Methods(args.scale, args.model, parse_weights_overrides(args.weights), args.backend)
    stereo = None
    if args.stereo_epe:
        from stereo_depth_ros.models.registry import create_estimator

        stereo = create_estimator("coarse-to-fine", backend=args.backend)
    attention_network = stereo_network_of(methods) if args.attention else None
    per_frame, epe, attention = [], {}, []
    for index, (left_path, right_path) in enumerate(pairs):
        print(f"[{index + 1}/{len(pairs)}] {left_path}", file=sys.stderr)
        hr_left, hr_right, lr_left, lr_right = prepare_pair(read_image_bgr(left_path), read_image_bgr(right_path),
                                                            args.scale, not args.no_border_crop)
        rows, outputs = score_pair(methods, hr_left, hr_right, lr_left, lr_right)
        if args.figure and index == 0:
            save_figure(args.figure, hr_left, lr_left, outputs, args.scale)
        per_frame.append({"frame": str(left_path.relative_to(root)),
                          "set": str(left_path.parent.parent.relative_to(root)), "rows": rows})
        if attention_network is not None:
            attention.append(attention_statistics(attention_network, lr_left, lr_right))
        if stereo is not None:
            reference = stereo.estimate(hr_left, hr_right)[-1]
            for method, (sr_left, sr_right), _ in outputs:
                disparity = stereo.estimate(sr_left, sr_right)[-1]
                valid = np.isfinite(reference) & np.isfinite(disparity)
                epe.setdefault(method, []).append(float(np.mean(np.abs(disparity[valid] - reference[valid]))))
    rows = mean_rows(per_frame, args.scale)
    groups: dict[str, list[dict]] = {}
    if args.by_set:
        for frame in per_frame:
            groups.setdefault(frame["set"], []).append(frame)
    by_set = {name: mean_rows(frames, args.scale) for name, frames in groups.items()}
    stereo_rows = [{"method": method, "scale": args.scale, "epe_vs_hr_px": float(np.mean(values))}
                   for method, values in epe.items()]
    attention_row = ({key: float(np.nanmean([frame[key] for frame in attention])) for key in ATTENTION_FIELDS}
                     if attention else None)
    if args.json:
        document = {"rows": rows, "frames": per_frame, "stereo_epe": stereo_rows}
        if by_set:
            document["sets"] = by_set
        if attention_row is not None:
            document["attention"] = attention_row
        print(json.dumps(document))
    else:
        print(f"{len(pairs)} held-out pairs ({args.pairs}), mean over pairs\n")
        print(markdown(rows))
        for name, set_rows in by_set.items():
            count = len(groups[name])
            print(f"\n{name}: {count} pair{'s' if count > 1 else ''}, mean over pairs\n")
            print(markdown(set_rows))
        if stereo_rows:
            print("\n| input to coarse-to-fine | scale | disparity EPE vs HR result (px) |\n|---|---|---|")
            for row in stereo_rows:
                print(f"| {row['method']} | x{row['scale']} | {row['epe_vs_hr_px']:.3f} |")
        if attention_row is not None:
            print("\n| stereo-sr attention (left view, mean over pairs) | peak weight | valid mask | pixels with a "
                  "confident SGBM disparity % | median match error vs SGBM (LR px) | within 1 px % |\n"
                  "|---|---|---|---|---|---|")
            print(f"| x{args.scale} | {attention_row['peak_weight']:.3f} | {attention_row['valid_mask']:.3f} | "
                  f"{attention_row['proxy_pixels_pct']:.1f} | {attention_row['match_error_px']:.2f} | "
                  f"{attention_row['within_1px_pct']:.1f} |")
    return 0
