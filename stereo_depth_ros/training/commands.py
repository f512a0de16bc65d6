"""``stereo-depth-ros train-stereo``."""

from __future__ import annotations

import argparse
import json

from stereo_depth_ros.resources import default_data_root, split_file


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train-stereo``."""
    from stereo_depth_ros.models.coarse_to_fine import STAGE3_DESIGNS

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
    parser.add_argument("--stage3", choices=STAGE3_DESIGNS, default=None,
                        help="stage-3 design: refinement (the guided 2D CNN at 1/2), cost-volume (a residual cost "
                             "volume at 1/4) or cost-volume-half (the same at 1/2); default: that of --init, else "
                             "refinement; tensors --init lacks start random (the cost volume's last layer at zero)")
    parser.add_argument("--stage3-radius", type=int, default=None, metavar="R",
                        help="residual range of a cost-volume stage 3 in pixels of its scale (default: that of "
                             "stages 1-2, 2)")
    parser.add_argument("--stage3-layers", type=int, default=None, metavar="N",
                        help="3D-convolution layers of a cost-volume stage 3 (default: those of stage 2)")
    parser.add_argument("--first-trained-stage", type=int, default=0, choices=range(4), metavar="S",
                        help="train only stages S..3; the earlier stages keep the --init weights exactly "
                             "(default 0 = train all)")
    parser.add_argument("--left-right-weight", type=float, default=0.0,
                        help="left-right consistency weight (0 = off; doubles the cost of a step)")
    parser.add_argument("--init", metavar="WEIGHTS",
                        help="start from these weights (fine-tuning) instead of a random initialisation")
    parser.add_argument("--exclude", default=str(split_file()), metavar="LIST",
                        help="file of held-out pairs (left-image paths, one per line) never trained on (default "
                             "config/splits/bdis_invivo_test.txt, the 14 held-out in-vivo pairs; '' for none)")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop after this step with a checkpoint; --resume continues (same --steps)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--keep-weights", action="store_true",
                        help="at every checkpoint also write the weights as <out>.step<N>.safetensors "
                             "(for average-weights)")
    parser.add_argument("--proxy-weight", type=float, default=0.0, metavar="W",
                        help="add W times the smooth-L1 distance of every stage to the confident SGBM disparity "
                             "(left-right consistent, unique; cached per pair under --proxy-cache) to the "
                             "self-supervised loss (default 0 = off; docs/stereo.md)")
    parser.add_argument("--proxy-max-disparity", type=int, default=192,
                        help="SGBM search range of the proxies in pixels, a multiple of 16 (default 192)")
    parser.add_argument("--proxy-cache", default="runs/proxy_cache", metavar="DIR",
                        help="where the proxies are cached (default runs/proxy_cache)")
    parser.add_argument("--cross-spectral", type=float, default=0.0, metavar="P",
                        help="with probability P the network's left input is a random single-band grey rendering "
                             "of the left view (the loss keeps the colour views): training for a NIR/RGB rig "
                             "(default 0 = off; docs/cross_modal.md)")
    parser.set_defaults(run=_run)

    average = sub.add_parser("average-weights", help="average the weights of several checkpoints of one run",
                             description="Uniform checkpoint averaging: the mean of every weight and batch-norm "
                                         "statistic over the files (same architecture and configuration).")
    average.add_argument("weights", nargs="+", metavar="WEIGHTS", help="safetensors files to average")
    average.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    average.set_defaults(run=_run_average)
    add_mono_command(sub)
    add_segmentation_command(sub)
    add_super_resolution_command(sub)
    add_cross_modal_command(sub)


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
        cost_layers=tuple(args.cost_layers) if args.cost_layers else None, stage3=args.stage3,
        stage3_radius=args.stage3_radius, stage3_layers=args.stage3_layers,
        left_right_weight=args.left_right_weight, device=args.device, threads=args.threads,
        stop_at=args.stop_at, exclude=args.exclude, init=args.init, keep_weights=args.keep_weights,
        proxy_weight=args.proxy_weight, proxy_max_disparity=args.proxy_max_disparity, proxy_cache=args.proxy_cache,
        cross_spectral=args.cross_spectral)
    card = train_stereo(options)
    print(json.dumps({"weights": args.out, "wall_time_s": card["wall_time_s"], "final_losses": card["final_losses"]},
                     indent=2))
    return 0


def add_segmentation_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train-seg`` (SPP-LinkNet-34 instrument segmentation, issue 13)."""
    parser = sub.add_parser("train-seg", help="train SPP-LinkNet-34 instrument segmentation (binary, parts, type)",
                            description="Supervised training of SPP-LinkNet-34 on instrument-segmentation sets "
                                        "(layouts and codings: stereo_depth_ros/data/segmentation_sets.py); the "
                                        "weights of the best validation step are written to --out.")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR",
                        help="training set folders (Endoscapes: its train split); a folder given twice is drawn "
                             "twice as often")
    parser.add_argument("--validation", nargs="*", default=[], metavar="DIR",
                        help="validation set folders (Endoscapes: its val split)")
    parser.add_argument("--validation-groups", nargs="*", default=[], metavar="SET/GROUP",
                        help="sequences held out of --data for validation, e.g. endovis2015_robotic/test4")
    parser.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 320), metavar=("H", "W"),
                        help="random crop in pixels, multiples of 32 (default 256 320)")
    parser.add_argument("--working-height", type=int, default=256,
                        help="image height in pixels before cropping (x 0.8..1.25 at random; default 256)")
    parser.add_argument("--base-width", type=int, default=16, help="first encoder width (ResNet-18: 64; default 16)")
    parser.add_argument("--tasks", nargs="+", default=["binary", "parts", "type"],
                        choices=("binary", "parts", "type"), help="heads to build and train")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3, cosine decay)")
    parser.add_argument("--jaccard-weight", type=float, default=1.0, help="weight of -log soft Jaccard (default 1)")
    parser.add_argument("--parts-weight", type=float, default=0.5, help="weight of the parts loss (default 0.5)")
    parser.add_argument("--type-weight", type=float, default=0.5, help="weight of the type loss (default 0.5)")
    parser.add_argument("--paste-backgrounds", nargs="*", default=[], metavar="DIR",
                        help="tissue-only image folders for copy-paste augmentation")
    parser.add_argument("--paste-probability", type=float, default=0.3, help="copy-paste probability (default 0.3)")
    parser.add_argument("--paste-exclude", metavar="LIST", help="pair list of background frames never used")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints and validation")
    parser.add_argument("--stop-at", type=int, metavar="STEP", help="stop after this step; --resume continues")
    parser.add_argument("--resume", metavar="CKPT", help="resume from <out stem>.ckpt.safetensors")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_segmentation)


