"""``stereo-depth-ros eval-confidence``: sparsification curves of the stereo confidence measures on GT sets.

For every pair of each set, the network (and SGBM) run once; every confidence measure of
:data:`stereo_depth_ros.models.estimator.CONFIDENCE_METHODS` is scored against the true end-point error of the final
stage with :func:`stereo_depth_ros.evaluation.confidence.sparsification`; per-image curves are averaged per set.
Prints one markdown table per set (EPE after removing 0/10/30/50/70/90 % of the least confident pixels, AUC, oracle
AUC), optionally the time each measure adds at a given size, and writes a figure of the curves.

stdout carries only the result (markdown, or one JSON document with ``--json``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from stereo_depth_ros.commands.evaluation import _add_network_options, _print_json, _stdout_to_stderr

DEFAULT_SETS = ("bdis-synthetic", "middlebury2003-cones", "middlebury2003-teddy", "middlebury2014-motorcycle-q",
                "sceneflow-sample", "skimage-motorcycle")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-confidence``."""
    from stereo_depth_ros.models.estimator import CONFIDENCE_METHODS

    parser = sub.add_parser(
        "eval-confidence", help="sparsification curves (EPE vs. fraction removed) of the confidence measures",
        description="Score the network's confidence measures (and SGBM's valid/invalid confidence) on GT sets with "
                    "sparsification curves: EPE of the final stage on the pixels left after removing the least "
                    "confident 0..90 %%, the area under the curve (AUC, px; lower is better) and the oracle's "
                    "(removing the largest true errors first).")
    parser.add_argument("sets", nargs="*", default=list(DEFAULT_SETS), metavar="NAME|DIR",
                        help=f"registered GT set names or folders (default: {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--data-root", help="folder holding the registered sets (default ../shared/data)")
    parser.add_argument("--limit", type=int, help="first N pairs of each set only")
    parser.add_argument("--confidence", action="append", choices=CONFIDENCE_METHODS,
                        help="network confidence measure to score (repeatable; default all)")
    parser.add_argument("--stage", type=int, choices=range(4), default=3, metavar="{0,1,2,3}",
                        help="the network stage scored (default 3, the last; stereo_depth_node publishes "
                             "output_stage, 2 by default)")
    parser.add_argument("--no-sgbm", action="store_true", help="do not score SGBM")
    parser.add_argument("--figure", metavar="OUT.png", help="write the curves (one panel per set) to this image")
    parser.add_argument("--timing", metavar="HxW",
                        help="also time each measure at this size (e.g. 1024x1280) on scikit-image's Motorcycle "
                             "pair resized to it: median ms of --repeats calls after a warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measure with --timing (default 5)")
    _add_network_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.set_defaults(run=_run_eval_confidence)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise ValueError(f"--timing must be HEIGHTxWIDTH in pixels, e.g. 1024x1280, got {text!r}") from error
    if height <= 0 or width <= 0:
        raise ValueError(f"--timing needs a positive size, got {text!r}")
    return height, width


