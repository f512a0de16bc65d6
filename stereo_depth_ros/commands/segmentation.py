"""``stereo-depth-ros eval-seg``, ``eval-seg-dataset`` and ``fit-colour-threshold`` (instrument segmentation).

They build the SPP-LinkNet-34 estimators through the model registry and score them, with the ``colour-threshold``
baseline (:mod:`stereo_depth_ros.evaluation.colour_threshold`) beside them, by per-image IoU and Dice
(:mod:`stereo_depth_ros.evaluation.segmentation_metrics`). stdout carries only the result (a markdown table, or with
``--json`` exactly one JSON document); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from stereo_depth_ros.data.segmentation_sets import (IGNORE, PART_MANIPULATOR, SegmentationDataset, binary_from_255,
                                                     endovis2017_crop, map_values, ENDOVIS2017_PARTS)
from stereo_depth_ros.evaluation.colour_threshold import (ColourThresholdSegmenter, fit_colour_threshold,
                                                          parameters_dict)
from stereo_depth_ros.evaluation.datasets import default_data_root
from stereo_depth_ros.evaluation.segmentation_metrics import iou_dice, multiclass_iou_dice, summarise
from stereo_depth_ros.images import read_image, read_image_bgr

MASK_CODINGS = ("binary255", "endovis-parts", "endoscapes")
MODEL_TASKS = {"spp-linknet": "binary", "spp-linknet-parts": "parts", "spp-linknet-type": "type"}
BASELINE = "colour-threshold"
# Registered sets: name -> (folder under <data root>/segmentation, Endoscapes split, groups kept or None).
SETS = {
    "endoscapes-test": ("endoscapes_seg50", "test", None),
    "endoscapes-val": ("endoscapes_seg50", "val", None),
    "endovis2017-parts": ("endovis2017_parts", None, None),
    "endovis2017-binary": ("endovis2017_binary", None, None),
    "dvrk-phantom": ("dvrk_phantom", None, None),
    "endovis2015-robotic-val": ("endovis2015_robotic", None, ["endovis2015_robotic/test4"]),
    "endovis2018-val": ("endovis2018_types", None, ["endovis2018_types/seq_10", "endovis2018_types/seq_13"]),
}
VALIDATION_SETS = ("endoscapes-val", "endovis2015-robotic-val", "endovis2018-val")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval-seg``, ``eval-seg-dataset`` and ``fit-colour-threshold``."""
    frame = sub.add_parser("eval-seg", help="instrument segmentation IoU and Dice on one frame",
                           description="Segment one image with SPP-LinkNet-34 (and the colour-threshold baseline) "
                                       "and score it against a mask.")
    frame.add_argument("--image", required=True, help="the image (BGR colour file)")
    frame.add_argument("--mask", required=True, help="the ground-truth mask")
    frame.add_argument("--mask-coding", choices=MASK_CODINGS, default="binary255",
                       help="binary255: 0/255; endovis-parts: 0/10/20/30 (EndoVis 2017, 1920x1080 raw frames are "
                            "cropped to the 1280x1024 camera image); endoscapes: tool = 6, 255 ignored "
                            "(default binary255)")
    _add_model_options(frame)
    frame.add_argument("--figure", metavar="OUT.png",
                       help="write image | GT | ours | baseline as one image (.png, or .jpg for a smaller file)")
    frame.add_argument("--json", action="store_true", help='print one JSON document {"rows": [...]}')
    frame.set_defaults(run=_run_eval_seg)

    dataset = sub.add_parser("eval-seg-dataset", help="mean +- std IoU and Dice over segmentation sets",
                             description=f"Evaluate on registered sets ({', '.join(SETS)}) or on set folders of any "
                                         f"layout of stereo_depth_ros/data/segmentation_sets.py.")
    dataset.add_argument("sets", nargs="+", metavar="NAME|DIR", help="registered set names or folders")
    dataset.add_argument("--data-root", help="folder holding segmentation/ (default ../shared/data)")
    dataset.add_argument("--limit", type=int, help="first N images of each set only")
    _add_model_options(dataset)
    dataset.add_argument("--figure", metavar="OUT.png",
                         help="write image | GT | ours | baseline rows (the first image of each set)")
    dataset.add_argument("--markdown-out", metavar="FILE", help="also write the markdown table to FILE")
    dataset.add_argument("--json", action="store_true", help='print one JSON document {"rows": [...]}')
    dataset.set_defaults(run=_run_eval_seg_dataset)

    fit = sub.add_parser("fit-colour-threshold", help="choose the colour-threshold parameters on the validation split",
                         description=f"Grid search of the colour-threshold baseline on the validation sets "
                                     f"({', '.join(VALIDATION_SETS)}) only; prints the best parameters as JSON.")
    fit.add_argument("--data-root", help="folder holding segmentation/ (default ../shared/data)")
    fit.set_defaults(run=_run_fit)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", default=["spp-linknet"], choices=tuple(MODEL_TASKS),
                        help="models to run (default spp-linknet); colour-threshold always runs")
    parser.add_argument("--weights", help="SPP-LinkNet weights (default: the packaged ones)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--working-height", type=int, default=256, help="network input height (default 256)")


