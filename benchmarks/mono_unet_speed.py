"""Light U-Net (paper 001) against the original U-Net (Ronneberger et al. 2015) at the same input size, in one run.

For each network (``stereo_depth_ros.models.mono_unet.LightUNet`` and ``OriginalUNet``, default widths; the
weights do not change speed or memory, so randomly initialised networks are measured unless ``--weights`` gives
files) it reports

- ``parameters``: trainable parameters;
- ``runtime ms``: median (and best) wall time of one onnxruntime (CPU) inference of a 1 x 3 x H x W float32 image, over
  ``--repeats`` runs after ``--warmup`` runs; the two networks are run alternately, round after round, so a change
  of machine load hits both;
- ``peak memory MiB``: how much the peak resident memory (``VmHWM`` of /proc/self/status, Linux) of a fresh
  Python process grows while it builds the onnxruntime session of the exported graph and runs ``--warmup + 1``
  inferences (weights, activations, arena); each network in its own process so one's allocations do not hide the
  other's.

Paper 001 reports 1.22M vs 17.26M parameters and 35.5 vs 6.1 frames per second (5.8x) on a GPU. The issue asks
for at most 1.3M parameters and at least 4x faster on the CPU with onnxruntime.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/mono_unet_speed.py                 # 256x320, 1 thread, markdown table
    python benchmarks/mono_unet_speed.py --height 480 --width 640 --threads 2 --json

No timing is asserted anywhere; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NETWORKS = ("light", "original")
TITLES = {"light": "light U-Net (paper 001)", "original": "original U-Net (Ronneberger 2015)"}


def build_network(kind: str, weights: str | None = None):
    """The network ``kind`` ("light" or "original"), from ``weights`` (safetensors) when given, in eval mode."""
    from stereo_depth_ros.models import mono_unet

    if weights:
        from stereo_depth_ros.models.weights import load_weights

        architecture = mono_unet.LIGHT_ARCHITECTURE if kind == "light" else mono_unet.ORIGINAL_ARCHITECTURE
        build = mono_unet.build_light_unet if kind == "light" else mono_unet.build_original_unet
        network, _ = load_weights(weights, architecture, build)
    else:
        network = mono_unet.LightUNet() if kind == "light" else mono_unet.OriginalUNet()
    return network.eval()


def onnx_session(network, height: int, width: int, threads: int, folder: Path):
    """An onnxruntime CPU session of ``network`` for a (1, 3, height, width) input (exported with the package's
    exporter)."""
    import onnxruntime

    from stereo_depth_ros.models.inference import export_onnx

    path = folder / f"{type(network).__name__}_{height}x{width}.onnx"
    export_onnx(network, [(1, 3, height, width)], ["image"], ["output"], path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), path


def peak_memory_child(onnx_path: str, height: int, width: int, threads: int, warmup: int) -> None:
    """Child process: print the peak resident memory increase (MiB) of building an onnxruntime session of the
    graph at ``onnx_path`` and running it ``warmup + 1`` times (imports done before the first reading)."""
    import numpy as np
    import onnxruntime

    image = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    before_kib = _high_water_kib()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    for _ in range(warmup + 1):
        session.run(None, {"image": image})
    peak_kib = _high_water_kib()
    print(json.dumps({"peak_memory_mib": (peak_kib - before_kib) / 1024.0, "peak_rss_mib": peak_kib / 1024.0}))


def _high_water_kib() -> int:
    """The process's peak resident memory in KiB (``VmHWM`` of /proc/self/status: reset at exec, unlike
    ``getrusage``'s ``ru_maxrss``, which a child started by a large parent inherits)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def measure_memory(onnx_path: Path, args: argparse.Namespace) -> dict:
    """Run :func:`peak_memory_child` in a fresh interpreter and return its JSON."""
    command = [sys.executable, __file__, "--memory-child", str(onnx_path), "--height", str(args.height), "--width",
               str(args.width), "--threads", str(args.threads), "--warmup", str(args.warmup)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    """Measure both networks in one run; returns the result document."""
    import torch

    torch.set_num_threads(args.threads)
    rows = {}
    times = {kind: [] for kind in NETWORKS}
    with tempfile.TemporaryDirectory() as folder:
        sessions, paths = {}, {}
        for kind in NETWORKS:
            network = build_network(kind, args.light_weights if kind == "light" else args.original_weights)
            rows[kind] = {"network": TITLES[kind],
                          "parameters": int(sum(p.numel() for p in network.parameters()))}
            sessions[kind], paths[kind] = onnx_session(network, args.height, args.width, args.threads, Path(folder))
        import numpy as np

        image = np.random.default_rng(0).random((1, 3, args.height, args.width), dtype=np.float32)
        for kind in NETWORKS:
            for _ in range(args.warmup):
                sessions[kind].run(None, {"image": image})
        for _ in range(args.repeats):
            for kind in NETWORKS:
                start = time.perf_counter()
                sessions[kind].run(None, {"image": image})
                times[kind].append(1000.0 * (time.perf_counter() - start))
        del sessions
        for kind in NETWORKS:
            rows[kind]["runtime_ms"] = statistics.median(times[kind])
            rows[kind]["best_ms"] = min(times[kind])
            rows[kind].update(measure_memory(paths[kind], args))
    speedup = rows["original"]["runtime_ms"] / rows["light"]["runtime_ms"]
    best_speedup = rows["original"]["best_ms"] / rows["light"]["best_ms"]
    return {"height": args.height, "width": args.width, "threads": args.threads, "repeats": args.repeats,
            "rows": [rows[kind] for kind in NETWORKS], "speedup": speedup, "best_speedup": best_speedup,
            "parameter_ratio": rows["original"]["parameters"] / rows["light"]["parameters"],
            "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                        "platform": platform.platform()}}


def markdown(document: dict) -> str:
    """The result as a markdown table plus the speed-up line."""
    lines = ["| network | parameters | runtime ms (median) | runtime ms (best) | peak memory MiB |",
             "|---|---|---|---|---|"]
    for row in document["rows"]:
        lines.append(f"| {row['network']} | {row['parameters']:,} | {row['runtime_ms']:.1f} | "
                     f"{row['best_ms']:.1f} | {row['peak_memory_mib']:.1f} |")
    lines.append("")
    lines.append(f"{document['height']}x{document['width']}, onnxruntime CPU, {document['threads']} thread(s), "
                 f"median of {document['repeats']} runs: the light U-Net is {document['speedup']:.2f}x faster "
                 f"({document['best_speedup']:.2f}x on the best runs) "
                 f"with {document['parameter_ratio']:.1f}x fewer parameters.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=256, help="input height in pixels, a multiple of 16")
    parser.add_argument("--width", type=int, default=320, help="input width in pixels, a multiple of 16")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per network (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per network first (default 3)")
    parser.add_argument("--light-weights", help="light U-Net safetensors (default: random initialisation)")
    parser.add_argument("--original-weights", help="original U-Net safetensors (default: random initialisation)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--memory-child", metavar="ONNX", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("height", "width"):
        value = getattr(args, name)
        if value <= 0 or value % 16:
            parser.error(f"--{name} must be a positive multiple of 16 (four 2x2 max-pools), got {value}")
    if args.threads <= 0 or args.repeats <= 0 or args.warmup < 0:
        parser.error("--threads and --repeats must be positive, --warmup at least 0")
    if args.memory_child:
        peak_memory_child(args.memory_child, args.height, args.width, args.threads, args.warmup)
        return 0
    document = run(args)
    print(json.dumps(document, indent=2) if args.json else markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
