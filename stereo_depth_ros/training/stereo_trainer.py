"""Self-supervised training of :class:`CoarseToFineStereoNet` on rectified pairs (no ground truth anywhere).

Deterministic for a seed: the crops and augmentations of item ``k`` depend on ``seed + k`` only, batches are drawn
in a fixed order from a seeded permutation, and PyTorch runs with deterministic algorithms. Checkpoints are
safetensors files (weights, Adam state, step) so a run resumes exactly where it stopped, without pickle.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stereo_depth_ros.data.stereo_folder import ScaredKeyframeDataset, read_pair_list
from stereo_depth_ros.device import resolve_device
from stereo_depth_ros.losses import PhotometricLossConfig, self_supervised_stereo_loss
from stereo_depth_ros.models.coarse_to_fine import (ARCHITECTURE, NUM_STAGES, CoarseToFineStereoNet, load_weights,
                                                    save_weights)

CSV_FIELDS = ["step", "total", "stage0", "stage1", "stage2", "stage3", "appearance3", "lr", "seconds"]


@dataclass
class TrainStereoOptions:
    """Options of ``stereo-depth-ros train-stereo`` (one place for all of them).

    Attributes:
        data: folders of rectified pairs (``left/``+``right/``, BDIS ``images_rectified/``, or SCARED ``img_left/``).
        out: output weights ``.safetensors``; the CSV, PNG, checkpoint and model card go beside it.
        steps: optimiser steps. batch_size: pairs per step. crop: (height, width) random crop.
        scale_range: random zoom of the crops (disparities scale with it), see ``data.stereo_folder.random_crop``.
        disparity_shift: (min, max) pixels added to the crops' disparities by offsetting the right view's window
            (see ``data.stereo_folder.random_crop``); (0, 0) = none.
        lr: Adam learning rate (cosine decay to 1 % of it). seed: random seed.
        resume: checkpoint to resume from (``<out>.ckpt.safetensors``), or None.
        checkpoint_every: steps between checkpoints. max_disparity: search range in pixels.
        smoothness_weight, left_right_weight: loss weights (see :class:`PhotometricLossConfig`); the smoothness
            weight is one number or one per stage.
        first_trained_stage: train only stages ``>= first_trained_stage`` (0 = all): the modules of the earlier
            stages (:meth:`CoarseToFineStereoNet.stage_modules`) keep their weights and batch-norm statistics, so
            their outputs stay exactly those of ``init`` (fine-tuning the finer stages alone).
        device: "cpu", "cuda" or "auto". threads: CPU threads for PyTorch (0 = PyTorch's default).
        cost_layers: 3D-convolution layers of stages 0, 1, 2 (None = those of ``init``, or the network's
            default); with ``init``, layers the init weights do not have start from a random initialisation.
        init: weights (safetensors) to start from instead of a random initialisation (fine-tuning); the model
            card records it.
        exclude: pair list file (see ``data.stereo_folder.read_pair_list``) of held-out pairs never trained on.
        stop_at: stop after this step with a checkpoint (the schedule still spans ``steps``), to split a long
            run into sessions that ``resume`` continues; None runs to ``steps``.
        keep_weights: at every checkpoint also write the weights alone as ``<out stem>.step<N>.safetensors``
            (for :func:`average_weights`).
    """

    data: list[str]
    out: str
    steps: int = 2000
    batch_size: int = 4
    crop: tuple[int, int] = (256, 320)
    scale_range: tuple[float, float] = (0.8, 3.0)
    disparity_shift: tuple[int, int] = (0, 0)
    lr: float = 1e-3
    seed: int = 0
    resume: str | None = None
    checkpoint_every: int = 200
    max_disparity: int = 256
    smoothness_weight: float | tuple[float, ...] = 0.01
    left_right_weight: float = 0.0
    first_trained_stage: int = 0
    device: str = "auto"
    threads: int = 0
    stop_at: int | None = None
    exclude: str | None = None
    init: str | None = None
    cost_layers: tuple[int, int, int] | None = None
    progress: bool = True
    keep_weights: bool = False
    extra: dict = field(default_factory=dict)


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.stem + ".ckpt.safetensors")


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Adam, step: int,
                    history: list[dict]) -> None:
    """Weights + Adam moments + step in one safetensors file (no pickle)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, parameter in enumerate(model.parameters()):
        state = optimizer.state.get(parameter, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"adam.{index}.{key}"] = state[key].detach().cpu().contiguous()
        if "step" in state:
            tensors[f"adam.{index}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    metadata = {"step": str(step), "history": json.dumps(history), "config": json.dumps(model.config)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Adam) -> tuple[int, list[dict]]:
    """Restore what :func:`save_checkpoint` wrote; returns (step, loss history)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    for index, parameter in enumerate(model.parameters()):
        if f"adam.{index}.exp_avg" in tensors:
            optimizer.state[parameter] = {
                "step": tensors[f"adam.{index}.step"][0].clone(),
                "exp_avg": tensors[f"adam.{index}.exp_avg"].to(parameter.device),
                "exp_avg_sq": tensors[f"adam.{index}.exp_avg_sq"].to(parameter.device)}
    return int(metadata["step"]), json.loads(metadata["history"])


def learning_rate(step: int, options: TrainStereoOptions) -> float:
    """Cosine decay from ``lr`` to ``0.01 * lr`` over ``steps``."""
    progress = min(step / max(options.steps, 1), 1.0)
    return options.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def freeze_stages_before(model: CoarseToFineStereoNet, first_trained_stage: int) -> list[torch.nn.Parameter]:
    """Freeze the modules of stages ``< first_trained_stage``; returns the parameters left to train.

    Frozen modules get ``requires_grad = False`` and are put in eval mode, so their batch-norm layers use and keep
    their running statistics. Call it again after every ``model.train()``.

    Raises:
        ValueError: for a stage outside ``0..NUM_STAGES - 1``.
    """
    if not 0 <= first_trained_stage < NUM_STAGES:
        raise ValueError(f"first_trained_stage must be in 0..{NUM_STAGES - 1}, got {first_trained_stage}")
    for stage in range(first_trained_stage):
        for module in model.stage_modules(stage):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def initial_model(options: TrainStereoOptions) -> CoarseToFineStereoNet:
    """The network a run starts from: a random one, or the ``init`` weights with their configuration.

    ``options.cost_layers`` may give a stage more 3D convolutions than ``init`` has; tensors that ``init`` does not
    have (by name and shape) keep their random initialisation, and they must belong to a stage that trains
    (``>= first_trained_stage``).

    Raises:
        ValueError: if a new tensor belongs to a frozen stage.
        WeightsError: for an unreadable ``init`` file.
    """
    overrides = {"cost_layers": list(options.cost_layers)} if options.cost_layers else {}
    if not options.init:
        return CoarseToFineStereoNet(max_disparity=options.max_disparity, **overrides)
    source = load_weights(options.init)
    model = CoarseToFineStereoNet(**dict(source.config, max_disparity=options.max_disparity, **overrides))
    state, initial = model.state_dict(), source.state_dict()
    new = [key for key, value in state.items() if key not in initial or initial[key].shape != value.shape]
    frozen_parts = [part for stage in range(options.first_trained_stage) for part in model.stage_modules(stage)]
    frozen_prefixes = tuple(name + "." for name, module in model.named_modules()
                            if any(module is part for part in frozen_parts))
    changed_frozen = [key for key in new if key.startswith(frozen_prefixes)]
    if changed_frozen:
        raise ValueError(f"--cost-layers changes a frozen stage (< {options.first_trained_stage}): {changed_frozen}")
    model.load_state_dict({key: value if key in new else initial[key] for key, value in state.items()})
    return model


def train_stereo(options: TrainStereoOptions) -> dict:
    """Train the coarse-to-fine network self-supervised; write weights, CSV, PNG, checkpoint and model card.

    Returns:
        the model card (dict) that was written beside the weights.

    Raises:
        FileNotFoundError: if a data folder holds no stereo pairs.
        ValueError: for invalid options (crop larger than an image, unknown device, smoothness weights, a first
            trained stage without init weights).
    """
    from tqdm import tqdm

    # Options that need no file: checked before any data or weights are read.
    loss_config = PhotometricLossConfig(smoothness_weight=options.smoothness_weight,
                                        left_right_weight=options.left_right_weight)
    if options.first_trained_stage and not options.init:
        raise ValueError("first_trained_stage > 0 freezes earlier stages: it needs init weights to start from")
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(options.device)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = ScaredKeyframeDataset(options.data, crop=tuple(options.crop), augment=True,
                                    samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                                    scale_range=tuple(options.scale_range),
                                    shift_range=tuple(options.disparity_shift),
                                    exclude=read_pair_list(options.exclude) if options.exclude else None)
    model = initial_model(options).to(device).train()
    optimizer = torch.optim.Adam(freeze_stages_before(model, options.first_trained_stage), lr=options.lr)
    start_step, history = 0, []
    if options.resume:
        start_step, history = load_checkpoint(Path(options.resume), model, optimizer)
    order = np.random.default_rng(options.seed).permutation(options.steps * options.batch_size)
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    last_step = options.steps if options.stop_at is None else min(options.stop_at, options.steps)
    bar = tqdm(range(start_step, last_step), initial=start_step, total=options.steps, desc="train-stereo",
               disable=not options.progress, dynamic_ncols=True)
    for step in bar:
        items = [dataset[int(k)] for k in order[step * options.batch_size:(step + 1) * options.batch_size]]
        left = torch.stack([it["left"] for it in items]).to(device)
        right = torch.stack([it["right"] for it in items]).to(device)
        valid = torch.stack([it["valid"] for it in items]).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, options)
        stages = model(left, right)
        right_stages = None
        if options.left_right_weight > 0:
            flipped = model(right.flip(-1), left.flip(-1))
            right_stages = [d.flip(-1) for d in flipped]
        losses = self_supervised_stereo_loss(left, right, stages, valid, loss_config, right_stages)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        row = {"step": step + 1, "total": float(losses.total.detach()), "appearance3": losses.appearance[-1],
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
        row.update({f"stage{i}": value for i, value in enumerate(losses.per_stage)})
        history.append(row)
        bar.set_postfix(loss=f"{row['total']:.4f}", stage3=f"{losses.per_stage[-1]:.4f}")
        if (step + 1) % options.checkpoint_every == 0 or step + 1 == last_step:
            save_checkpoint(_checkpoint_path(out), model, optimizer, step + 1, history)
            write_loss_log(history, out)
            if options.keep_weights:
                save_weights(model, out.with_name(f"{out.stem}.step{step + 1:06d}.safetensors"),
                             {"training": {"step": step + 1, "of_run": out.name}})
    model.eval()
    card = model_card(options, history, device, len(dataset.pairs))
    save_weights(model, out, {"training": {k: card[k] for k in ("data", "steps", "crop", "seed")}})
    write_loss_log(history, out)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def average_weights(paths: list[str | Path], out: str | Path) -> CoarseToFineStereoNet:
    """Average the weights of several checkpoints of one network (uniform checkpoint averaging, as in SWA).

    Every floating-point tensor (weights, biases, batch-norm statistics) becomes the mean over the files; integer
    tensors (batch-norm step counters) are taken from the last file. Averaging the checkpoints of the second half
    of a run smooths the checkpoint-to-checkpoint wander of a self-supervised run (docs/stereo.md measured
    +-0.2 px EPE between checkpoints 250 steps apart).

    Args:
        paths: safetensors files written by :func:`save_weights` for the same architecture and configuration.
        out: output safetensors file; its metadata lists the sources under ``averaged_from``.

    Returns:
        the averaged network (eval mode, CPU).

    Raises:
        ValueError: for no paths, or files whose configurations differ (other than ``max_disparity``).
        WeightsError: for a missing or unreadable file (see :func:`load_weights`).
    """
    if not paths:
        raise ValueError("average_weights needs at least one weights file")
    models = [load_weights(path) for path in paths]
    reference = dict(models[0].config, max_disparity=None)
    for path, model in zip(paths, models):
        if dict(model.config, max_disparity=None) != reference:
            raise ValueError(f"{path} has the configuration {model.config}, unlike {paths[0]}: {models[0].config}")
    states = [model.state_dict() for model in models]
    averaged = {key: (torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
                      if value.dtype.is_floating_point else states[-1][key])
                for key, value in states[0].items()}
    result = models[-1]
    result.load_state_dict(averaged)
    save_weights(result, out, {"averaged_from": [str(Path(path).name) for path in paths]})
    return result


def write_loss_log(history: list[dict], out: Path) -> None:
    """Write ``<out>.losses.csv`` (one row per step) and ``<out>.losses.png`` (loss curve per stage)."""
    if not history:
        return
    csv_path = out.with_name(out.stem + ".losses.csv")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([row["step"] for row in history])
    window = max(1, len(history) // 50)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for key in ("stage0", "stage1", "stage2", "stage3", "total"):
        values = np.array([row.get(key, np.nan) for row in history], dtype=float)
        if window > 1:
            values = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot(steps[len(steps) - len(values):], values, label=key)
    axis.set_xlabel("step")
    axis.set_ylabel(f"self-supervised loss (moving mean of {window})")
    axis.set_title("train-stereo: photometric + smoothness loss per stage")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out.with_name(out.stem + ".losses.png"))
    plt.close(figure)


def model_card(options: TrainStereoOptions, history: list[dict], device: torch.device, pairs: int) -> dict:
    """Facts about a training run: data, steps, crop, wall time, machine, final losses (mean of the last 50)."""
    last = history[-50:]
    final = {key: float(np.mean([row[key] for row in last])) for key in ("total", "stage0", "stage1", "stage2",
                                                                         "stage3", "appearance3")} if last else {}
    options_dict = asdict(options)
    options_dict.pop("extra", None)
    return {
        "architecture": ARCHITECTURE,
        "paper": "Real-Time Coarse-To-Fine Depth Estimation on Stereo Endoscopic Images with Self-Supervised "
                 "Learning (AnyNet-style, 4 stages)",
        "data": [str(d) for d in options.data],
        "ground_truth_used": False,
        "pairs_trained_on": pairs,
        "held_out_pairs": options.exclude,
        "initialised_from": options.init,
        "steps": options.steps,
        "batch_size": options.batch_size,
        "crop": list(options.crop),
        "scale_range": list(options.scale_range),
        "disparity_shift": list(options.disparity_shift),
        "seed": options.seed,
        "options": options_dict,
        "wall_time_s": history[-1]["seconds"] if history else 0.0,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "final_losses": final,
        **options.extra,
    }
