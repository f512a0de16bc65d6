"""``benchmark-stereo``'s rows built through the model registry, and the child process of isolated rows.

:func:`stereo_depth_ros.evaluation.benchmark.benchmark_stereo` measures estimators it is given a builder for; this
module is that builder (:func:`build_benchmark_estimator`) and the module each isolated row runs in
(``python -m stereo_depth_ros.commands.benchmark SPEC.json INPUT.npz`` prints one JSON row).
"""

from __future__ import annotations

import sys
from pathlib import Path

from stereo_depth_ros.evaluation import benchmark as evaluation_benchmark
from stereo_depth_ros.models.base import StereoEstimator
from stereo_depth_ros.models.registry import create_estimator

CHILD_MODULE = "stereo_depth_ros.commands.benchmark"


def build_benchmark_estimator(spec: dict) -> StereoEstimator:
    """The estimator of one benchmark row (see :func:`stereo_depth_ros.evaluation.benchmark.measure`).

    Args:
        spec: ``{"method": "sgbm", "num_disparities": N}`` or ``{"method": "coarse-to-fine", "stage", "backend",
            "device", "weights", "max_disparity", "input_scale"}``.

    Raises:
        ValueError: for an unknown method or a bad option; WeightsError for bad weights.
    """
    if spec["method"] == "sgbm":
        return create_estimator("sgbm", max_disparity=spec.get("num_disparities", 192))
    return create_estimator(spec["method"], weights=spec.get("weights"), device=spec.get("device", "auto"),
                            backend=spec.get("backend", "auto"), max_stage=spec["stage"],
                            max_disparity=spec.get("max_disparity"), input_scale=spec.get("input_scale"))


def benchmark_stereo(height: int, width: int, repeats: int = 10, backend: str = "auto", device: str = "auto",
                     weights: str | Path | None = None, stages: tuple[int, ...] = (0, 1, 2, 3),
                     include_sgbm: bool = True, isolate: bool = True, warmup: int = 1, progress: bool = True,
                     sgbm_disparities: int = 192, max_disparity: int | None = None, paired: bool = False,
                     input_scale: float | None = None) -> list[dict]:
    """Benchmark SGBM and the network up to each stage, with the registry's estimators.

    :func:`stereo_depth_ros.evaluation.benchmark.benchmark_stereo` with :func:`build_benchmark_estimator` and this
    module as the child process; the arguments and rows are described there.

    Raises:
        ValueError: for an input scale outside (0, 4] (before any row runs), a bad size, repeat count, back-end or
            stage.
        RuntimeError: if a measurement fails in its process.
    """
    from stereo_depth_ros.models.estimator import check_input_scale

    check_input_scale(input_scale)  # here, not in each row's process, for a clear error
    return evaluation_benchmark.benchmark_stereo(
        height, width, build_benchmark_estimator, CHILD_MODULE, repeats=repeats, backend=backend, device=device,
        weights=weights, stages=stages, include_sgbm=include_sgbm, isolate=isolate, warmup=warmup,
        progress=progress, sgbm_disparities=sgbm_disparities, max_disparity=max_disparity, paired=paired,
        input_scale=input_scale)


def _import_runtimes() -> None:
    """Import what every row needs before its memory baseline is taken (PyTorch, OpenCV, onnxruntime)."""
    import stereo_depth_ros.models.estimator  # noqa: F401  (imports torch)
    import stereo_depth_ros.models.sgbm  # noqa: F401
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass


if __name__ == "__main__":
    _import_runtimes()  # libraries count in the baseline, not in the method's memory
    sys.exit(evaluation_benchmark.child_main(sys.argv[1:], build_benchmark_estimator))
