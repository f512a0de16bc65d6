"""Self-supervised training of :class:`CoarseToFineStereoNet` on rectified pairs (no ground truth anywhere).

Runs on the generic :class:`stereo_depth_ros.training.trainer.Trainer`: this module builds the network, the Adam
optimiser with its cosine learning-rate decay and the dataset, and gives the Trainer the loss callback
(:func:`stereo_loss_callback`: photometric + smoothness per stage, optional left-right consistency) whose names
are the CSV columns ``total, stage0..stage3, appearance3`` (then ``lr, seconds`` from the Trainer).

Deterministic for a seed: the crops and augmentations of item ``k`` depend on ``seed + k`` only, batches are drawn
in a fixed order from a seeded permutation, and PyTorch runs with deterministic algorithms. Checkpoints are
safetensors files (weights, Adam state, scheduler, step, random generators) so a run resumes exactly where it
stopped, without pickle.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from stereo_depth_ros.data.stereo_folder import ScaredKeyframeDataset, read_pair_list
from stereo_depth_ros.device import resolve_device
from stereo_depth_ros.losses import PhotometricLossConfig, masked_proxy_loss, self_supervised_stereo_loss
from stereo_depth_ros.models.coarse_to_fine import (ARCHITECTURE, NUM_STAGES, CoarseToFineStereoNet, load_weights,
                                                    save_weights)
from stereo_depth_ros.resources import check_training_folders
from stereo_depth_ros.training.model_card import machine_facts, mean_of_last_steps, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, average_state_dicts, start_run

MODEL_NAME = "network"  # the Trainer's name of the one model (checkpoint tensors ``model.network.*``)


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
        stage3: stage-3 design (:data:`~stereo_depth_ros.models.coarse_to_fine.STAGE3_DESIGNS`; None = that of
            ``init``, or the refinement CNN); with ``init`` of the other design, the new stage 3 starts random.
        stage3_radius, stage3_layers: residual range and 3D layers of a cost-volume stage 3 (None: the network's
            defaults, or those of ``init``).
        init: weights (safetensors) to start from instead of a random initialisation (fine-tuning); the model
            card records it.
        exclude: pair list file (see ``data.stereo_folder.read_pair_list``) of held-out pairs never trained on.
        stop_at: stop after this step with a checkpoint (the schedule still spans ``steps``), to split a long
            run into sessions that ``resume`` continues; None runs to ``steps``.
        keep_weights: at every checkpoint also write the weights alone as ``<out stem>.step<N>.safetensors``
            (for :func:`average_weights`).
        proxy_weight: weight of the proxy supervision (issue 15): the smooth-L1 distance of every stage's disparity
            to the confident SGBM disparity (:func:`stereo_depth_ros.losses.masked_proxy_loss`, weighted per stage
            by the stage weights) added to the self-supervised loss; 0 = off (plain self-supervised training).
        proxy_max_disparity: SGBM search range of the proxies in pixels (a multiple of 16).
        proxy_cache: folder where the proxies are cached (computed once per pair; gitignored ``runs/``).
        cross_spectral: probability (0..1) that an item's left view reaches the network as a random single-band
            grey rendering (:func:`cross_spectral_left`) while the loss still compares the colour views: training
            for a left camera of another spectral band (a NIR/RGB rig); 0 = off. The renderings come from their
            own generator seeded with ``seed``: a resumed run draws them afresh from the seed, so with
            ``cross_spectral > 0`` it is not bit-identical to an uninterrupted run.
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
    stage3: str | None = None
    stage3_radius: int | None = None
    stage3_layers: int | None = None
    progress: bool = True
    keep_weights: bool = False
    proxy_weight: float = 0.0
    proxy_max_disparity: int = 192
    proxy_cache: str = "runs/proxy_cache"
    cross_spectral: float = 0.0
    extra: dict = field(default_factory=dict)


def cosine_decay_factor(step: int, steps: int) -> float:
    """The learning-rate factor of ``step`` (0-based): cosine decay from 1 to 0.01 over ``steps``, then 0.01."""
    progress = min(step / max(steps, 1), 1.0)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))


def learning_rate(step: int, options: TrainStereoOptions) -> float:
    """Cosine decay from ``lr`` to ``0.01 * lr`` over ``steps``: ``lr * cosine_decay_factor(step, steps)``."""
    return options.lr * cosine_decay_factor(step, options.steps)


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

    ``options.cost_layers`` may give a stage more 3D convolutions than ``init`` has, and ``options.stage3`` another
    stage-3 design; tensors that ``init`` does not have (by name and shape) keep their random initialisation, and
    they must belong to a stage that trains (``>= first_trained_stage``); ``init`` tensors the network does not
    have (the other stage 3's) are left out.

    Raises:
        ValueError: if a new tensor belongs to a frozen stage.
        WeightsError: for an unreadable ``init`` file.
    """
    overrides = {"cost_layers": list(options.cost_layers)} if options.cost_layers else {}
    for name in ("stage3", "stage3_radius", "stage3_layers"):
        if getattr(options, name) is not None:  # a bad value reaches the network's own check
            overrides[name] = getattr(options, name)
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
        raise ValueError(f"--cost-layers or --stage3 changes a frozen stage (< {options.first_trained_stage}): "
                         f"{changed_frozen}")
    model.load_state_dict({key: value if key in new else initial[key] for key, value in state.items()})
    return model


