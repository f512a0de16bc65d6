"""Self-supervised training of the sub-pixel DispNet (paper 004) on rectified stereo pairs, without ground truth.

Runs on the generic :class:`stereo_depth_ros.training.trainer.Trainer`: this module builds the network
(:class:`~stereo_depth_ros.models.mono_dispnet.SubPixelDispNet`), Adam with the cosine learning-rate decay of the
stereo trainer, and the dataset (:class:`ResizedStereoDataset`: whole pairs resized to the network's input, as
monodepth trains, so that a disparity as a fraction of the width means the same on every rig), and gives the Trainer
the loss callback (:func:`dispnet_loss`). ``stereo-depth-ros train-mono --model dispnet-subpixel`` calls
:func:`train_dispnet`.

Loss (paper 004, section 3.4, eqs. 1-5; Godard et al., CVPR 2017, eqs. 1-4): ``C = sum_s C_s`` over the four
scales; per scale, with the left and right images resized to that scale (the paper's image pyramid) and the
disparities in pixels of it, ``C_s = L_ap(left) + L_ap(right) + (smoothness_weight / 2^s) (L_ds(left) + L_ds(right))
+ left_right_weight L_lr / w_s``, where ``L_ap`` is :func:`stereo_depth_ros.losses.appearance_error` (0.85 SSIM 3x3
+ 0.15 L1) of each view reconstructed from the other (``warp_right_to_left`` / ``warp_left_to_right``), ``L_ds``
:func:`~stereo_depth_ros.losses.edge_aware_smoothness` and ``L_lr``
:func:`~stereo_depth_ros.losses.left_right_consistency` (pixels; divided by the scale's width ``w_s`` it is in units
of the image width, as monodepth computes it). Pixels on the black border of either view do not count.

The rig: a disparity predicted from one image is the disparity of the rig the network was trained on. The weights
store that rig's calibration (``--focal-length-px``, ``--image-width-px``, ``--baseline-m``), so the estimator
gives metres on it; a user with another rig fine-tunes on their own pairs with ``train-mono --init`` and their
calibration, or scales the relative depth (median alignment to stereo depth).

Run as a module for the training and the metric-depth check on BDIS synthetic sets 32 and 33:
``python -m stereo_depth_ros.training.mono_self_supervised evaluate --weights W.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stereo_depth_ros.data.folder_dataset import Sample, read_pair_list
from stereo_depth_ros.data.stereo_folder import StereoFolderDataset
from stereo_depth_ros.device import resolve_device
from stereo_depth_ros.geometry import warp_right_to_left
from stereo_depth_ros.losses import (appearance_error, edge_aware_smoothness, left_right_consistency, masked_mean,
                                     warp_left_to_right)
from stereo_depth_ros.models.mono_dispnet import ARCHITECTURE, SubPixelDispNet, load_weights, save_weights
from stereo_depth_ros.resources import check_training_folders, default_data_root, split_file
from stereo_depth_ros.training.model_card import machine_facts, mean_of_last_steps, write_model_card
from stereo_depth_ros.training.stereo_trainer import cosine_decay_factor
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, start_run

MODEL_NAME = "dispnet"  # the Trainer's name of the model (checkpoint tensors ``model.dispnet.*``)
DATA_ROOT = default_data_root() / "endoscopic_stereo"
#: What the packaged weights were trained on (relative to ``endoscopic_stereo/``): every set that is not held out
#: (BDIS in-vivo minus config/splits/bdis_invivo_test.txt; scared_keyframe_rectified is evaluation only) and BDIS
#: synthetic sets 30 and 31 listed twice (drawn twice as often: the rig the network is metric for).
DEFAULT_TRAINING_SETS = ("bdis_invivo/6", "bdis_invivo/20", "bdis_invivo/21", "hamlyn_invivo_tpsnet",
                         "opencas_exvivo", "scared_extra", "bdis_synthetic/30", "bdis_synthetic/31",
                         "bdis_synthetic/30", "bdis_synthetic/31")
#: BDIS synthetic rig (data README): K = [[520, 0, 320], [0, 520, 240], [0, 0, 1]] at 640x480, baseline 0.5 depth
#: units = 5 mm (the renderer's unit taken as centimetres, as evaluation.datasets does).
BDIS_RIG = {"focal_length_px": 520.0, "image_width_px": 640, "baseline_m": 0.005}


@dataclass
class TrainDispNetOptions:
    """Options of ``stereo-depth-ros train-mono --model dispnet-subpixel`` (one place for all of them).

    Attributes:
        data: folders of rectified pairs (``left/`` + ``right/`` or BDIS ``images_rectified/``); a folder listed
            twice is drawn twice as often.
        out: output weights ``.safetensors``; CSV, PNG, checkpoint and model card go beside it.
        steps: optimiser steps. batch_size: pairs per step (paper: 4 or 8).
        input_size: (height, width) every pair is resized to, multiples of 32 (paper: 256x512).
        lr: Adam learning rate (paper: 5e-4), cosine decay to 1 % of it over ``steps``.
        smoothness_weight: weight of the edge-aware smoothness at full resolution (divided by 2^s at scale s).
        left_right_weight: weight of the left-right consistency (in units of the image width).
        max_disparity_fraction: the largest disparity the network can give, as a fraction of the width.
        focal_length_px, image_width_px, baseline_m: the training rig's calibration stored in the weights (metric
            depth on that rig); all None for a relative-depth model.
        encoder_channels, decoder_channels: network widths (see :class:`SubPixelDispNet`).
        exclude: pair list file of held-out pairs never trained on (default: the BDIS in-vivo test list).
        init: weights to start from (fine-tuning on another rig), or None.
        seed, resume, checkpoint_every, stop_at, device, threads, progress: as for the stereo trainer.
    """

    data: list[str] = field(default_factory=lambda: [str(DATA_ROOT / name) for name in DEFAULT_TRAINING_SETS])
    out: str = "dispnet_subpixel.safetensors"
    steps: int = 2000
    batch_size: int = 4
    input_size: tuple[int, int] = (192, 256)
    lr: float = 5e-4
    smoothness_weight: float = 0.01
    left_right_weight: float = 1.0
    max_disparity_fraction: float = 0.4
    focal_length_px: float | None = BDIS_RIG["focal_length_px"]
    image_width_px: int | None = BDIS_RIG["image_width_px"]
    baseline_m: float | None = BDIS_RIG["baseline_m"]
    encoder_channels: tuple[int, ...] = (32, 32, 64, 128, 256)
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    exclude: str | None = field(default_factory=lambda: str(split_file()))
    init: str | None = None
    seed: int = 0
    resume: str | None = None
    checkpoint_every: int = 100
    stop_at: int | None = None
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise ValueError naming the first option out of range."""
        height, width = self.input_size
        if height <= 0 or width <= 0 or height % 32 or width % 32:
            raise ValueError(f"input_size must be (height, width) positive multiples of 32, got {self.input_size}")
        for name in ("lr", "max_disparity_fraction"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("smoothness_weight", "left_right_weight"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if not self.data:
            raise ValueError("give at least one data folder")
        check_training_folders(self.data, "train-mono dispnet-subpixel")


class ResizedStereoDataset(StereoFolderDataset):
    """Whole rectified pairs resized to one input size (monodepth's training input), with the view-swapping flip
    and colour jitter of :func:`stereo_depth_ros.data.stereo_folder.augment_pair`.

    Resizing the whole image keeps the disparity's fraction of the width, which is what the network predicts; a
    random crop would not. Images are resized with area interpolation, the valid mask (not on the black border of
    either view) with nearest neighbours.

    Args:
        roots, augment, samples_per_epoch, seed, exclude: as :class:`StereoFolderDataset`.
        size: (height, width) in pixels.

    Items: ``left``, ``right``: (3, height, width) float32 RGB in [0, 1]; ``valid``: (1, height, width) float32
    0/1; ``name``: the left image's path.
    """

    def __init__(self, roots, size: tuple[int, int], augment: bool = False, samples_per_epoch: int | None = None,
                 seed: int = 0, exclude: list[str] | None = None) -> None:
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be (height, width) positive pixels, got {size}")
        self.size = (int(size[0]), int(size[1]))
        super().__init__(roots, crop=self.size, augment=augment, samples_per_epoch=samples_per_epoch, seed=seed,
                         exclude=exclude)

    def crop_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = self.size
        return {"left": cv2.resize(sample["left"], (width, height), interpolation=cv2.INTER_AREA),
                "right": cv2.resize(sample["right"], (width, height), interpolation=cv2.INTER_AREA),
                "valid": cv2.resize(sample["valid"].astype(np.uint8), (width, height),
                                    interpolation=cv2.INTER_NEAREST).astype(bool)}


def resize_to(tensor: torch.Tensor, size: tuple[int, int], nearest: bool = False) -> torch.Tensor:
    """(B, C, H, W) resized to ``size`` (area averaging for images, nearest for masks); unchanged when equal."""
    if tuple(tensor.shape[2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="nearest" if nearest else "area")


def dispnet_loss(pyramid: list[torch.Tensor], left: torch.Tensor, right: torch.Tensor,
                 valid: torch.Tensor | None = None, smoothness_weight: float = 0.01,
                 left_right_weight: float = 1.0, alpha: float = 0.85) -> dict[str, torch.Tensor]:
    """Paper 004's training loss (section 3.4, eqs. 1-5) on the four-scale disparity pyramids of both views.

    Args:
        pyramid: per scale (coarse or fine, any order) a (B, 2, h, w) tensor: channel 0 the left, channel 1 the
            right disparity as a fraction of the width (``SubPixelDispNet.forward_pyramid``).
        left, right: (B, 3, H, W) float images in [0, 1] (the pair at full input size).
        valid: optional (B, 1, H, W) 0/1 mask of pixels that count (not on a black border).
        smoothness_weight: edge-aware smoothness weight at full resolution (divided by 2^s at scale s, where
            ``2^s = W / w``).
        left_right_weight: left-right consistency weight (the term in units of the image width).
        alpha: SSIM share of the appearance term (0.85).

    Returns:
        ``{"total": scalar tensor (differentiable), "appearance": ..., "smoothness": ..., "left_right": ...}``:
        the total and the unweighted sums over scales of each term (both views).

    Raises:
        ValueError: for a pyramid level that is not (B, 2, h, w) or images of different shapes.
    """
    if left.shape != right.shape or left.ndim != 4:
        raise ValueError(f"left and right must be (B, 3, H, W) of one shape, got {tuple(left.shape)} and "
                         f"{tuple(right.shape)}")
    if valid is None:
        valid = torch.ones_like(left[:, :1])
    zero = left.new_zeros(())
    total, appearance_sum, smoothness_sum, left_right_sum = zero, zero, zero, zero
    for disparities in pyramid:
        if disparities.ndim != 4 or disparities.shape[1] != 2 or disparities.shape[0] != left.shape[0]:
            raise ValueError(f"each pyramid level must be (B, 2, h, w) with B = {left.shape[0]}, got "
                             f"{tuple(disparities.shape)}")
        height, width = disparities.shape[2:]
        left_s, right_s = resize_to(left, (height, width)), resize_to(right, (height, width))
        valid_s = resize_to(valid, (height, width), nearest=True)
        left_px, right_px = disparities[:, :1] * width, disparities[:, 1:] * width
        left_rebuilt, _ = warp_right_to_left(right_s, left_px, padding_mode="border")
        right_rebuilt, _ = warp_left_to_right(left_s, right_px, padding_mode="border")
        appearance = (masked_mean(appearance_error(left_s, left_rebuilt, alpha), valid_s)
                      + masked_mean(appearance_error(right_s, right_rebuilt, alpha), valid_s))
        smoothness = edge_aware_smoothness(left_px, left_s) + edge_aware_smoothness(right_px, right_s)
        left_right = left_right_consistency(left_px, right_px, valid_s) / width
        downscale = left.shape[3] / width
        total = total + appearance + smoothness_weight / downscale * smoothness + left_right_weight * left_right
        appearance_sum = appearance_sum + appearance.detach()
        smoothness_sum = smoothness_sum + smoothness.detach()
        left_right_sum = left_right_sum + left_right.detach()
    return {"total": total, "appearance": appearance_sum, "smoothness": smoothness_sum, "left_right": left_right_sum}


def dispnet_loss_callback(options: TrainDispNetOptions):
    """The Trainer's loss callback: :func:`dispnet_loss` of the network's pyramid on the batch's left image."""
    def loss(batch: dict, trainer: Trainer) -> dict:
        pyramid = trainer.models[MODEL_NAME].forward_pyramid(batch["left"])
        return dispnet_loss(pyramid, batch["left"], batch["right"], batch["valid"], options.smoothness_weight,
                            options.left_right_weight)

    return loss


def initial_model(options: TrainDispNetOptions) -> SubPixelDispNet:
    """A random network, or the ``init`` weights with the options' rig calibration (fine-tuning on a new rig).

    Raises:
        WeightsError: for an unreadable ``init`` file. ValueError: for an invalid calibration.
    """
    config = {"encoder_channels": tuple(options.encoder_channels), "decoder_channels": tuple(options.decoder_channels),
              "max_disparity_fraction": options.max_disparity_fraction, "focal_length_px": options.focal_length_px,
              "image_width_px": options.image_width_px, "baseline_m": options.baseline_m}
    if not options.init:
        return SubPixelDispNet(**config)
    source = load_weights(options.init)
    model = SubPixelDispNet(**dict(source.config, focal_length_px=options.focal_length_px,
                                   image_width_px=options.image_width_px, baseline_m=options.baseline_m))
    model.load_state_dict(source.state_dict())
    return model


def train_dispnet(options: TrainDispNetOptions) -> dict:
    """Train the sub-pixel DispNet self-supervised; write weights, loss CSV and PNG, checkpoint and model card.

    Returns:
        the model card (dict) written beside the weights (with the weights' ``sha256``).

    Raises:
        FileNotFoundError: for a missing data folder, pair list or resume checkpoint.
        ValueError: for invalid options or a checkpoint of another run.
    """
    options.check()
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, backward="total",
        progress=options.progress, description="train-mono dispnet-subpixel",
        progress_keys=("total", "appearance"), plot_title="train-mono dispnet-subpixel: self-supervised loss",
        plot_ylabel="loss (sum over 4 scales)")
    start_run(trainer_options, options.threads, options.seed)
    device = resolve_device(options.device)
    dataset = ResizedStereoDataset(options.data, tuple(options.input_size), augment=True,
                                   samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                                   exclude=read_pair_list(options.exclude) if options.exclude else None)
    model = initial_model(options).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_decay_factor(step, options.steps))
    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=dispnet_loss_callback(options), train_dataset=dataset,
                      schedulers={MODEL_NAME: scheduler}, device=device,
                      weights_writers=lambda module, path, metadata: save_weights(module, path, metadata))
    facts = {"data": [str(d) for d in options.data], "steps": options.steps, "input_size": list(options.input_size),
             "seed": options.seed}
    history = trainer.fit(resume=options.resume, weights_metadata={"training": facts})
    card = model_card(options, history, device, len(dataset.pairs))
    return json.loads(write_model_card(Path(options.out), card).read_text())