def build_segmenters(args: argparse.Namespace) -> list:
    """The estimators of ``--model`` (registry) plus the colour-threshold baseline."""
    from stereo_depth_ros.models.registry import create_estimator

    options = {"backend": args.backend, "working_height": args.working_height}
    if args.weights:
        options["weights"] = args.weights
    return [create_estimator(name, **options) for name in args.model] + [ColourThresholdSegmenter()]


def read_truth(mask_path: str | Path, coding: str, image_shape: tuple[int, int]) -> dict:
    """Ground truth of one mask file: ``{"binary": (H, W) uint8 0/1/255, "parts": ... or None}``.

    Raises:
        ValueError: for an unknown coding, values outside it, or a size other than the image's.
    """
    if coding not in MASK_CODINGS:
        raise ValueError(f"mask coding must be one of {MASK_CODINGS}, got {coding!r}")
    mask = read_image(mask_path, cv2.IMREAD_GRAYSCALE, "mask")
    parts = None
    if coding == "binary255":
        binary = binary_from_255(mask)
    elif coding == "endoscapes":
        binary = (mask == 6).astype(np.uint8)
        binary[mask == IGNORE] = IGNORE
    else:
        parts = map_values(endovis2017_crop(mask), ENDOVIS2017_PARTS, f"mask {mask_path}")
        binary = (parts > 0).astype(np.uint8)
    if binary.shape != tuple(image_shape):
        raise ValueError(f"mask {mask_path} is {binary.shape[1]}x{binary.shape[0]}, the image "
                         f"{image_shape[1]}x{image_shape[0]}")
    return {"binary": binary, "parts": parts, "type": None}


def score(segmenter, prediction: np.ndarray, truth: dict) -> list[tuple[str, str, float, float]]:
    """``[(task, coding, iou, dice), ...]`` of one prediction, the task's primary score first.

    Binary models: ``("binary", "binary", ...)``. The parts model, when parts truth exists: on EndoVis 2017's
    3-part truth the 3-class score (shaft, wrist, claspers; ``"endovis2017-parts"``, the paper's parts metric) and
    the 2-part score comparable with the training coding (wrist and claspers merged into "manipulator":
    ``"shaft/manipulator"``); on EndoVis 2015's 2-part truth (``truth["parts_coding"] == "shaft/manipulator"``, or a
    manipulator label present) the 2-part score only. The type model, when type
    truth exists: the 7-type score (``"endovis2018-types"``)."""
    task = getattr(segmenter, "task", "binary")
    rows = []
    if task == "binary":
        labels = truth["binary"]
        rows.append(("binary", "binary", *iou_dice(prediction.astype(bool), labels == 1, labels != IGNORE)))
    elif task == "parts" and truth.get("parts") is not None:
        labels = truth["parts"]
        two_parts = truth.get("parts_coding") == "shaft/manipulator" or np.any(labels == PART_MANIPULATOR)
        if not two_parts:
            valid = labels != IGNORE
            rows.append(("parts", "endovis2017-parts", *multiclass_iou_dice(prediction, labels, 4, valid)))
        merged = np.where(prediction >= 2, 2, prediction)
        truth_merged = np.where((labels == PART_MANIPULATOR) | (labels == 2) | (labels == 3), 2, labels)
        rows.append(("parts", "shaft/manipulator", *multiclass_iou_dice(merged, truth_merged, 3, labels != IGNORE)))
    elif task == "type" and truth.get("type") is not None:
        labels = truth["type"]
        rows.append(("type", "endovis2018-types", *multiclass_iou_dice(prediction, labels, 8, labels != IGNORE)))
    return rows