def cross_spectral_left(left: torch.Tensor, probability: float, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """The network's left input for cross-spectral training (``train-stereo --cross-spectral``; beyond the
    papers, in the spirit of RAFT-Stereo's asymmetric chromatic augmentation).

    With ``probability`` each item is replaced by a grey rendering through a random spectral response: ``g = (w .
    rgb) ** gamma * gain`` with channel weights ``w ~ Dirichlet(1, 1, 1)``, ``gamma ~ U(0.6, 1.6)``,
    ``gain ~ U(0.7, 1.3)``, clipped to [0, 1] and replicated to three channels, as a camera of another band (a NIR
    camera beside an RGB one) might see the scene. The photometric loss keeps the colour views, so the network must
    match across the change instead of relying on colour.

    Args:
        left: (B, 3, H, W) float RGB in [0, 1].
        probability: in [0, 1].
        generator: torch random generator (repeatable runs), or None for the global one.

    Returns:
        (B, 3, H, W), the input itself where no item is chosen.

    Raises:
        ValueError: for a probability outside [0, 1] or a left view that is not (B, 3, H, W).

    Example:
        >>> left = torch.rand(2, 3, 4, 5)
        >>> out = cross_spectral_left(left, 1.0, torch.Generator().manual_seed(0))
        >>> bool(torch.equal(out[:, 0], out[:, 2])), bool(torch.equal(cross_spectral_left(left, 0.0), left))
        (True, True)
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"cross_spectral probability must be in [0, 1], got {probability}")
    if left.ndim != 4 or left.shape[1] != 3:
        raise ValueError(f"left view must be (B, 3, H, W), got {tuple(left.shape)}")
    if probability == 0.0:
        return left
    batch = left.shape[0]
    chosen = torch.rand(batch, generator=generator) < probability
    exponential = -torch.log(torch.rand(batch, 3, generator=generator).clamp_min(1e-12))
    weights = (exponential / exponential.sum(1, keepdim=True)).to(left)  # Dirichlet(1, 1, 1)
    gamma = (0.6 + torch.rand(batch, generator=generator)).to(left)
    gain = (0.7 + 0.6 * torch.rand(batch, generator=generator)).to(left)
    grey = (left * weights[:, :, None, None]).sum(1, keepdim=True).clamp_min(1e-6)
    grey = (grey ** gamma[:, None, None, None] * gain[:, None, None, None]).clamp(0.0, 1.0)
    return torch.where(chosen.to(left.device)[:, None, None, None], grey.expand_as(left), left)


def stereo_loss_callback(config: PhotometricLossConfig, proxy_weight: float = 0.0, cross_spectral: float = 0.0,
                         seed: int = 0):
    """The Trainer's loss callback for the coarse-to-fine network (:func:`self_supervised_stereo_loss`).

    The batch holds ``left``, ``right``: (B, 3, h, w) float32 RGB in [0, 1] and ``valid``: (B, 1, h, w) 0/1 (see
    :class:`StereoFolderDataset`). With ``config.left_right_weight > 0`` the network also runs on the mirrored,
    swapped pair to get the right view's disparities (twice the cost of a step). With ``proxy_weight > 0`` the
    batch must also hold ``proxy`` and ``proxy_mask`` (B, 1, h, w) (:class:`ProxyStereoDataset`), and the total
    gains ``proxy_weight * sum_s stage_weights[s] * masked_proxy_loss(d_s, proxy, proxy_mask)``. With
    ``cross_spectral > 0`` the network sees :func:`cross_spectral_left` of the left view (random generator seeded
    with ``seed``); the loss is computed on the colour views.

    Returns:
        ``loss(batch, trainer) -> {"total": scalar tensor (minimised), "stage0".."stage3": float (each stage's
        loss, before the stage weights), "appearance3": float (the finest stage's appearance term)}``, plus
        ``"proxy3"`` (the finest stage's proxy loss, pixels) with ``proxy_weight > 0``.

    Raises:
        ValueError: with ``proxy_weight > 0``, for a batch without ``proxy`` and ``proxy_mask``.
    """
    generator = torch.Generator().manual_seed(seed)

    def loss(batch: dict, trainer: Trainer) -> dict:
        model = trainer.models[MODEL_NAME]
        left, right, valid = batch["left"], batch["right"], batch["valid"]
        stages = model(cross_spectral_left(left, cross_spectral, generator), right)
        right_stages = None
        if config.left_right_weight > 0:
            flipped = model(right.flip(-1), left.flip(-1))
            right_stages = [disparity.flip(-1) for disparity in flipped]
        losses = self_supervised_stereo_loss(left, right, stages, valid, config, right_stages)
        result = {"total": losses.total, **{f"stage{i}": value for i, value in enumerate(losses.per_stage)},
                  f"appearance{len(losses.appearance) - 1}": losses.appearance[-1]}
        if proxy_weight > 0:
            if "proxy" not in batch or "proxy_mask" not in batch:
                raise ValueError("proxy_weight > 0 needs batches with 'proxy' and 'proxy_mask' (ProxyStereoDataset)")
            # labels beyond the network's search range cannot be reached: left out
            reachable = (batch["proxy"] < model.config["max_disparity"]).to(valid.dtype)
            proxy_mask = batch["proxy_mask"] * valid * reachable
            proxy_losses = [masked_proxy_loss(disparity, batch["proxy"], proxy_mask) for disparity in stages]
            result["total"] = result["total"] + proxy_weight * sum(
                weight * value for weight, value in zip(config.stage_weights, proxy_losses))
            result[f"proxy{len(proxy_losses) - 1}"] = float(proxy_losses[-1].detach())
        return result

    return loss


#: Beyond the package-wide evaluation-only folders: every BDIS synthetic set is a GT test set of the stereo network
#: (``eval-dataset bdis-synthetic``, 78 pairs).
STEREO_TEST_FOLDERS = {"endoscopic_stereo/bdis_synthetic": "the stereo network's GT test data (eval-dataset "
                                                           "bdis-synthetic, sets 30-33)"}


def train_stereo(options: TrainStereoOptions) -> dict:
    """Train the coarse-to-fine network self-supervised; write weights, CSV, PNG, checkpoint and model card.

    Returns:
        the model card (dict) that was written beside the weights (with the weights' ``sha256``).

    Raises:
        FileNotFoundError: if a data folder does not exist or holds no stereo pairs, or the resume checkpoint is
            missing.
        ValueError: for invalid options (crop larger than an image, unknown device, smoothness weights, a first
            trained stage without init weights), a checkpoint of another run, or test data among the folders
            (:func:`~stereo_depth_ros.resources.check_training_folders`, plus every BDIS synthetic set).
    """
    # Options that need no file: checked before any data or weights are read.
    check_training_folders(options.data, "train-stereo", also=STEREO_TEST_FOLDERS)
    loss_config = PhotometricLossConfig(smoothness_weight=options.smoothness_weight,
                                        left_right_weight=options.left_right_weight)
    if options.first_trained_stage and not options.init:
        raise ValueError("first_trained_stage > 0 freezes earlier stages: it needs init weights to start from")
    if not 0.0 <= options.cross_spectral <= 1.0:
        raise ValueError(f"cross_spectral must be a probability in [0, 1], got {options.cross_spectral}")
    if not (math.isfinite(options.proxy_weight) and options.proxy_weight >= 0):
        raise ValueError(f"proxy_weight must be finite and >= 0, got {options.proxy_weight}")
    proxy_sgbm = None
    if options.proxy_weight > 0:
        from stereo_depth_ros.evaluation.proxy_validation import ConfidentSGBMConfig

        proxy_sgbm = ConfidentSGBMConfig(max_disparity=options.proxy_max_disparity)
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, keep_weights=options.keep_weights,
        backward="total", progress=options.progress, description="train-stereo", progress_keys=("total", "stage3"),
        plot_title="train-stereo: photometric + smoothness loss per stage", plot_ylabel="self-supervised loss")
    start_run(trainer_options, options.threads, options.seed)
    device = resolve_device(options.device)
    out = Path(options.out)
    dataset_options = dict(crop=tuple(options.crop), augment=True,
                           samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                           scale_range=tuple(options.scale_range), shift_range=tuple(options.disparity_shift),
                           exclude=read_pair_list(options.exclude) if options.exclude else None)
    if proxy_sgbm is None:
        dataset = ScaredKeyframeDataset(options.data, **dataset_options)
    else:
        from stereo_depth_ros.training.proxy_supervision import ProxyStereoDataset

        dataset = ProxyStereoDataset(options.data, sgbm=proxy_sgbm, cache=options.proxy_cache, **dataset_options)
    model = initial_model(options).to(device).train()
    optimizer = torch.optim.Adam(freeze_stages_before(model, options.first_trained_stage), lr=options.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_decay_factor(step, options.steps))

    def train_mode(name: str, module: CoarseToFineStereoNet) -> None:
        module.train()
        freeze_stages_before(module, options.first_trained_stage)  # frozen stages back in eval mode

    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=stereo_loss_callback(loss_config, options.proxy_weight, options.cross_spectral,
                                                options.seed), train_dataset=dataset,
                      schedulers={MODEL_NAME: scheduler}, train_mode=train_mode, device=device,
                      weights_writers=lambda module, path, metadata: save_weights(module, path, metadata))
    training_facts = {"data": [str(d) for d in options.data], "steps": options.steps, "crop": list(options.crop),
                      "seed": options.seed}
    with tempfile.TemporaryDirectory() as folder:
        resume = options.resume and _trainer_checkpoint(Path(options.resume), trainer, Path(folder))
        history = trainer.fit(resume=resume, weights_metadata={"training": training_facts})
    card = model_card(options, history, device, len(dataset.pairs))
    return json.loads(write_model_card(out, card).read_text())


def _trainer_checkpoint(path: Path, trainer: Trainer, folder: Path) -> Path:
    """``path`` itself, or for a checkpoint of the train-stereo of before the Trainer (tensors ``model.*`` and
    ``adam.<i>.*``, metadata ``step`` and ``history``) the same state written in the Trainer's format in ``folder``.
    """
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            if "format" in metadata:
                return path
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"checkpoint {path} is not a readable safetensors file (truncated?): {error}") from error
    if "step" not in metadata or "history" not in metadata or not any(key.startswith("model.") for key in tensors):
        raise ValueError(f"checkpoint {path} is neither a Trainer checkpoint nor one of the earlier train-stereo")
    model, optimizer = trainer.models[MODEL_NAME], trainer.optimizers[MODEL_NAME]
    model.load_state_dict({key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")})
    for index, parameter in enumerate(model.parameters()):
        if f"adam.{index}.exp_avg" in tensors:
            optimizer.state[parameter] = {
                "step": tensors[f"adam.{index}.step"][0].clone(),
                "exp_avg": tensors[f"adam.{index}.exp_avg"].to(parameter.device),
                "exp_avg_sq": tensors[f"adam.{index}.exp_avg_sq"].to(parameter.device)}
    step = int(metadata["step"])
    scheduler = trainer.schedulers[MODEL_NAME]
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended, no step is replayed
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(step):  # the learning rate the old code set for the next step
            scheduler.step()
    trainer.history, trainer.steps_done = json.loads(metadata["history"]), step
    return trainer.save_checkpoint(folder / path.name)


def average_weights(paths: list[str | Path], out: str | Path) -> CoarseToFineStereoNet:
    """Average the weights of several checkpoints of one network (uniform checkpoint averaging, as in SWA).

    Every floating-point tensor (weights, biases, batch-norm statistics) becomes the mean over the files; integer
    tensors (batch-norm step counters) are taken from the last file (:func:`average_state_dicts`). Averaging the
    checkpoints of the second half of a run smooths the checkpoint-to-checkpoint wander of a self-supervised run
    (docs/stereo.md measured +-0.2 px EPE between checkpoints 250 steps apart).

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
    result = models[-1]
    result.load_state_dict(average_state_dicts([model.state_dict() for model in models]))
    save_weights(result, out, {"averaged_from": [str(Path(path).name) for path in paths]})
    return result


def model_card(options: TrainStereoOptions, history: list[dict], device: torch.device, pairs: int) -> dict:
    """Facts about a training run: data, steps, crop, wall time, machine, final losses (mean of the last 50)."""
    final = mean_of_last_steps(history, 50, ("total", "stage0", "stage1", "stage2", "stage3", "appearance3")
                               + (("proxy3",) if options.proxy_weight > 0 else ()))
    options_dict = asdict(options)
    options_dict.pop("extra", None)
    return {
        "architecture": ARCHITECTURE,
        "paper": "Real-Time Coarse-To-Fine Depth Estimation on Stereo Endoscopic Images with Self-Supervised "
                 "Learning (AnyNet-style, 4 stages)",
        "data": [str(d) for d in options.data],
        "ground_truth_used": False,
        "proxy_supervision": ({"weight": options.proxy_weight, "labels": "confident SGBM (left-right <= 1 px, "
                               "uniqueness 15 %, speckle filter; evaluation.proxy_validation)",
                               "sgbm_max_disparity": options.proxy_max_disparity}
                              if options.proxy_weight > 0 else None),
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
        "machine": machine_facts(device),
        "final_losses": final,
        **options.extra,
    }