def model_card(options: TrainDispNetOptions, history: list[dict], device: torch.device, pairs: int) -> dict:
    """Facts about a run: data, steps, input size, wall time, machine, final losses (mean of the last 50 steps)."""
    final = mean_of_last_steps(history, 50, ("total", "appearance", "smoothness", "left_right"))
    options_dict = asdict(options)
    options_dict.pop("extra", None)
    return {
        "architecture": ARCHITECTURE,
        "paper": "A Depth Estimation Framework Based on Unsupervised Learning and Cross-Modal Translation "
                 "(paper 004): sub-pixel DispNet, self-supervised on stereo pairs",
        "data": [str(d) for d in options.data],
        "ground_truth_used": False,
        "pairs_trained_on": pairs,
        "held_out_pairs": options.exclude,
        "initialised_from": options.init,
        "rig": {"focal_length_px": options.focal_length_px, "image_width_px": options.image_width_px,
                "baseline_m": options.baseline_m},
        "steps": options.steps,
        "steps_done": history[-1]["step"] if history else 0,
        "batch_size": options.batch_size,
        "input_size": list(options.input_size),
        "seed": options.seed,
        "options": options_dict,
        "wall_time_s": history[-1]["seconds"] if history else 0.0,
        "machine": machine_facts(device),
        "final_losses": final,
        **options.extra,
    }