def score_set(dataset, network, methods, sgbm=None, progress=None) -> tuple[dict, dict, dict]:
    """Mean sparsification curves of one GT set.

    Args:
        dataset: a :class:`~stereo_depth_ros.evaluation.datasets.GroundTruthDataset`.
        network: the coarse-to-fine estimator (``confidence_maps``).
        methods: its confidence measures to score.
        sgbm: an SGBM estimator (scored on the pixels where it has a value, confidence = valid), or None.
        progress: callable(str) for progress lines, or None.

    Returns:
        ``({row name: Sparsification}, {method: (kept, epe)}, at_sgbm_density)``; rows ``"coarse-to-fine
        <method>"`` and ``"sgbm valid"``; the second dict holds, per network measure, the mean over images of
        :func:`~stereo_depth_ros.evaluation.confidence.threshold_effect` at
        :data:`~stereo_depth_ros.evaluation.confidence.TABLE_THRESHOLDS`; the third (empty without SGBM) the
        comparison at SGBM's density, means over the images SGBM scored: ``{"sgbm_density", "sgbm_epe",
        "network_epe": {method: px}, "network_threshold": {method: confidence}, "images"}`` (the network keeps
        its most confident pixels, as many as SGBM has values among them;
        :func:`~stereo_depth_ros.evaluation.confidence.epe_at_density`).
    """
    from stereo_depth_ros.evaluation.confidence import (epe_at_density, mean_sparsification, sparsification,
                                                        threshold_effect)
    from stereo_depth_ros.evaluation.metrics import scored_mask

    curves: dict[str, list] = {}
    effects: dict[str, list] = {}
    at_density: list[dict] = []
    for index, sample in enumerate(dataset):
        disparities, maps = network.confidence_maps(sample.left_bgr, sample.right_bgr, methods=tuple(methods))
        error = np.abs(disparities[-1] - sample.gt_disparity)
        scored = scored_mask(disparities[-1], sample.gt_disparity, sample.valid)  # as eval-dataset: value > 0
        for method, confidence in maps.items():
            curves.setdefault(f"coarse-to-fine {method}", []).append(sparsification(error, confidence, scored))
            effects.setdefault(method, []).append(threshold_effect(error, confidence, mask=scored))
        if sgbm is not None:
            try:
                sgbm_disparities, sgbm_confidence = sgbm.estimate_with_confidence(sample.left_bgr, sample.right_bgr)
            except ValueError as error_message:  # a pair narrower than SGBM's search range
                if progress:
                    progress(f"{sample.name}: sgbm skipped: {error_message}")
            else:
                sgbm_error = np.abs(sgbm_disparities[-1] - sample.gt_disparity)
                sgbm_scored = scored_mask(sgbm_disparities[-1], sample.gt_disparity, sample.valid)
                if np.any(sgbm_scored) and np.any(scored):
                    curves.setdefault("sgbm valid", []).append(
                        sparsification(sgbm_error, sgbm_confidence, sgbm_scored))
                    density = min(1.0, float(sgbm_scored.sum()) / float(scored.sum()))
                    matched = {method: epe_at_density(error, confidence, density, scored)
                               for method, confidence in maps.items()}
                    at_density.append({"sgbm_density": density, "sgbm_epe": float(sgbm_error[sgbm_scored].mean()),
                                       "network_epe": {m: e for m, (e, _) in matched.items()},
                                       "network_threshold": {m: t for m, (_, t) in matched.items()}})
        if progress:
            progress(f"{dataset.name}: {index + 1}/{len(dataset)} {sample.name}")
    mean_effects = {method: (np.mean([k for k, _ in rows], axis=0), np.nanmean([e for _, e in rows], axis=0))
                    for method, rows in effects.items()}
    return ({name: mean_sparsification(c) for name, c in curves.items()}, mean_effects,
            _mean_at_density(at_density))


def _mean_at_density(rows: list[dict]) -> dict:
    """Means over images of :func:`score_set`'s per-image comparisons at SGBM's density ({} without any)."""
    if not rows:
        return {}
    methods = rows[0]["network_epe"]
    return {"sgbm_density": float(np.mean([r["sgbm_density"] for r in rows])),
            "sgbm_epe": float(np.mean([r["sgbm_epe"] for r in rows])),
            "network_epe": {m: float(np.mean([r["network_epe"][m] for r in rows])) for m in methods},
            "network_threshold": {m: float(np.mean([r["network_threshold"][m] for r in rows])) for m in methods},
            "images": len(rows)}


