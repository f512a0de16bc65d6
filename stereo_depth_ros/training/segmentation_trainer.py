"""Supervised training of SPP-LinkNet-34 (binary, parts and type heads at once) on the
:class:`~stereo_depth_ros.training.trainer.Trainer`.

One network, three heads, one step: every batch mixes sets, and each head's loss counts only the pixels its labels
cover (255 = no label, see :mod:`stereo_depth_ros.data.segmentation_sets`):

``total = binary_loss + parts_weight * parts_loss + type_weight * type_loss``, where each term is cross-entropy minus
``jaccard_weight`` times the log soft Jaccard (:func:`stereo_depth_ros.losses.binary_segmentation_loss`,
:func:`stereo_depth_ros.losses.multiclass_segmentation_loss`; Shvets et al. 2018, eq. 2). EndoVis 2015's
"manipulator" label (jaw and wrist) is a set label {wrist, claspers} of the parts head.

Validation (``<stem>.validation.csv``): mean per-image binary IoU (an image with empty truth and empty prediction
scores 1) over the validation images at the training scale; the run keeps the weights of every checkpoint
(``<stem>.step<N>.safetensors``) and finally copies the best-validated ones to ``out``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stereo_depth_ros.data.folder_dataset import read_pair_list
from stereo_depth_ros.data.segmentation_sets import IGNORE, PART_MANIPULATOR, SegmentationDataset
from stereo_depth_ros.device import resolve_device
from stereo_depth_ros.evaluation.segmentation_metrics import iou_dice
from stereo_depth_ros.losses import binary_segmentation_loss, multiclass_segmentation_loss
from stereo_depth_ros.models.segmentation import ARCHITECTURE, INPUT_MULTIPLE, SPPLinkNet, save_weights
from stereo_depth_ros.resources import check_training_folders
from stereo_depth_ros.training.model_card import run_facts, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, kept_weights_files, start_run

MODEL_NAME = "network"


@dataclass
class TrainSegmentationOptions:
    """Options of ``stereo-depth-ros train-seg``.

    Attributes:
        data: set folders for training (any layout of :mod:`stereo_depth_ros.data.segmentation_sets`; a folder
            given twice is drawn twice as often). Endoscapes contributes its ``train`` split only.
        validation: set folders for validation (Endoscapes contributes its ``val`` split).
        validation_groups: groups (``<folder>/<sequence>``) held out of ``data`` and validated on instead.
        out: output weights ``.safetensors``; logs, checkpoint, kept weights and model card go beside it.
        steps, batch_size, crop (height, width), working_height (pixels the image height is scaled to),
        lr (Adam, cosine decay to 1 %), seed, checkpoint_every, stop_at, resume: as for the Trainer.
        base_width: encoder width of the first stage (ResNet-18: 64). tasks: heads to build.
        jaccard_weight, parts_weight, type_weight: loss weights (module docstring).
        paste_backgrounds: tissue-only folders for copy-paste augmentation; paste_probability its probability.
        paste_exclude: pair-list file of background frames never used.
        threads: CPU threads (0 = PyTorch's default). workers: data-loading processes (0 = in the training
        process). device: "auto", "cpu", "cuda".
    """

    data: list[str]
    out: str
    validation: list[str] = field(default_factory=list)
    validation_groups: list[str] = field(default_factory=list)
    steps: int = 2000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 320)
    working_height: int = 256
    lr: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 100
    stop_at: int | None = None
    resume: str | None = None
    base_width: int = 16
    tasks: tuple[str, ...] = ("binary", "parts", "type")
    jaccard_weight: float = 1.0
    parts_weight: float = 0.5
    type_weight: float = 0.5
    paste_backgrounds: list[str] = field(default_factory=list)
    paste_probability: float = 0.3
    paste_exclude: str | None = None
    threads: int = 0
    workers: int = 0
    device: str = "auto"
    progress: bool = True


def cosine_decay_factor(step: int, steps: int) -> float:
    """Learning-rate factor of ``step``: cosine from 1 to 0.01 over ``steps``."""
    progress = min(step / max(steps, 1), 1.0)
    return 0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * progress))


def segmentation_loss_callback(tasks: tuple[str, ...], jaccard_weight: float, parts_weight: float,
                               type_weight: float):
    """The Trainer's loss callback: ``{"total", "binary", "parts", "type"}`` (a head without labels in the batch
    logs 0). Batches hold ``image`` (B, 3, h, w) float32 and ``binary``, ``parts``, ``type`` (B, h, w) int64."""
    weights = {"binary": 1.0, "parts": parts_weight, "type": type_weight}

    def loss(batch: dict, trainer: Trainer) -> dict:
        outputs = dict(zip(tasks, trainer.models[MODEL_NAME](batch["image"])))
        total = batch["image"].new_zeros(())
        logged = {}
        for task, logits in outputs.items():
            if task == "binary":
                value = binary_segmentation_loss(logits, batch["binary"], jaccard_weight)
            else:
                sets = {PART_MANIPULATOR: (2, 3)} if task == "parts" else None
                value = multiclass_segmentation_loss(logits, batch[task], jaccard_weight, sets)
            total = total + weights[task] * value
            logged[task] = float(value.detach())
        return {"total": total, **logged}

    return loss


def pad_to_multiple(image: torch.Tensor, multiple: int = INPUT_MULTIPLE) -> tuple[torch.Tensor, int, int]:
    """Pad (B, C, H, W) at the bottom and right (edge values) to multiples of ``multiple``; returns the padded
    tensor and the original H and W."""
    height, width = image.shape[-2:]
    pad_y, pad_x = (-height) % multiple, (-width) % multiple
    if pad_y or pad_x:
        image = F.pad(image, (0, pad_x, 0, pad_y), mode="replicate")
    return image, height, width


def validation_callback(tasks: tuple[str, ...]):
    """The Trainer's validation callback (batches of one image of any size): ``{"binary_iou", "binary_dice"}``,
    per-image IoU and Dice of the binary head at probability 0.5, ignored pixels left out."""

    def validate(batch: dict, trainer: Trainer) -> dict:
        image, height, width = pad_to_multiple(batch["image"])
        logits = trainer.models[MODEL_NAME](image)[tasks.index("binary")][..., :height, :width]
        prediction = (logits[0, 0] > 0).cpu().numpy()
        truth = batch["binary"][0].cpu().numpy()
        iou, dice = iou_dice(prediction, truth == 1, valid=truth != IGNORE)
        return {"binary_iou": iou, "binary_dice": dice}

    return validate


def train_segmentation(options: TrainSegmentationOptions) -> dict:
    """Train SPP-LinkNet-34; write the weights (best validation step, or the last without validation), logs and
    model card.

    Returns:
        the model card written beside the weights.

    Raises:
        FileNotFoundError: for a missing set folder or no images left after the selection.
        ValueError: for bad options (the Trainer's checks, a crop not a multiple of 32, no binary head) or a
            cross-domain test set among the training or validation folders
            (:func:`~stereo_depth_ros.resources.check_training_folders`).
    """
    if "binary" not in options.tasks:
        raise ValueError("train-seg needs the binary head (its validation selects the weights)")
    check_training_folders([*options.data, *options.validation], "train-seg")
    if any(size % INPUT_MULTIPLE for size in options.crop):
        raise ValueError(f"crop must be multiples of {INPUT_MULTIPLE} pixels, got {tuple(options.crop)}")
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, keep_weights=True, backward="total",
        validation_batch_size=1, num_workers=options.workers, progress=options.progress, description="train-seg",
        progress_keys=("total", "binary"), plot_title="train-seg: cross-entropy - log soft Jaccard per head",
        plot_ylabel="loss")
    start_run(trainer_options, options.threads, options.seed)
    device = resolve_device(options.device)
    started = time.time()
    train = SegmentationDataset(options.data, split="train", groups_exclude=options.validation_groups,
                                working_height=options.working_height, crop=tuple(options.crop), augment=True,
                                samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                                paste_backgrounds=options.paste_backgrounds,
                                paste_probability=options.paste_probability,
                                paste_exclude=read_pair_list(options.paste_exclude) if options.paste_exclude else None)
    validation = None
    validation_roots = list(options.validation)
    if validation_roots:
        validation = SegmentationDataset(validation_roots, split="val", working_height=options.working_height)
    if options.validation_groups:
        held_out = SegmentationDataset(sorted(set(options.data)), split="val",
                                       groups_include=options.validation_groups,
                                       working_height=options.working_height)
        validation = held_out if validation is None else torch.utils.data.ConcatDataset([validation, held_out])
    model = SPPLinkNet(base_width=options.base_width, tasks=tuple(options.tasks)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_decay_factor(step, options.steps))
    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=segmentation_loss_callback(tuple(options.tasks), options.jaccard_weight,
                                                      options.parts_weight, options.type_weight),
                      train_dataset=train, schedulers={MODEL_NAME: scheduler}, validation_dataset=validation,
                      validate=validation_callback(tuple(options.tasks)) if validation is not None else None,
                      weights_writers=lambda module, path, metadata: save_weights(module, path, metadata),
                      device=device)
    facts = {"data": [str(d) for d in options.data], "validation": validation_roots,
             "validation_groups": options.validation_groups, "steps": options.steps, "crop": list(options.crop)}
    trainer.fit(resume=options.resume, weights_metadata={"training": facts})
    best = select_best_weights(trainer)
    card = {
        "architecture": ARCHITECTURE, "config": model.config, "tasks": list(options.tasks),
        "data": {"train": [str(d) for d in options.data], "train_samples": len(train.samples),
                 "endoscapes_split": "train", "validation": validation_roots,
                 "validation_groups": options.validation_groups,
                 "validation_images": 0 if validation is None else len(validation),
                 "paste_backgrounds": options.paste_backgrounds, "paste_probability": options.paste_probability},
        "options": {key: value for key, value in vars(options).items() if key not in ("data", "progress")},
        "selected_step": best["step"], "selected_validation": best["validation"],
        **run_facts(trainer, started, device),
    }
    return json.loads(write_model_card(Path(options.out), card).read_text())


def select_best_weights(trainer: Trainer) -> dict:
    """Copy the kept weights of the checkpoint with the highest validation binary IoU to the run's weights file
    (without validation: keep the last). Returns ``{"step": N, "validation": {...} or None}``."""
    rows = [row for row in trainer.validation_history if "binary_iou" in row]
    kept = dict(kept_weights_files(trainer.out))
    rows = [row for row in rows if int(row["step"]) in kept]
    if not rows:
        return {"step": trainer.steps_done, "validation": None}
    best = max(rows, key=lambda row: (row["binary_iou"], row["step"]))
    shutil.copyfile(kept[int(best["step"])], trainer.out)
    return {"step": int(best["step"]), "validation": {key: value for key, value in best.items() if key != "step"}}