def evaluate_bdis_synthetic(weights: str | Path, sets: tuple[int, ...] = (32, 33), data_root: str | Path | None = None,
                            limit: int | None = None, backend: str = "torch") -> dict:
    """The metric-depth check: the DispNet's unscaled and median-scaled depth on BDIS synthetic sets never trained on.

    For each frame and each of post-processing off / on: ``depth_metrics`` (monodepth2 protocol, depth range
    [1 mm, the frame's largest GT depth]) of the unscaled depth (``scale`` = median GT / median prediction: 1 for
    a right metric unit) and of the median-scaled depth; averaged over frames.

    Args:
        weights: the DispNet weights (with the BDIS rig calibration for metric depth).
        sets: BDIS synthetic set numbers.
        data_root: the folder holding ``endoscopic_stereo/`` (default ``../shared/data``).
        limit: at most this many frames per set (None = all).
        backend: the estimator's backend ("torch" or "onnx").

    Returns:
        ``{"frames": N, "sets": [...], "rows": {"<post>/<scaling>": {metric: mean}}, "median_scale": ...}`` with
        ``<post>`` ``"plain"`` or ``"flip-post-processing"`` and ``<scaling>`` ``"unscaled"`` or ``"median-scaled"``,
        plus ``"gt-mean/unscaled"`` (the baseline: each frame's mean GT depth everywhere); ``median_scale`` is the
        median over frames of the unscaled ``scale`` per post-processing mode.

    Raises:
        FileNotFoundError: if the data is missing.
    """
    from stereo_depth_ros.evaluation.datasets import BDIS_CAMERA, bdis_synthetic, default_data_root
    from stereo_depth_ros.evaluation.depth_metrics import constant_depth_like, depth_metrics, mean_over_frames
    from stereo_depth_ros.models.registry import create_estimator

    root = Path(data_root) if data_root is not None else default_data_root()
    estimators = {name: create_estimator("dispnet-subpixel", weights=str(weights), post_process=post,
                                         backend=backend)
                  for name, post in (("plain", False), ("flip-post-processing", True))}
    rows: dict[str, list[dict]] = {f"{name}/{scaling}": [] for name in estimators
                                   for scaling in ("unscaled", "median-scaled")}
    rows["gt-mean/unscaled"] = []
    frames, started = 0, time.time()
    for set_id in sets:
        for sample in bdis_synthetic(root, (set_id,)).limit(limit):
            gt = BDIS_CAMERA.depth_from_disparity(sample.gt_disparity)
            for name, estimator in estimators.items():
                depth = estimator.estimate_depth(sample.left_bgr)
                for scaling, median in (("unscaled", False), ("median-scaled", True)):
                    rows[f"{name}/{scaling}"].append(depth_metrics(depth, gt, median_scaling=median))
            rows["gt-mean/unscaled"].append(depth_metrics(constant_depth_like(gt), gt))
            frames += 1
    return {"frames": frames, "sets": list(sets), "seconds": round(time.time() - started, 1),
            "depth_range_m": "[0.001, largest GT depth of the frame]",
            "rows": {key: mean_over_frames(values) for key, values in rows.items()},
            "median_scale": {name: float(np.median([row["scale"] for row in rows[f"{name}/unscaled"]]))
                             for name in estimators}}