def time_measures(network, methods, height: int, width: int, repeats: int) -> dict[str, float]:
    """Wall time (ms) of ``estimate`` and what each confidence measure adds, at ``height`` x ``width``
    (scikit-image's Motorcycle pair resized).

    Every round times ``estimate`` and then ``estimate_with_confidence`` with each measure, one after the other
    (after one untimed round: ONNX export or cache load); the added time of a measure is the median over rounds of
    its time minus the same round's ``estimate`` time, which is robust to a machine whose speed drifts (shared
    cores).

    Returns:
        ``{"estimate": median ms, "<method>": median added ms, ...}``.
    """
    import cv2

    from stereo_depth_ros.evaluation.datasets import load_skimage_motorcycle

    left, right, _ = load_skimage_motorcycle()
    left, right = (cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC) for image in (left, right))
    calls = {"estimate": lambda: network.estimate(left, right)}
    for method in methods:
        calls[method] = lambda method=method: network.estimate_with_confidence(left, right, method=method)
    rounds: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(max(1, repeats) + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_index:  # the first round is the warm-up
                rounds[name].append((time.perf_counter() - start) * 1000.0)
    base = np.array(rounds["estimate"])
    results = {"estimate": float(np.median(base))}
    results.update({name: float(np.median(np.array(times) - base)) for name, times in rounds.items()
                    if name != "estimate"})
    return results


def markdown_tables(results: dict[str, dict], timing: dict[str, float] | None = None,
                    timing_size: tuple[int, int] | None = None, effects: dict[str, dict] | None = None,
                    at_density: dict[str, dict] | None = None) -> str:
    """Markdown: one sparsification table per set, the threshold tables of the default measure, the comparison
    with SGBM at its density, the timing table (each when given)."""
    from stereo_depth_ros.evaluation.confidence import TABLE_FRACTIONS, TABLE_THRESHOLDS
    from stereo_depth_ros.models.estimator import DEFAULT_CONFIDENCE

    lines = []
    header = ("| confidence | " + " | ".join(f"EPE {round(f * 100)} % removed" for f in TABLE_FRACTIONS)
              + " | AUC | oracle AUC | pixels |")
    for set_name, rows in results.items():
        lines += [f"**{set_name}** (EPE in px of the final stage on the pixels left; AUC = mean EPE over 0..90 % "
                  f"removed)", "", header, "|" + "---|" * (len(TABLE_FRACTIONS) + 4)]
        for name, curve in sorted(rows.items(), key=lambda item: item[1].auc):
            values = " | ".join(f"{curve.epe_at(f):.3f}" for f in TABLE_FRACTIONS)
            lines.append(f"| {name} | {values} | {curve.auc:.3f} | {curve.oracle_auc:.3f} | {curve.pixels} |")
        lines.append("")
    if len(results) > 1:
        lines += summary_table(results)
    if effects and any(DEFAULT_CONFIDENCE in e for e in effects.values()):
        lines += [f"**confidence_threshold with the default measure ({DEFAULT_CONFIDENCE})**: share of the scored "
                  f"pixels kept (confidence >= t) and their EPE (px), mean over the set's images", "",
                  "| set | " + " | ".join(f"t = {t:g}: kept, EPE" for t in TABLE_THRESHOLDS) + " |",
                  "|---|" + "---|" * len(TABLE_THRESHOLDS)]
        for set_name, set_effects in effects.items():
            if DEFAULT_CONFIDENCE in set_effects:
                kept, epe = set_effects[DEFAULT_CONFIDENCE]
                lines.append(f"| {set_name} | " + " | ".join(f"{100 * k:.0f} %, {e:.3f}" for k, e in zip(kept, epe))
                             + " |")
        lines.append("")
    rows = {s: r for s, r in (at_density or {}).items() if r}
    if rows:
        methods = list(next(iter(rows.values()))["network_epe"])
        lines += ["**At SGBM's density**: on each image the network keeps its most confident pixels, as many as SGBM "
                  "has values among the scored pixels; EPE (px) of those, mean over images (threshold: the lowest "
                  "confidence kept, mean over images)", "",
                  "| set | SGBM density % | SGBM EPE | " + " | ".join(f"{m}: EPE, threshold" for m in methods) + " |",
                  "|---|---|---|" + "---|" * len(methods)]
        for set_name, row in rows.items():
            cells = [f"{row['network_epe'][m]:.3f}, {row['network_threshold'][m]:.2f}" for m in methods]
            lines.append(f"| {set_name} | {100 * row['sgbm_density']:.1f} | {row['sgbm_epe']:.3f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if timing:
        lines += [f"**time at {timing_size[0]}x{timing_size[1]}** (estimate: median ms per call; a measure: median "
                  f"over rounds of its estimate_with_confidence time minus the same round's estimate time)", "",
                  "| call | ms |", "|---|---|", f"| estimate | {timing['estimate']:.1f} |"]
        lines += [f"| added by {name} | {ms:+.1f} |" for name, ms in timing.items() if name != "estimate"]
        lines.append("")
    return "\n".join(lines)


def summary_table(results: dict[str, dict]) -> list[str]:
    """Markdown lines: the AUC of every row on every set, their mean, the mean ratio to the oracle AUC (1 = as good
    as the oracle; it weighs every set alike whatever its error scale) and the mean rank of each network measure
    among the network measures (1 = the lowest AUC of its set). Rows ordered by the mean ratio."""
    sets = list(results)
    names = sorted({name for rows in results.values() for name in rows})
    ranks: dict[str, list[int]] = {}
    for set_name in sets:
        network_rows = sorted((n for n in results[set_name] if n.startswith("coarse-to-fine")),
                              key=lambda n: results[set_name][n].auc)
        for rank, name in enumerate(network_rows, 1):
            ranks.setdefault(name, []).append(rank)

    def ratio(name: str) -> float:
        return float(np.mean([results[s][name].auc / results[s][name].oracle_auc for s in sets if name in results[s]]))

    lines = ["**all sets**: AUC (px) per set, mean AUC, mean AUC / oracle AUC, mean rank among the network's measures",
             "", "| confidence | " + " | ".join(sets) + " | mean AUC | mean AUC / oracle AUC | mean rank |",
             "|---|" + "---|" * (len(sets) + 3)]
    for name in sorted(names, key=ratio):
        aucs = [results[s][name].auc if name in results[s] else float("nan") for s in sets]
        rank = f"{np.mean(ranks[name]):.2f}" if name in ranks else "-"
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in aucs)
                     + f" | {np.nanmean(aucs):.3f} | {ratio(name):.2f} | {rank} |")
    return lines + [""]


