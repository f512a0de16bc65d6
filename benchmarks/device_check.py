"""GPU check: every registered model on CUDA (float32 and float16) against the CPU, and its speed.

For every registered stereo model: the CPU reference (PyTorch, float32), the CPU's default path (onnxruntime, when
the model has backends) and, on CUDA, PyTorch in float32 and float16. Each configuration runs the same input; its
disparities are compared with the reference stage by stage, and it is timed: the median of ``--repeats`` calls
(50 by default), each synchronised (``torch.cuda.synchronize()`` before and after), after ``--warmup`` untimed calls,
at 1280x1024 by default. Methods without a device option (SGBM, OpenCV on the CPU) get one row, timed only.

Tolerances (pixels of disparity, per stage, against the CPU float32 reference). A plain maximum is not a fair test:
stage 0 picks the most likely disparity before its local soft-argmin (``inference_window``), so where two candidates
are almost equally likely, a rounding difference moves a pixel by whole disparities. So each configuration must
keep the mean absolute difference and the share of pixels that differ by more than 1 px below:

- CPU onnxruntime float32 and CUDA float32 (TF32 convolutions as PyTorch's default): mean <= 0.01 px, share <= 0.1 %.
- CUDA float16: mean <= 0.1 px, share <= 1 %.

The maximum is reported beside them.

Input: a synthetic textured pair with a known disparity (no data set or scikit-image needed), see
:func:`synthetic_pair`; the mean error against that shift is reported as a sanity check.

Runs where only torch, numpy, opencv-python, safetensors and onnxruntime are importable (no ROS, rosbags, tqdm,
matplotlib or yaml) and the package is not installed: the repository root is put on ``sys.path``.

Usage::

    python benchmarks/device_check.py [--json OUT.json] [--height 1024] [--width 1280] [--repeats 50]
        [--warmup 5] [--allow-cpu]

Prints a markdown table. Exit code 0 when every comparison is within its tolerance, 1 when one is not, 2 when CUDA
is absent (unless ``--allow-cpu``, which runs the CPU rows only, e.g. to test this script) or for bad options.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from stereo_depth_ros.models.registry import create_estimator, model_names, model_spec  # noqa: E402

TOLERANCES = {  # precision -> (largest mean |difference| in px, largest share of pixels off by more than 1 px, %)
    "float32": (0.01, 0.1),
    "float16": (0.1, 1.0),
}
KNOWN_DISPARITY_PX = 24.0


def synthetic_pair(height: int, width: int, disparity: float = KNOWN_DISPARITY_PX, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A rectified textured pair whose left-view disparity is ``disparity`` pixels everywhere (uint8 BGR each).

    Band-limited random texture (noise blurred at three scales, so every stage's resolution sees structure); the
    right image is the left one's texture shifted, ``right(x) = texture(x + d)``, ``left(x) = texture(x)``, so
    ``x_left - x_right = d``. The last ``d`` columns of the texture exist only in the right image.

    Raises:
        ValueError: for a size below 16 px or a disparity outside [0, width).
    """
    if height < 16 or width < 16:
        raise ValueError(f"the input must be at least 16x16 pixels, got {height}x{width}")
    if not 0 <= disparity < width:
        raise ValueError(f"disparity must be in [0, {width}) px, got {disparity}")
    rng = np.random.default_rng(seed)
    shift = int(round(disparity))
    texture = np.zeros((height, width + shift, 3), np.float32)
    for sigma, weight in ((1.0, 0.5), (4.0, 0.3), (16.0, 0.2)):
        noise = rng.random((height, width + shift, 3), dtype=np.float32)
        texture += weight * cv2.GaussianBlur(noise, (0, 0), sigma)
    texture -= texture.min()
    texture = (255.0 * texture / max(float(texture.max()), 1e-6)).astype(np.uint8)
    return np.ascontiguousarray(texture[:, :width]), np.ascontiguousarray(texture[:, shift:shift + width])


def compare(stages: list[np.ndarray], reference: list[np.ndarray]) -> list[dict]:
    """Per stage: ``max_abs_px``, ``mean_abs_px`` and ``over_1px_pct`` of ``stages`` against ``reference``."""
    result = []
    for candidate, expected in zip(stages, reference):
        difference = np.abs(candidate.astype(np.float64) - expected.astype(np.float64))
        result.append({"max_abs_px": float(np.nanmax(difference)), "mean_abs_px": float(np.nanmean(difference)),
                       "over_1px_pct": float(100.0 * np.mean(difference > 1.0))})
    return result


def within_tolerance(per_stage: list[dict], precision: str) -> bool:
    """Whether every stage keeps its mean and its share over 1 px within :data:`TOLERANCES` of ``precision``."""
    mean_bound, share_bound = TOLERANCES[precision]
    return all(s["mean_abs_px"] <= mean_bound and s["over_1px_pct"] <= share_bound for s in per_stage)


