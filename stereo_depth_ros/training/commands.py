"""``stereo-depth-ros train-stereo``."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train-stereo``."""
    parser = sub.add_parser("train-stereo", help="self-supervised training of the coarse-to-fine network",
                            description="Train CoarseToFineStereoNet on rectified pairs with the photometric "
                                        "objective (no ground truth).")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR",
                        help="folders of rectified pairs (left/ + right/, BDIS images_rectified/, SCARED img_left/)")
    parser.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 320), metavar=("H", "W"),
                        help="random crop in pixels (default 256 320)")
    parser.add_argument("--scale-range", type=float, nargs=2, default=(0.8, 3.0), metavar=("MIN", "MAX"),
                        help="random zoom of the crops; disparities scale with it (default 0.8 3.0)")
    parser.add_argument("--disparity-shift", type=int, nargs=2, default=(0, 0), metavar=("MIN", "MAX"),
                        help="random shift added to the crops' disparities in pixels, by offsetting the right "
                             "view's window; negative values teach small disparities (default 0 0: none)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, cosine decay)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", metavar="CKPT", help="resume from a checkpoint (<out>.ckpt.safetensors)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    parser.add_argument("--max-disparity", type=int, default=256, help="search range in pixels (default 256)")
    parser.add_argument("--smoothness-weight", type=float, nargs="+", default=[0.01], metavar="W",
                        help="edge-aware smoothness weight: one for every stage, or four (one per stage) "
                             "(default 0.01)")
    parser.add_argument("--cost-layers", type=int, nargs=3, metavar=("N0", "N1", "N2"),
                        help="3D-convolution layers of stages 0, 1, 2 (default: those of --init, else 3 2 1); "
                             "layers --init lacks start random")
    parser.add_argument("--first-trained-stage", type=int, default=0, choices=range(4), metavar="S",
                        help="train only stages S..3; the earlier stages keep the --init weights exactly "
                             "(default 0 = train all)")
    parser.add_argument("--left-right-weight", type=float, default=0.0,
                        help="left-right consistency weight (0 = off; doubles the cost of a step)")
    parser.add_argument("--init", metavar="WEIGHTS",
                        help="start from these weights (fine-tuning) instead of a random initialisation")
    parser.add_argument("--exclude", metavar="LIST",
                        help="file of held-out pairs (left-image paths, one per line) never trained on")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop after this step with a checkpoint; --resume continues (same --steps)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--keep-weights", action="store_true",
                        help="at every checkpoint also write the weights as <out>.step<N>.safetensors "
                             "(for average-weights)")
    parser.set_defaults(run=_run)

    average = sub.add_parser("average-weights", help="average the weights of several checkpoints of one run",
                             description="Uniform checkpoint averaging: the mean of every weight and batch-norm "
                                         "statistic over the files (same architecture and configuration).")
    average.add_argument("weights", nargs="+", metavar="WEIGHTS", help="safetensors files to average")
    average.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    average.set_defaults(run=_run_average)


def _run_average(args: argparse.Namespace) -> int:
    from stereo_depth_ros.training.stereo_trainer import average_weights

    average_weights(args.weights, args.out)
    print(json.dumps({"weights": args.out, "averaged_from": args.weights}, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    from stereo_depth_ros.training.stereo_trainer import TrainStereoOptions, train_stereo

    if args.steps <= 0 or args.batch_size <= 0:
        raise ValueError("--steps and --batch-size must be positive")
    if len(args.smoothness_weight) not in (1, 4):
        raise ValueError(f"--smoothness-weight takes one value or four (one per stage), got "
                         f"{len(args.smoothness_weight)}")
    if args.cost_layers and min(args.cost_layers) < 1:
        raise ValueError(f"--cost-layers must be at least 1 per stage, got {args.cost_layers}")
    if args.first_trained_stage and not args.init:
        raise ValueError("--first-trained-stage needs --init: the frozen stages must come from trained weights")
    options = TrainStereoOptions(
        data=args.data, out=args.out, steps=args.steps, batch_size=args.batch_size, crop=tuple(args.crop),
        scale_range=tuple(args.scale_range),
        disparity_shift=tuple(args.disparity_shift),
        lr=args.lr, seed=args.seed, resume=args.resume, checkpoint_every=args.checkpoint_every,
        max_disparity=args.max_disparity,
        smoothness_weight=(args.smoothness_weight[0] if len(args.smoothness_weight) == 1
                           else tuple(args.smoothness_weight)),
        first_trained_stage=args.first_trained_stage,
        cost_layers=tuple(args.cost_layers) if args.cost_layers else None,
        left_right_weight=args.left_right_weight, device=args.device, threads=args.threads,
        stop_at=args.stop_at, exclude=args.exclude, init=args.init, keep_weights=args.keep_weights)
    card = train_stereo(options)
    print(json.dumps({"weights": args.out, "wall_time_s": card["wall_time_s"], "final_losses": card["final_losses"]},
                     indent=2))
    return 0