def save_figure(path: str, results: dict[str, dict]) -> None:
    """One panel per set: EPE (px) against the fraction removed, every measure and the oracle (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(results)
    columns = min(3, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for axis, (set_name, curves) in zip(axes.flat, results.items()):
        oracle = None
        for name, curve in sorted(curves.items()):
            axis.plot(curve.fractions * 100, curve.epe, label=f"{name} ({curve.auc:.2f})")
            if name.startswith("coarse-to-fine") and oracle is None:
                oracle = curve
        if oracle is not None:
            axis.plot(oracle.fractions * 100, oracle.oracle_epe, "k--",
                      label=f"oracle, network ({oracle.oracle_auc:.2f})")
        axis.set_title(set_name, fontsize=9)
        axis.set_xlabel("pixels removed, least confident first (%)", fontsize=8)
        axis.set_ylabel("EPE of the rest (px)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _run_eval_confidence(args: argparse.Namespace) -> int:
    from stereo_depth_ros.evaluation.datasets import open_dataset
    from stereo_depth_ros.models.estimator import CONFIDENCE_METHODS
    from stereo_depth_ros.models.registry import create_estimator

    methods = tuple(args.confidence or CONFIDENCE_METHODS)
    timing_size = _size(args.timing) if args.timing else None
    with _stdout_to_stderr():
        network = create_estimator("coarse-to-fine", weights=args.weights, device=args.device, backend=args.backend,
                                   max_disparity=args.max_disparity, input_scale=args.input_scale,
                                   max_stage=args.stage)
        sgbm = None if args.no_sgbm else create_estimator("sgbm", max_disparity=args.sgbm_disparities)
        results, effects, at_density = {}, {}, {}
        for name in args.sets:
            dataset = open_dataset(name, args.data_root).limit(args.limit)
            results[name], effects[name], at_density[name] = score_set(
                dataset, network, methods, sgbm, progress=lambda line: print(line, file=sys.stderr, flush=True))
        timing = time_measures(network, methods, *timing_size, args.repeats) if timing_size else None
        if args.figure:
            save_figure(args.figure, results)
            print(f"wrote {args.figure}", file=sys.stderr)
    if args.json:
        document = {"sets": {s: {name: {"fractions": c.fractions.tolist(), "epe": c.epe.tolist(),
                                        "oracle_epe": c.oracle_epe.tolist(), "auc": c.auc,
                                        "oracle_auc": c.oracle_auc, "pixels": c.pixels}
                                 for name, c in rows.items()} for s, rows in results.items()}}
        document["thresholds"] = {s: {m: {"kept": k.tolist(), "epe": e.tolist()} for m, (k, e) in rows.items()}
                                  for s, rows in effects.items()}
        document["at_sgbm_density"] = {s: rows for s, rows in at_density.items() if rows}
        if timing:
            document["timing_ms"] = {"size": list(timing_size), **timing}
        _print_json(document)
    else:
        print(markdown_tables(results, timing, timing_size, effects, at_density))
    return 0
