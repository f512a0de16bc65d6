"""How the packaged SPP-LinkNet weights were trained (docs/segmentation.md): on a GPU machine that cannot read
../shared/data, from a copy of the training and validation sets downscaled to 320 px height.

    python benchmarks/segmentation_device_training.py prepare            # here: writes runs/segdata/ (~46 MB, git-ignored)
    python benchmarks/segmentation_device_training.py train OUT.safetensors --steps 6000 --device cuda --workers 12 \\
        --batch-size 16                                                   # there, from the repository root

``train`` is ``stereo-depth-ros train-seg`` (:func:`stereo_depth_ros.training.segmentation_trainer
.train_segmentation`) with the options of the packaged weights: Endoscapes train + EndoVis 2015 rigid + EndoVis 2015
robotic without test4 (drawn twice as often) + EndoVis 2018 without seq_10 and seq_13 (drawn four times as often);
validation on Endoscapes val + those held-out sequences; copy-paste onto BDIS in-vivo set 6 tissue frames (the
held-out stereo test frames excluded); base width 24; crops 256x320 at a working height of 256 px.
The copy is only a transport: training rescales every image to 256 px x [0.8, 1.25] anyway.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
COPY = REPO / "runs" / "segdata"  # git-ignored (/runs/)
HEIGHT = 320
SETS = {"endoscapes_seg50": ("REAL", "GROUND_TH"), "endovis2015_rigid": ("images", "masks", "masks_parts"),
        "endovis2015_robotic": ("images", "masks", "masks_parts"),
        "endovis2018_types": ("images", "masks", "masks_type")}
BACKGROUNDS = "bdis_invivo/6/images_rectified/left"


def shrink(source: Path, target: Path, labels: bool) -> None:
    """Copy an image or a label map at most ``HEIGHT`` px high (area average; labels nearest neighbour)."""
    array = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"cannot read {source}")
    factor = HEIGHT / array.shape[0]
    if factor < 1:
        array = cv2.resize(array, (round(array.shape[1] * factor), HEIGHT),
                           interpolation=cv2.INTER_NEAREST if labels else cv2.INTER_AREA)
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), array, [cv2.IMWRITE_JPEG_QUALITY, 95] if target.suffix == ".jpg" else [])


def prepare() -> None:
    for name, folders in SETS.items():
        for folder in folders:
            for path in sorted((SHARED / "segmentation" / name / folder).iterdir()):
                shrink(path, COPY / name / folder / path.name, labels=folder not in ("REAL", "images"))
    shutil.copy(SHARED / "segmentation" / "endoscapes_seg50" / "matches.json", COPY / "endoscapes_seg50")
    for path in sorted((SHARED / "endoscopic_stereo" / BACKGROUNDS).glob("*.png")):
        shrink(path, COPY / BACKGROUNDS / path.name, labels=False)


def train(out: str, steps: int, device: str, workers: int, batch_size: int) -> None:
    from stereo_depth_ros.training.segmentation_trainer import TrainSegmentationOptions, train_segmentation

    data = str(COPY) + "/"
    options = TrainSegmentationOptions(
        data=[data + "endoscapes_seg50", data + "endovis2015_rigid"] + [data + "endovis2015_robotic"] * 2
        + [data + "endovis2018_types"] * 4,
        validation=[data + "endoscapes_seg50"],
        validation_groups=["endovis2015_robotic/test4", "endovis2018_types/seq_10", "endovis2018_types/seq_13"],
        paste_backgrounds=[data + BACKGROUNDS], paste_exclude=str(REPO / "config/splits/bdis_invivo_test.txt"),
        out=out, steps=steps, batch_size=batch_size, crop=(256, 320), working_height=256, base_width=24,
        checkpoint_every=max(steps // 10, 1), workers=workers, device=device, progress=False)
    card = train_segmentation(options)
    print(json.dumps({"selected_step": card["selected_step"], "selected_validation": card["selected_validation"],
                      "wall_time_s": card["wall_time_s"]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare")
    run = sub.add_parser("train")
    run.add_argument("out")
    run.add_argument("--steps", type=int, default=6000)
    run.add_argument("--device", default="cuda")
    run.add_argument("--workers", type=int, default=12)
    run.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare()
    else:
        train(args.out, args.steps, args.device, args.workers, args.batch_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