def _run_segmentation(args: argparse.Namespace) -> int:
    from stereo_depth_ros.training.segmentation_trainer import TrainSegmentationOptions, train_segmentation

    options = TrainSegmentationOptions(
        data=args.data, out=args.out, validation=args.validation, validation_groups=args.validation_groups,
        steps=args.steps, batch_size=args.batch_size, crop=tuple(args.crop), working_height=args.working_height,
        lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every, stop_at=args.stop_at,
        resume=args.resume, base_width=args.base_width, tasks=tuple(args.tasks), jaccard_weight=args.jaccard_weight,
        parts_weight=args.parts_weight, type_weight=args.type_weight, paste_backgrounds=args.paste_backgrounds,
        paste_probability=args.paste_probability, paste_exclude=args.paste_exclude, threads=args.threads,
        workers=args.workers, device=args.device, progress=not args.no_progress)
    card = train_segmentation(options)
    print(json.dumps({"weights": args.out, "wall_time_s": card["wall_time_s"], "selected_step": card["selected_step"],
                      "selected_validation": card["selected_validation"]}, indent=2))
    return 0


MONO_MODELS = ("unet", "unet-original", "c", "sc", "scrx", "scrxu", "scrdu", "dispnet-subpixel")


def add_mono_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train-mono`` (monocular depth networks, issue 11)."""
    parser = sub.add_parser("train-mono", help="train a monocular depth network (U-Nets, refinement CNNs, DispNet)",
                            description="Supervised training of the light U-Net, the original U-Net and the "
                                        "refinement CNNs on pseudo ground truth from stereo matching (built once "
                                        "from the real pairs and cached; stereo_depth_ros/training/"
                                        "mono_supervised.py), or self-supervised training of the sub-pixel "
                                        "DispNet (dispnet-subpixel, stereo_depth_ros/training/"
                                        "mono_self_supervised.py).")
    parser.add_argument("--model", required=True, choices=MONO_MODELS, help="the network to train")
    parser.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    parser.add_argument("--data", nargs="+", metavar="DIR",
                        help="supervised models: folders of <name>.png + <name>.depth.npy (default: the pseudo "
                             "ground truth built from --data-root into --cache); dispnet-subpixel: stereo pair "
                             "folders")
    parser.add_argument("--validation", nargs="+", metavar="DIR",
                        help="validation folders (default with the pseudo ground truth: its validation split)")
    parser.add_argument("--data-root", default=str(default_data_root() / "endoscopic_stereo"), metavar="DIR",
                        help="the endoscopic_stereo folder the pseudo ground truth is built from")
    parser.add_argument("--cache", default="runs/mono_pseudo_gt", metavar="DIR",
                        help="pseudo ground-truth cache folder (default runs/mono_pseudo_gt)")
    parser.add_argument("--exclude", default=str(split_file()), metavar="LIST",
                        help="held-out pairs never trained on (default config/splits/bdis_invivo_test.txt)")
    parser.add_argument("--synthetic-ground-truth", type=int, nargs="+", default=(), metavar="SET",
                        help="supervised models: also train and validate on the true depth of these BDIS synthetic "
                             "sets (e.g. 30 31; 32 and 33 are the test sets and are refused)")
    parser.add_argument("--synthetic-cache", default="runs/mono_synthetic_gt", metavar="DIR",
                        help="folder for the synthetic ground truth (default runs/mono_synthetic_gt)")
    parser.add_argument("--synthetic-repeat", type=int, default=1, metavar="N",
                        help="draw each synthetic frame N times as often as a real one (default 1)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (default 1500)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--crop", type=int, nargs=2, default=(128, 160), metavar=("H", "W"),
                        help="random crop in pixels (default 128 160)")
    parser.add_argument("--lr", type=float, help="Adam learning rate, cosine decay (default 1e-3; dispnet-subpixel: "
                                                 "its trainer's default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints and validation")
    parser.add_argument("--stop-at", type=int, metavar="STEP", help="stop after this step; --resume continues")
    parser.add_argument("--resume", metavar="CKPT", help="resume from <out stem>.ckpt.safetensors")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    rig = parser.add_argument_group("dispnet-subpixel only: fine-tuning for another rig (metric depth needs the "
                                    "rig's calibration; see docs/mono_dispnet.md)")
    rig.add_argument("--init", metavar="WEIGHTS", help="weights to start from (e.g. the packaged DispNet)")
    rig.add_argument("--focal-length-px", type=float, help="the rig's focal length in pixels at --image-width-px")
    rig.add_argument("--image-width-px", type=int, help="the image width the focal length refers to, pixels")
    rig.add_argument("--baseline-m", type=float, help="the rig's baseline in metres")
    rig.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                     help="network input size, multiples of 32 (default 192 256)")
    parser.set_defaults(run=_run_mono)


def _run_mono(args: argparse.Namespace) -> int:
    if args.steps <= 0 or args.batch_size <= 0:
        raise ValueError("--steps and --batch-size must be positive")
    if args.model == "dispnet-subpixel":
        if args.synthetic_ground_truth:
            raise ValueError("--synthetic-ground-truth applies to the supervised models only: dispnet-subpixel "
                             "trains without ground truth (pass the synthetic pair folders with --data)")
        try:
            from stereo_depth_ros.training.mono_self_supervised import train_dispnet
        except ImportError as error:
            raise RuntimeError(f"train-mono --model dispnet-subpixel needs "
                               f"stereo_depth_ros.training.mono_self_supervised.train_dispnet, which is not "
                               f"available: {error}") from error
        from stereo_depth_ros.training.mono_self_supervised import TrainDispNetOptions

        shared = {"out": args.out, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                  "resume": args.resume, "checkpoint_every": args.checkpoint_every, "stop_at": args.stop_at,
                  "device": args.device, "threads": args.threads, "progress": not args.no_progress,
                  "exclude": args.exclude}
        if args.data:
            shared["data"] = list(args.data)
        if args.lr is not None:
            shared["lr"] = args.lr
        rig = {"init": args.init, "focal_length_px": args.focal_length_px, "image_width_px": args.image_width_px,
               "baseline_m": args.baseline_m, "input_size": None if args.input_size is None else tuple(args.input_size)}
        shared.update({key: value for key, value in rig.items() if value is not None})
        card = train_dispnet(TrainDispNetOptions(**shared))
    else:
        given = [flag for flag, value in (("--init", args.init), ("--focal-length-px", args.focal_length_px),
                                          ("--image-width-px", args.image_width_px),
                                          ("--baseline-m", args.baseline_m), ("--input-size", args.input_size))
                 if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --model dispnet-subpixel only, not to {args.model}")
        from stereo_depth_ros.training.mono_supervised import TrainMonoOptions, train_mono

        card = train_mono(TrainMonoOptions(
            model=args.model, out=args.out, data=args.data, validation=args.validation, data_root=args.data_root,
            exclude=args.exclude, cache=args.cache, synthetic_sets=tuple(args.synthetic_ground_truth),
            synthetic_cache=args.synthetic_cache, synthetic_repeat=args.synthetic_repeat, steps=args.steps,
            batch_size=args.batch_size,
            crop=tuple(args.crop), lr=1e-3 if args.lr is None else args.lr, seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            stop_at=args.stop_at, resume=args.resume, device=args.device, threads=args.threads,
            progress=not args.no_progress))
    print(json.dumps({"weights": args.out, "wall_time_s": card.get("wall_time_s"),
                      "final_losses": card.get("final_losses"), "validation": card.get("validation")}, indent=2))
    return 0


def add_super_resolution_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train-sr`` (stereo super-resolution with parallax attention, or its single-image baseline)."""
    from stereo_depth_ros.training.sr_trainer import DEFAULT_DATA_ROOT, DEFAULT_SETS, TRAINABLE

    parser = sub.add_parser("train-sr", help="train stereo super-resolution (parallax attention) or its "
                                             "single-image baseline",
                            description="Train on HR crops of real rectified pairs and their bicubic LR versions "
                                        "(docs/super_resolution.md).")
    parser.add_argument("--scale", type=int, required=True, choices=(2, 4), help="upscaling factor")
    parser.add_argument("--model", default="stereo", choices=("stereo", "single"),
                        help="stereo (parallax attention) or single (the single-image baseline)")
    parser.add_argument("--out", required=True, metavar="PATH.safetensors", help="output weights")
    parser.add_argument("--data", nargs="+", metavar="DIR",
                        default=[str(DEFAULT_DATA_ROOT / s) for s in DEFAULT_SETS],
                        help="folders of rectified pairs (default: BDIS in-vivo 6, 20, 21 and Hamlyn)")
    parser.add_argument("--exclude", default=str(split_file()), metavar="LIST",
                        help="held-out pairs never trained on (default config/splits/bdis_invivo_test.txt)")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--patch", type=int, nargs=2, default=(32, 64), metavar=("H", "W"),
                        help="LR patch in pixels (default 32 64; the HR crop is scale times larger)")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4, constant)")
    parser.add_argument("--attention-weight", type=float, default=0.1,
                        help="weight of the photometric, cycle and smoothness terms (default 0.1)")
    parser.add_argument("--attention-loss-mask", choices=("visibility", "valid"), default="visibility",
                        help="masks of the attention terms: PASSRnet's visibility masks (default) or the network's "
                             "valid masks (the recipe of the weights packaged before 2026-11-27)")
    parser.add_argument("--attention-proxy-weight", type=float, default=0.0, metavar="W",
                        help="stereo model: weight of the cross-entropy of the attention at confident SGBM matches of "
                             "the LR patch (default 0: off)")
    parser.add_argument("--detach-attention-input", action="store_true",
                        help="stereo model: the attention trains on the per-view features without gradient, so its "
                             "terms never pull the features the reconstruction uses")
    parser.add_argument("--fusion-lr-scale", type=float, default=1.0, metavar="K",
                        help="learning-rate factor of the fusion of own and other-view features (default 1)")
    parser.add_argument("--trainable", choices=TRAINABLE, default="all",
                        help="all tensors learn (default), or only the fusion of own and other-view features and "
                             "biPAM (fine-tuning with --init: the features stay as they were)")
    parser.add_argument("--channels", type=int, default=32, help="feature channels (default 32)")
    parser.add_argument("--init", metavar="WEIGHTS", help="weights to fine-tune (their network sizes are used; "
                                                          "same scale and model, or single-image weights to "
                                                          "start the stereo model from)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--stop-at", type=int, metavar="STEP", help="stop after this step with a checkpoint")
    parser.add_argument("--resume", metavar="CKPT", help="resume from <out>.ckpt.safetensors")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_super_resolution)