def run_segmenter(segmenter, image: np.ndarray) -> tuple[np.ndarray, float]:
    """``(mask, runtime_ms)``: one prediction after :meth:`prepare` (so the time excludes ONNX export)."""
    segmenter.prepare(*image.shape[:2])
    started = time.perf_counter()
    mask = segmenter.predict(image)["mask"]
    return mask, (time.perf_counter() - started) * 1000.0


def overlay(image: np.ndarray, mask: np.ndarray | None, title: str, width: int = 320) -> np.ndarray:
    """A ``width``-wide panel: the image with the mask's classes tinted (1 green, 2 blue, 3 red, ...) and a title."""
    colours = np.array([[0, 0, 0], [0, 220, 0], [255, 120, 0], [0, 0, 255], [0, 220, 220], [220, 0, 220],
                        [255, 255, 0], [128, 128, 255]], np.uint8)
    panel = image.copy()
    if mask is not None:
        ids = np.where(mask == IGNORE, 0, mask).astype(np.int64) % len(colours)
        tinted = colours[ids]
        hit = ids > 0
        panel[hit] = (0.45 * panel[hit] + 0.55 * tinted[hit]).astype(np.uint8)
        if np.any(mask == IGNORE):
            panel[mask == IGNORE] = (0.5 * panel[mask == IGNORE]).astype(np.uint8)
    height = int(round(image.shape[0] * width / image.shape[1]))
    panel = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)
    cv2.putText(panel, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def figure_row(image: np.ndarray, truth: np.ndarray, ours: np.ndarray, baseline: np.ndarray, label: str
               ) -> np.ndarray:
    """image | GT | ours | baseline panels side by side (BGR uint8)."""
    return np.hstack([overlay(image, None, label), overlay(image, truth, "ground truth"),
                      overlay(image, ours, "SPP-LinkNet (ours)"), overlay(image, baseline, "colour-threshold")])


def write_figure(rows: list[np.ndarray], path: str | Path) -> None:
    """Stack figure rows (padded to one width) into one PNG.

    Raises:
        OSError: if the file cannot be written.
    """
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(rows)):
        raise OSError(f"cannot write the figure {path}")


def _run_eval_seg(args: argparse.Namespace) -> int:
    image = read_image_bgr(args.image)
    if args.mask_coding == "endovis-parts":
        image = endovis2017_crop(image)
    truth = read_truth(args.mask, args.mask_coding, image.shape[:2])
    rows, masks = [], {}
    for segmenter in build_segmenters(args):
        mask, runtime = run_segmenter(segmenter, image)
        masks[segmenter.name] = mask
        seen = set()
        for task, _, iou, dice in score(segmenter, mask, truth):
            if task not in seen:  # one row per model and task: its primary score
                seen.add(task)
                rows.append({"model": segmenter.name, "task": task, "iou": float(iou), "dice": float(dice),
                             "runtime_ms": float(runtime)})
    if args.figure:
        ours = next((masks[name] for name in args.model if name in masks), None)
        write_figure([figure_row(image, truth["binary"], ours, masks[BASELINE], Path(args.image).name)],
                     args.figure)
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        print("| model | task | IoU | Dice | runtime (ms) |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['model']} | {row['task']} | {row['iou']:.4f} | {row['dice']:.4f} | "
                  f"{row['runtime_ms']:.1f} |")
    return 0