def main(argv: list[str] | None = None) -> int:
    """``python -m stereo_depth_ros.training.mono_self_supervised {train,evaluate} ...`` (the same options as
    ``train-mono --model dispnet-subpixel``, and the BDIS synthetic 32/33 metric-depth check)."""
    parser = argparse.ArgumentParser(prog="python -m stereo_depth_ros.training.mono_self_supervised",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the sub-pixel DispNet self-supervised")
    train.add_argument("--data", nargs="+", default=None, help="pair folders (default: the packaged model's sets)")
    train.add_argument("--out", required=True)
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--input-size", type=int, nargs=2, default=(192, 256), metavar=("HEIGHT", "WIDTH"))
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--smoothness-weight", type=float, default=0.01)
    train.add_argument("--left-right-weight", type=float, default=1.0)
    train.add_argument("--focal-length-px", type=float, default=BDIS_RIG["focal_length_px"])
    train.add_argument("--image-width-px", type=int, default=BDIS_RIG["image_width_px"])
    train.add_argument("--baseline-m", type=float, default=BDIS_RIG["baseline_m"])
    train.add_argument("--exclude", default=str(split_file()))
    train.add_argument("--init", default=None)
    train.add_argument("--resume", default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--stop-at", type=int, default=None)
    train.add_argument("--device", default="auto")
    train.add_argument("--threads", type=int, default=0)
    train.add_argument("--no-progress", action="store_true")
    evaluate = commands.add_parser("evaluate", help="metric-depth check on BDIS synthetic sets 32 and 33")
    evaluate.add_argument("--weights", required=True)
    evaluate.add_argument("--sets", type=int, nargs="+", default=(32, 33))
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--limit", type=int, default=None)
    evaluate.add_argument("--backend", default="torch", choices=("torch", "onnx", "auto"))
    evaluate.add_argument("--card", action="store_true", help="also write the result into the weights' model card")
    args = parser.parse_args(argv)
    if args.command == "train":
        options = TrainDispNetOptions(
            out=args.out, steps=args.steps, batch_size=args.batch_size, input_size=tuple(args.input_size),
            lr=args.lr, smoothness_weight=args.smoothness_weight, left_right_weight=args.left_right_weight,
            focal_length_px=args.focal_length_px, image_width_px=args.image_width_px, baseline_m=args.baseline_m,
            exclude=args.exclude or None, init=args.init, resume=args.resume, seed=args.seed,
            checkpoint_every=args.checkpoint_every, stop_at=args.stop_at, device=args.device, threads=args.threads,
            progress=not args.no_progress)
        if args.data:
            options.data = list(args.data)
        card = train_dispnet(options)
        print(json.dumps({key: card[key] for key in ("steps_done", "wall_time_s", "final_losses", "sha256")}))
        return 0
    result = evaluate_bdis_synthetic(args.weights, tuple(args.sets), args.data_root, args.limit, args.backend)
    print(json.dumps(result, indent=1))
    if args.card:
        from stereo_depth_ros.models.weights import model_card_path

        card_path = model_card_path(args.weights)
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card.pop("sha256", None)
        card["bdis_synthetic_32_33"] = dict(result, command="python -m stereo_depth_ros.training.mono_self_supervised "
                                            f"evaluate --weights {args.weights} --card")
        write_model_card(args.weights, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
