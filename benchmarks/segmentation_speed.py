"""CPU time of SPP-LinkNet-34 (packaged weights) per 1280x1024 frame, onnxruntime, and of the colour-threshold
baseline, for docs/benchmarks.md.

For each network input height (``--working-heights``; 256 = the training scale, 1024 = the full frame) the script
times ``SegmentationEstimator.predict`` on a real 1280x1024 EndoVis 2017 frame when ../shared/data is present (a
random image otherwise: the time does not depend on the content): resize, network, resize of the logits back to
1280x1024 and the decision. The ONNX graph is exported/loaded by ``prepare`` before timing; a few warm-up runs are
not timed. Prints one JSON document with the median and best time per configuration.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_speed.py --repeats 20
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRAME = REPO.parent / "shared" / "data" / "segmentation" / "endovis2017_binary" / "frame000.jpg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime/OpenCV threads (default 1)")
    parser.add_argument("--working-heights", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    import onnxruntime
    import torch

    from stereo_depth_ros.evaluation.colour_threshold import ColourThresholdSegmenter
    from stereo_depth_ros.models import inference
    from stereo_depth_ros.models.registry import create_estimator

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    original_open = inference._open_session

    def open_session(model):  # the same session options, with the thread count of this run
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    inference._open_session = open_session
    image = cv2.imread(str(FRAME)) if FRAME.is_file() else None
    source = str(FRAME) if image is not None else "random image"
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (1024, 1280, 3), dtype=np.uint8)
    assert image.shape == (1024, 1280, 3), image.shape
    rows = []
    segmenters = [(height, create_estimator("spp-linknet", backend="onnx", working_height=height))
                  for height in args.working_heights] + [(None, ColourThresholdSegmenter())]
    for height, segmenter in segmenters:
        segmenter.prepare(1024, 1280)
        for _ in range(3):
            segmenter.predict(image)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            segmenter.predict(image)
            times.append((time.perf_counter() - started) * 1000.0)
        rows.append({"model": segmenter.name, "backend": segmenter.backend, "working_height": height,
                     "median_ms": round(float(np.median(times)), 1), "best_ms": round(float(np.min(times)), 1)})
    inference._open_session = original_open
    print(json.dumps({"frame": source, "size": "1280x1024", "threads": args.threads, "repeats": args.repeats,
                      "machine": platform.machine(), "onnxruntime": onnxruntime.__version__, "rows": rows},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
