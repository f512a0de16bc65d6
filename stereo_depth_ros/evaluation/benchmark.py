"""Speed and memory of SGBM and of the network up to each stage, on the same input, in one run.

Method (also in docs/evaluation.md):

- Input: scikit-image's Middlebury 2014 Motorcycle pair resized (area interpolation) to the requested size.
- Time: ``time.perf_counter`` around ``estimate``; median of ``repeats`` calls after ``warmup`` untimed calls
  (the first ONNX call exports the graph for that size).
- Memory (CPU): each (method, stage, back-end) runs in a fresh Python process (``python -m CHILD_MODULE``, the
  command layer's :mod:`stereo_depth_ros.commands.benchmark`) so that measurements do not leak into each other.
  ``peak_mb`` = peak resident set size (Linux ``VmHWM`` in ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` after the warm-up) during the timed calls, minus the resident size of that process
  just before the estimator was built (after importing PyTorch, OpenCV and onnxruntime and loading the input). So
  it counts the weights, the ONNX session and its buffers, and the largest working memory of a call. Where
  ``clear_refs`` cannot be written, a thread samples ``VmRSS`` every millisecond instead; without ``/proc`` (not
  Linux) ``peak_mb`` is None.
- Memory (CUDA network rows): ``torch.cuda.max_memory_allocated`` during the timed calls, in MiB.
- Paired ratio (``paired=True``, network rows): after the timed calls, the same process builds SGBM too and times
  ``repeats`` rounds of one network call and one SGBM call (alternating which goes first); ``paired_ratio`` is
  the median over rounds of network time / SGBM time. Each round's two calls meet the same state of the machine,
  so slow phases of a shared machine (we saw whole runs of the network 40 % slower, docs/benchmarks.md) move both
  and the ratio stays put, where the ratio of two medians taken seconds apart in different processes does not.

This module builds no estimator (evaluation does not import the models): :func:`measure` and
:func:`benchmark_stereo` take a ``build(spec) -> estimator`` callback, and isolated rows run a child module that
calls :func:`child_main` with its own builder.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

BACKEND_CHOICES = ("auto", "torch", "onnx", "all")
STATUS_PATH = Path("/proc/self/status")
CLEAR_REFS_PATH = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS_PATH.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak resident memory of this process during a ``with`` block, in MiB above a baseline.

    Uses ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` (Linux >= 4.0), else a thread sampling
    ``VmRSS`` every millisecond; ``peak_mb`` is None where ``/proc`` is missing.

    Args:
        baseline_kib: resident size to subtract (default: ``VmRSS`` when the block starts).
    """

    def __init__(self, baseline_kib: int | None = None) -> None:
        self.baseline_kib = baseline_kib
        self.peak_kib: int | None = None
        self.method = "none"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakRss":
        if self.baseline_kib is None:
            self.baseline_kib = _status_kib("VmRSS")
        try:
            CLEAR_REFS_PATH.write_text("5")
            self.method = "VmHWM"
        except OSError:
            if _status_kib("VmRSS") is not None:
                self.method = "VmRSS sampling"
                self.peak_kib = _status_kib("VmRSS")
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = _status_kib("VmRSS")
            if value is not None:
                self.peak_kib = max(self.peak_kib or 0, value)
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.peak_kib = _status_kib("VmHWM")
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()

    @property
    def peak_mb(self) -> float | None:
        """Peak minus baseline, MiB (None when it could not be measured)."""
        if self.peak_kib is None or self.baseline_kib is None:
            return None
        return max(self.peak_kib - self.baseline_kib, 0) / 1024.0