def resolve_set(name: str, data_root: str | None) -> tuple[str, SegmentationDataset]:
    """A registered set name or a folder -> ``(label, dataset at native size)``.

    Raises:
        FileNotFoundError: for an unknown name that is not a folder, or a missing folder.
    """
    if name in SETS:
        folder, split, groups = SETS[name]
        root = Path(data_root) if data_root else default_data_root()
        return name, SegmentationDataset(root / "segmentation" / folder, split=split, groups_include=groups)
    if Path(name).is_dir():
        return Path(name).name, SegmentationDataset(name)
    raise FileNotFoundError(f"{name!r} is neither a registered set ({', '.join(SETS)}) nor a folder")


def evaluate_sets(segmenters: list, sets: list[str], data_root: str | None, limit: int | None = None,
                  figure_rows: list | None = None) -> list[dict]:
    """Per-set mean and std of IoU and Dice for every segmenter and task (rows as in ``--json``)."""
    rows = []
    for name in sets:
        label, dataset = resolve_set(name, data_root)
        count = len(dataset.samples) if limit is None else min(limit, len(dataset.samples))
        scores: dict[tuple[str, str, str], list] = {}
        times: dict[str, list] = {}
        for index in range(count):
            sample = dataset.load_sample(index)
            image = sample["image"]
            truth = {field: (None if np.all(sample[field] == IGNORE) else sample[field])
                     for field in ("binary", "parts", "type")}
            # EndoVis 2015 masks have the 2-part coding (shaft / manipulator) even in frames without a manipulator
            truth["parts_coding"] = "shaft/manipulator" if dataset.layout_of(index) == "endovis2015" else "3-part"
            masks = {}
            for segmenter in segmenters:
                mask, runtime = run_segmenter(segmenter, image)
                masks[segmenter.name] = mask
                times.setdefault(segmenter.name, []).append(runtime)
                for task, coding, iou, dice in score(segmenter, mask, truth):
                    scores.setdefault((segmenter.name, task, coding), []).append((iou, dice))
            if figure_rows is not None and index == 0:
                ours = next((mask for key, mask in masks.items() if key != BASELINE), None)
                figure_rows.append(figure_row(image, sample["binary"], ours, masks[BASELINE], label))
            print(f"{label}: {index + 1}/{count}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        for (model, task, coding), values in scores.items():
            summary = summarise(values)
            rows.append({"set": label, "model": model, "task": task, "coding": coding, "iou": summary.iou_mean,
                         "iou_std": summary.iou_std, "dice": summary.dice_mean, "dice_std": summary.dice_std,
                         "images": summary.images, "runtime_ms": float(np.median(times[model]))})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table, IoU and Dice in percent, mean +- std."""
    lines = ["| set | images | model | task (coding) | IoU (%) | Dice (%) | median ms/frame |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        task = row["task"] if row["coding"] == row["task"] else f"{row['task']} ({row['coding']})"
        lines.append(f"| {row['set']} | {row['images']} | {row['model']} | {task} | "
                     f"{100 * row['iou']:.2f} +- {100 * row['iou_std']:.2f} | "
                     f"{100 * row['dice']:.2f} +- {100 * row['dice_std']:.2f} | {row['runtime_ms']:.1f} |")
    return "\n".join(lines)


def _run_eval_seg_dataset(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    figure_rows = [] if args.figure else None
    rows = evaluate_sets(build_segmenters(args), args.sets, args.data_root, args.limit, figure_rows)
    if args.figure:
        write_figure(figure_rows, args.figure)
    table = markdown_table(rows)
    if args.markdown_out:
        Path(args.markdown_out).write_text(table + "\n")
    print(json.dumps({"rows": rows}) if args.json else table)
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    samples = []
    for name in VALIDATION_SETS:
        _, dataset = resolve_set(name, args.data_root)
        for index in range(len(dataset.samples)):
            sample = dataset.load_sample(index)
            image, labels = sample["image"], sample["binary"]
            factor = 320.0 / image.shape[1]  # the search runs at 320 px width (kernel sizes scale with it)
            size = (320, max(int(round(image.shape[0] * factor)), 1))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
            samples.append((image, labels == 1, labels != IGNORE))
    parameters, mean_iou = fit_colour_threshold(samples)
    print(json.dumps({"parameters": parameters_dict(parameters), "validation_mean_iou": mean_iou,
                      "validation_images": len(samples), "validation_sets": list(VALIDATION_SETS)}, indent=2))
    return 0