def median_ms(call, repeats: int, warmup: int, cuda: bool) -> float:
    """Median wall time in ms of ``repeats`` calls after ``warmup`` untimed ones, synchronising CUDA around each."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(1000.0 * (time.perf_counter() - start))
    return float(statistics.median(times))


def configurations(name: str, cuda: bool) -> list[dict]:
    """The (backend, device, precision) configurations to run for model ``name``; the first is the reference."""
    options = model_spec(name).options
    if "device" not in options:
        return [{"options": {}, "device": "cpu", "precision": "float32", "reference": True}]
    rows = [{"options": {"backend": "torch", "device": "cpu"}, "device": "cpu", "precision": "float32",
             "reference": True},
            {"options": {"backend": "onnx", "device": "cpu"}, "device": "cpu", "precision": "float32"}]
    if cuda:
        rows.append({"options": {"backend": "torch", "device": "cuda"}, "device": "cuda", "precision": "float32"})
        rows.append({"options": {"backend": "torch", "device": "cuda", "half": True}, "device": "cuda",
                     "precision": "float16"})
    return rows


def sgbm_range(width: int) -> int:
    """SGBM's search range for this width: 192 px, or the largest multiple of 16 up to half the width."""
    return 192 if width > 2 * 192 else max(16, 16 * (width // 2 // 16))


def check(height: int, width: int, repeats: int, warmup: int, cuda: bool) -> list[dict]:
    """Run every registered stereo model in every configuration; one result row per configuration."""
    left, right = synthetic_pair(height, width)
    rows = []
    for name in model_names("stereo-pair"):
        if model_spec(name).family != "stereo":  # stereo super-resolution takes a pair too, gives no disparity
            continue
        reference = None
        for config in configurations(name, cuda):
            options = dict(config["options"])
            if name == "sgbm":
                options["max_disparity"] = sgbm_range(width)
            estimator = create_estimator(name, **options)
            estimator.prepare(height, width)
            stages = estimator.estimate(left, right)
            row = {"model": name, "backend": estimator.backend, "device": config["device"],
                   "precision": config["precision"], "height": height, "width": width, "stages": len(stages),
                   "median_ms": median_ms(lambda: estimator.estimate(left, right), repeats, warmup,
                                          config["device"] == "cuda"),
                   "repeats": repeats, "mean_error_to_known_disparity_px": [
                       float(np.nanmean(np.abs(s[:, int(KNOWN_DISPARITY_PX):] - KNOWN_DISPARITY_PX)))
                       for s in stages]}
            if config.get("reference"):
                reference = stages
                row["reference"] = True
            elif reference is not None:
                row["difference_to_cpu_float32"] = compare(stages, reference)
                row["tolerance"] = dict(zip(("mean_abs_px", "over_1px_pct"), TOLERANCES[config["precision"]]))
                row["within_tolerance"] = within_tolerance(row["difference_to_cpu_float32"], config["precision"])
            rows.append(row)
            del estimator
            if cuda:
                torch.cuda.empty_cache()
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (differences per stage as ``mean / share over 1 px / max``)."""
    lines = ["| model | backend | device | precision | median ms | vs CPU float32 per stage: mean px / % > 1 px / "
             "max px | within tolerance |", "|---|---|---|---|---:|---|---|"]
    for row in rows:
        if "difference_to_cpu_float32" in row:
            cells = "; ".join(f"{s['mean_abs_px']:.4f} / {s['over_1px_pct']:.3f} / {s['max_abs_px']:.3f}"
                              for s in row["difference_to_cpu_float32"])
            verdict = "yes" if row["within_tolerance"] else "**no**"
        else:
            cells, verdict = ("reference" if row.get("reference") and row["model"] != "sgbm" else "-"), "-"
        lines.append(f"| {row['model']} | {row['backend']} | {row['device']} | {row['precision']} | "
                     f"{row['median_ms']:.1f} | {cells} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the rows and the machine as JSON")
    parser.add_argument("--height", type=int, default=1024, help="input height in pixels (default 1024)")
    parser.add_argument("--width", type=int, default=1280, help="input width in pixels (default 1280)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per configuration (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without CUDA (CPU rows only; to test this script)")
    args = parser.parse_args(argv)
    if args.height < 16 or args.width < 64 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --height >= 16, --width >= 64, --repeats >= 1 and --warmup >= 0")
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("device_check: CUDA is not available (torch.cuda.is_available() is False); pass --allow-cpu to run "
              "the CPU rows only", file=sys.stderr)
        return 2
    rows = check(args.height, args.width, args.repeats, args.warmup, cuda)
    machine = {"python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
               "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
               "cpu_threads": torch.get_num_threads(), "platform": platform.platform()}
    try:
        import onnxruntime

        machine["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        machine["onnxruntime"] = None
    print(markdown(rows))
    print(f"\nsynthetic pair {args.width}x{args.height}, disparity {KNOWN_DISPARITY_PX:g} px; median of "
          f"{args.repeats} synchronised calls after {args.warmup} warm-up calls; tolerances per stage: "
          + ", ".join(f"{p}: mean <= {m} px and <= {s} % of pixels off by > 1 px" for p, (m, s) in TOLERANCES.items())
          + f"; {machine['cuda_device'] or 'no CUDA'}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "machine": machine, "tolerances": TOLERANCES}, indent=2)
                             + "\n")
    return 0 if all(row.get("within_tolerance", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