def benchmark_input(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's Motorcycle pair resized to ``height`` x ``width`` (uint8 BGR each).

    Raises:
        ValueError: for a size below 16 px.
    """
    from stereo_depth_ros.evaluation.datasets import load_skimage_motorcycle

    if height < 16 or width < 16:
        raise ValueError(f"benchmark size must be at least 16x16 pixels, got {height}x{width}")
    left, right, _ = load_skimage_motorcycle()
    size = (width, height)
    return (cv2.resize(left, size, interpolation=cv2.INTER_AREA),
            cv2.resize(right, size, interpolation=cv2.INTER_AREA))


def measure(spec: dict, left_bgr: np.ndarray, right_bgr: np.ndarray, build: Callable[[dict], object]) -> dict:
    """Time and measure one method (and stage) in the current process.

    Args:
        spec: ``{"method": "sgbm"|"coarse-to-fine", "stage": int|None, "backend", "device", "weights",
            "repeats", "warmup", "max_disparity", "input_scale", "paired", "num_disparities"}``.
        left_bgr, right_bgr: (H, W, 3) uint8 BGR input pair.
        build: ``build(spec) -> estimator``; called once for the row's method and, with ``"paired"``, once with
            ``{"method": "sgbm", "num_disparities": ...}`` for the SGBM it is paired with.

    Returns:
        the benchmark row: ``{"method", "stage", "backend", "device", "height", "width", "median_ms", "peak_mb",
        "repeats", "memory_method"}``; rows of an estimator with an input scale (the network) also ``"input_scale"``
        (the factor used), and with ``"paired"`` the paired fields.
    """
    baseline = _status_kib("VmRSS")  # libraries imported by the caller count in the baseline, not the method
    estimator = build(spec)
    stage = spec.get("stage")
    if stage is None:
        def call():
            return estimator.estimate(left_bgr, right_bgr)
    else:
        def call():
            return estimator.estimate(left_bgr, right_bgr, max_stage=stage)
    cuda = getattr(getattr(estimator, "device", None), "type", "cpu") == "cuda"
    for _ in range(max(int(spec.get("warmup", 1)), 1)):
        call()
    times = []
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRss(baseline) as memory:
        for _ in range(int(spec["repeats"])):
            times.append(elapsed_ms(call))
    if cuda:
        import torch

        peak_mb, memory_method = torch.cuda.max_memory_allocated() / 2 ** 20, "torch.cuda.max_memory_allocated"
    else:
        peak_mb, memory_method = memory.peak_mb, memory.method
    row = {"method": estimator.name, "stage": stage, "backend": getattr(estimator, "backend", None),
           "device": str(getattr(estimator, "device", "cpu")), "height": int(left_bgr.shape[0]),
           "width": int(left_bgr.shape[1]), "median_ms": float(statistics.median(times)), "peak_mb": peak_mb,
           "repeats": len(times), "memory_method": memory_method}
    if hasattr(estimator, "working_scale"):
        row["input_scale"] = round(estimator.working_scale(left_bgr.shape[1]), 4)
    if spec.get("paired") and spec["method"] != "sgbm":
        sgbm = build({"method": "sgbm", "stage": None, "num_disparities": int(spec.get("num_disparities", 192))})
        row.update(paired_with_sgbm(call, left_bgr, right_bgr, int(spec["repeats"]), sgbm))
    return row


def elapsed_ms(function) -> float:
    """Wall time of one ``function()`` call in milliseconds (``time.perf_counter``).

    Estimators return NumPy arrays, so a CUDA call has finished (copied back to the host) when it returns.
    """
    start = time.perf_counter()
    function()
    return 1000.0 * (time.perf_counter() - start)


def paired_with_sgbm(call, left_bgr: np.ndarray, right_bgr: np.ndarray, repeats: int, sgbm) -> dict:
    """Time ``call`` and SGBM in alternating rounds (see the module docstring, "Paired ratio").

    Args:
        call: the timed network call (no arguments).
        left_bgr, right_bgr: the pair SGBM runs on.
        repeats: rounds.
        sgbm: the SGBM estimator (``estimate(left, right)``); run once untimed first.

    Returns:
        ``{"paired_median_ms", "paired_sgbm_median_ms", "paired_ratio"}``: the medians of both methods over the
        rounds and the median over rounds of (time of ``call``) / (time of SGBM).
    """
    sgbm.estimate(left_bgr, right_bgr)  # warm-up

    def call_sgbm():
        return sgbm.estimate(left_bgr, right_bgr)

    network_ms, sgbm_ms = [], []
    for index in range(repeats):
        if index % 2:
            sgbm_ms.append(elapsed_ms(call_sgbm))
            network_ms.append(elapsed_ms(call))
        else:
            network_ms.append(elapsed_ms(call))
            sgbm_ms.append(elapsed_ms(call_sgbm))
    return {"paired_median_ms": float(statistics.median(network_ms)),
            "paired_sgbm_median_ms": float(statistics.median(sgbm_ms)),
            "paired_ratio": float(statistics.median(n / g for n, g in zip(network_ms, sgbm_ms)))}


def _measure_isolated(spec: dict, left_bgr: np.ndarray, right_bgr: np.ndarray, child_module: str) -> dict:
    """Run :func:`measure` in a fresh Python process (``python -m child_module SPEC.json INPUT.npz``, a module that
    calls :func:`child_main`).

    Raises:
        RuntimeError: with the end of the child's stderr, if it fails.
    """
    with tempfile.TemporaryDirectory(prefix="stereo-benchmark-") as folder:
        spec_path, input_path = Path(folder) / "spec.json", Path(folder) / "input.npz"
        spec_path.write_text(json.dumps(spec))
        np.savez(input_path, left=left_bgr, right=right_bgr)
        package_parent = str(Path(__file__).resolve().parents[2])  # importable even when not installed
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent,
                                                                       os.environ.get("PYTHONPATH")) if p))
        result = subprocess.run([sys.executable, "-m", child_module, str(spec_path), str(input_path)],
                                capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark of {spec['method']} stage {spec.get('stage')} failed (exit code "
                           f"{result.returncode}): {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def benchmark_stereo(height: int, width: int, build: Callable[[dict], object], child_module: str | None = None,
                     repeats: int = 10, backend: str = "auto", device: str = "auto",
                     weights: str | Path | None = None, stages: tuple[int, ...] = (0, 1, 2, 3),
                     include_sgbm: bool = True, isolate: bool = True, warmup: int = 1, progress: bool = True,
                     sgbm_disparities: int = 192, max_disparity: int | None = None, paired: bool = False,
                     input_scale: float | None = None) -> list[dict]:
    """Benchmark SGBM (192 disparities, 3-way) and the network up to each stage on one input.

    Args:
        height, width: input size in pixels (the Motorcycle pair is resized to it).
        build: ``build(spec) -> estimator`` for the rows measured in this process (see :func:`measure`).
        child_module: the module run as ``python -m child_module SPEC INPUT`` for isolated rows (it calls
            :func:`child_main` with the same builder); required when ``isolate``.
        repeats: timed calls per row (median reported), >= 1.
        backend: "auto", "torch", "onnx", or "all" (rows for both PyTorch and onnxruntime).
        device: "auto", "cpu" or "cuda" for the network.
        weights: network weights (default the packaged ones).
        stages: network stages to time (each run up to that stage).
        isolate: measure each row in a fresh process (needed for meaningful ``peak_mb``; False is faster).
        warmup: untimed calls before timing (>= 1).
        sgbm_disparities: SGBM search range in pixels (192 by default; the width must exceed it).
        max_disparity: the network's search range in pixels; None = the same as SGBM's, so both search alike.
        paired: also time each network row against SGBM in alternating rounds (``paired_ratio``, see the module
            docstring).
        input_scale: the network's input scale (None = auto: 1.0 at 1280 px wide and more, 2.0 at 640 px), passed
            to the builder; each network row reports the factor used.

    Returns:
        rows ``{"method", "stage", "backend", "device", "height", "width", "median_ms", "peak_mb", "repeats",
        "memory_method"}``, SGBM first (stage None, backend "opencv"); network rows also have ``"input_scale"``
        (the factor used), and with ``paired`` ``"paired_median_ms", "paired_sgbm_median_ms", "paired_ratio"``.

    Raises:
        ValueError: for a bad size, repeat count, back-end or stage, or ``isolate`` without ``child_module``.
        RuntimeError: if a measurement fails in its process.
    """
    from tqdm import tqdm

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if any(not 0 <= s <= 3 for s in stages):
        raise ValueError(f"stages must be in 0..3, got {stages}")
    if isolate and not child_module:
        raise ValueError("isolated rows need the child module that builds the estimators (child_module)")
    if include_sgbm and width <= sgbm_disparities:
        raise ValueError(f"SGBM searches {sgbm_disparities} disparities, so the width must be larger than that; "
                         f"got {width} (use a smaller --sgbm-disparities or a wider input)")
    left, right = benchmark_input(height, width)
    backends = ("torch", "onnx") if backend == "all" else (backend,)
    specs = [{"method": "sgbm", "stage": None, "num_disparities": sgbm_disparities}] if include_sgbm else []
    specs += [{"method": "coarse-to-fine", "stage": s, "backend": b, "device": device,
               "weights": None if weights is None else str(weights),
               "max_disparity": int(max_disparity or sgbm_disparities), "paired": bool(paired),
               "num_disparities": sgbm_disparities, "input_scale": input_scale} for b in backends for s in stages]
    rows = []
    for spec in tqdm(specs, desc="benchmark", unit="row", disable=not progress, file=sys.stderr):
        spec = dict(spec, repeats=repeats, warmup=warmup)
        rows.append(_measure_isolated(spec, left, right, child_module) if isolate
                    else measure(spec, left, right, build))
    return rows


def child_main(argv: list[str], build: Callable[[dict], object]) -> int:
    """A benchmark child process: ``python -m CHILD_MODULE SPEC.json INPUT.npz`` prints one JSON row.

    Args:
        argv: ``[SPEC.json, INPUT.npz]`` (the spec of :func:`measure`, and the pair as ``left``/``right`` arrays).
        build: the estimator builder of :func:`measure`.

    Returns:
        0 on success, 2 for a wrong number of arguments.
    """
    if len(argv) != 2:
        print("usage: python -m CHILD_MODULE SPEC.json INPUT.npz", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    with np.load(argv[1]) as data:
        left, right = data["left"], data["right"]
    stdout = sys.stdout
    sys.stdout = sys.stderr  # keep library prints out of the result line
    try:
        row = measure(spec, left, right, build)
    finally:
        sys.stdout = stdout
    print(json.dumps(row))
    return 0