def _run_super_resolution(args: argparse.Namespace) -> int:
    from stereo_depth_ros.training.sr_trainer import TrainSuperResolutionOptions, train_super_resolution

    card = train_super_resolution(TrainSuperResolutionOptions(
        scale=args.scale, out=args.out, model=args.model, data=list(args.data), exclude=args.exclude or None,
        steps=args.steps, batch_size=args.batch_size, patch=tuple(args.patch), lr=args.lr,
        attention_weight=args.attention_weight, attention_loss_mask=args.attention_loss_mask,
        attention_proxy_weight=args.attention_proxy_weight, detach_attention_input=args.detach_attention_input,
        fusion_lr_scale=args.fusion_lr_scale, trainable=args.trainable, channels=args.channels, seed=args.seed,
        init=args.init,
        checkpoint_every=args.checkpoint_every, stop_at=args.stop_at, resume=args.resume, threads=args.threads,
        progress=not args.no_progress))
    print(json.dumps({"weights": args.out, "steps": card.get("steps"), "wall_time_s": card.get("wall_time_s"),
                      "final_losses": card.get("final_losses")}, indent=2))
    return 0


def add_cross_modal_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train-cross-modal`` (CycleGAN NIR <-> RGB, issue 14)."""
    from stereo_depth_ros.training.cross_modal_trainer import DEFAULT_DATA_ROOT

    parser = sub.add_parser("train-cross-modal", help="train the CycleGAN NIR <-> RGB generators (unpaired)",
                            description="CycleGAN on unpaired NIR and RGB crops (docs/cross_modal.md).")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (logs, checkpoint, discriminators)")
    parser.add_argument("--weights-dir", metavar="DIR",
                        help="where the two generators and their model cards go (default: --out)")
    parser.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA_ROOT)], metavar="DIR",
                        help="folders of NNNN_nir.jpg + NNNN_rgb.jpg (default ../shared/data/nir_rgb/country)")
    parser.add_argument("--steps", type=int, default=2000, help="steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=1, help="NIR and RGB crops per step (default 1)")
    parser.add_argument("--crop", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                        help="random crop in pixels (default 128 128)")
    parser.add_argument("--short-side", type=int, default=256, help="downscale images to this short side (px)")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4, linear decay)")
    parser.add_argument("--base-channels", type=int, default=24, help="generator base channels (default 24)")
    parser.add_argument("--residual-blocks", type=int, default=5, help="generator residual blocks (default 5)")
    parser.add_argument("--discriminator-channels", type=int, default=16, help="PatchGAN base channels (16)")
    parser.add_argument("--input-skip", action="store_true",
                        help="generators add their output to the input (start as identity; not in CycleGAN)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--stop-at", type=int, metavar="STEP", help="stop after this step with a checkpoint")
    parser.add_argument("--resume", metavar="CKPT", help="resume from <out>/cyclegan.ckpt.safetensors")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_cross_modal)


def _run_cross_modal(args: argparse.Namespace) -> int:
    from stereo_depth_ros.training.cross_modal_trainer import TrainCrossModalOptions, train_cross_modal

    cards = train_cross_modal(TrainCrossModalOptions(
        out=args.out, weights_dir=args.weights_dir, data=list(args.data), steps=args.steps,
        batch_size=args.batch_size, crop=tuple(args.crop), short_side=args.short_side, lr=args.lr,
        generator={"base_channels": args.base_channels, "residual_blocks": args.residual_blocks,
                   "input_skip": args.input_skip},
        discriminator={"base_channels": args.discriminator_channels}, seed=args.seed,
        checkpoint_every=args.checkpoint_every, stop_at=args.stop_at, resume=args.resume, threads=args.threads,
        progress=not args.no_progress))
    print(json.dumps({direction: {"steps": card.get("steps"), "wall_time_s": card.get("wall_time_s"),
                                  "mean_losses_last_50_steps": card.get("mean_losses_last_50_steps")}
                      for direction, card in cards.items()}, indent=2))
    return 0
