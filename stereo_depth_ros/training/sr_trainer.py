"""Training of the stereo super-resolution network and its single-image baseline on the
:class:`~stereo_depth_ros.training.trainer.Trainer` (``stereo-depth-ros train-sr``).

Data: real rectified endoscopic stereo pairs (:class:`SuperResolutionPairDataset`); the high-resolution (HR)
target is a random window of the rectified pair (the window with the most non-black pixels among 4 candidates, so
crops of frames with a black border hold tissue); the low-resolution (LR) input is its bicubic downscale with
antialiasing, rounded to 8 bits (:func:`stereo_depth_ros.models.stereo_sr.bicubic_downscale`), the degradation
``eval-sr`` uses too. The held-out BDIS in-vivo pairs (``config/splits/bdis_invivo_test.txt``) are excluded.

Loss (after iPASSR, Wang et al., CVPRW 2021, section 3.3, with the weights of its code):
``total = L1(sr_left, hr_left) + L1(sr_right, hr_right) + attention_weight * (photometric + cycle + smoothness)``
where, on the LR pair and the parallax attention maps of :class:`~stereo_depth_ros.models.stereo_sr.BiPAM`:

- photometric: ``mean |W_left * (lr_left - M_right_to_left (x) lr_right)|`` + the same for the right view;
- cycle: ``mean |W_left * (M_right_to_left M_left_to_right - I)|`` + the same for the right view;
- smoothness: mean absolute difference of each attention map between vertically neighbouring rows and between
  diagonal neighbours ``(i, j)`` and ``(i + 1, j + 1)``.

The loss masks ``W`` (``attention_loss_mask``):

- ``"visibility"`` (the default since 2026-11-27): PASSRnet's (Wang et al., CVPR 2019, section 3.3) visibility masks,
  without gradient: a left pixel ``i`` counts where the right view attends to it, ``sum_j M_left_to_right[j, i] >
  0.1`` (the right view likewise). An untrained, spread attention sees every pixel as visible, so the attention
  terms drive the matching from the first step; occluded pixels drop out once it has learnt.
- ``"valid"``: the network's own valid masks ``V`` (iPASSR's code, and the packaged weights of before
  2026-11-27). ``V = tanh(5 * diag(M_right_to_left M_left_to_right))`` starts near zero for a spread attention, so
  the terms then give the attention almost no gradient (and pull ``V`` itself down): in our short runs the attention
  of the weights trained this way stayed spread over the whole row and biPAM added nothing.

Beyond iPASSR, for runs of minutes on a CPU (docs/super_resolution.md measures each):

- ``attention_proxy_weight * attention_proxy_loss``: a cross-entropy of the attention at the confident SGBM matches
  of the LR patch (:func:`lr_proxy_disparities`), so that the attention learns to match within a few hundred steps;
- ``detach_attention_input``: the attention's terms train biPAM alone, never the per-view features the
  reconstruction uses;
- ``init`` with single-image weights (:func:`initial_network`): the stereo network starts as the trained baseline,
  its fusion weights for the other view at zero.

The single-image baseline has no attention maps; its loss is the L1 term only.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stereo_depth_ros.data.folder_dataset import Sample, read_pair_list
from stereo_depth_ros.data.stereo_folder import StereoFolderDataset
from stereo_depth_ros.models.stereo_sr import SINGLE_ARCHITECTURE, STEREO_ARCHITECTURE, bicubic_downscale, \
    build_network, check_scale, warp_with_attention
from stereo_depth_ros.models.weights import WeightsError, load_weights, read_architecture, save_weights
from stereo_depth_ros.resources import check_training_folders, default_data_root, split_file
from stereo_depth_ros.training.model_card import run_facts, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, start_run

MODEL_NAME = "network"
DEFAULT_DATA_ROOT = default_data_root() / "endoscopic_stereo"
DEFAULT_SETS = ("bdis_invivo/6", "bdis_invivo/20", "bdis_invivo/21", "hamlyn_invivo_tpsnet")


class SuperResolutionPairDataset(StereoFolderDataset):
    """HR crops of rectified stereo pairs with their bicubic LR versions.

    Args:
        roots, exclude, seed, samples_per_epoch: as :class:`~stereo_depth_ros.data.stereo_folder.StereoFolderDataset`.
        scale: 2 or 4.
        patch: (height, width) of the LR patch in pixels; the HR crop is ``scale`` times larger.

        proxy: with True, each item also carries the confident SGBM disparities of its LR patch
            (:func:`lr_proxy_disparities`), to supervise the parallax attention.

    Items: ``left``, ``right`` (3, scale*h, scale*w) float32 RGB in [0, 1] (HR); ``lr_left``, ``lr_right``
    (3, h, w) float32 RGB in [0, 1]; ``valid`` (1, scale*h, scale*w); ``name``; with ``proxy``: ``proxy_left``,
    ``proxy_right`` (1, h, w) float32 LR disparities in pixels, NaN where SGBM is not confident. No colour
    augmentation (it would change the degradation); no flip.

    Raises:
        ValueError: for a bad scale or patch; FileNotFoundError: as the base class.
    """

    def __init__(self, roots, scale: int, patch: tuple[int, int] = (32, 64), exclude: list[str] | None = None,
                 samples_per_epoch: int | None = None, seed: int = 0, proxy: bool = False) -> None:
        self.scale = check_scale(scale)
        self.proxy = bool(proxy)
        if len(patch) != 2 or any(int(p) != p or p <= 0 for p in patch):
            raise ValueError(f"patch must be (height, width) positive pixels, got {tuple(patch)}")
        super().__init__(roots, crop=(int(patch[0]) * self.scale, int(patch[1]) * self.scale), augment=False,
                         samples_per_epoch=samples_per_epoch, seed=seed, exclude=exclude)

    def to_float(self, sample: Sample) -> Sample:
        sample = dict(sample)
        sample["lr_left"] = bicubic_downscale(np.ascontiguousarray(sample["left"]), self.scale)
        sample["lr_right"] = bicubic_downscale(np.ascontiguousarray(sample["right"]), self.scale)
        if self.proxy:
            sample["proxy_left"], sample["proxy_right"] = lr_proxy_disparities(sample["lr_left"], sample["lr_right"],
                                                                               self.scale)
        return super().to_float(sample)


def proxy_search_range(scale: int) -> int:
    """SGBM's search range for the attention proxies of an LR patch at ``scale`` (:func:`lr_proxy_disparities`).

    Example:
        >>> proxy_search_range(2), proxy_search_range(4)
        (48, 32)
    """
    return 16 * math.ceil(96 / check_scale(scale) / 16)


def lr_proxy_disparities(lr_left: np.ndarray, lr_right: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Confident SGBM disparities of an LR patch pair (:func:`stereo_depth_ros.evaluation.proxy_validation.
    confident_sgbm`: unique, not speckle, left-right consistent within 1 px), the proxy labels of the attention term.

    The search range (:func:`proxy_search_range`) is 96 HR pixels (every training rig's disparities are below it:
    BDIS in-vivo 20-50, Hamlyn 64-93) divided by the scale and rounded up to 16: 48 px at x2, 32 px at x4; block 3
    for the small patches. Only the middle of the patch can be confident (SGBM gives the left view no value in its
    first ``search`` columns and the right view none in its last, and the left-right check needs both): about
    ``w - 2 search + d`` columns, so patches should be much wider than ``2 search``.

    Args:
        lr_left, lr_right: (h, w, 3) uint8 BGR LR patches. scale: 2 or 4.

    Returns:
        ``(left, right)``: (h, w) float32 disparities in LR pixels (left: match at ``x - d`` in the right view;
        right: match at ``x + d`` in the left view), NaN where not confident.

    Raises:
        ValueError: for a patch not wider than the search range, or not a uint8 BGR pair of one size.
    """
    from stereo_depth_ros.evaluation.proxy_validation import ConfidentSGBMConfig, confident_sgbm

    result = confident_sgbm(lr_left, lr_right, ConfidentSGBMConfig(max_disparity=proxy_search_range(scale),
                                                                   block_size=3))
    return result.left, result.right


@dataclass
class TrainSuperResolutionOptions:
    """Options of ``stereo-depth-ros train-sr``.

    Attributes:
        scale: 2 or 4. model: "stereo" (with parallax attention) or "single" (the single-image baseline).
        data: set folders (default: BDIS in-vivo 6, 20, 21 and the Hamlyn pairs under ``../shared/data``).
        exclude: pair-list file of held-out pairs (default ``config/splits/bdis_invivo_test.txt``).
        out: output weights ``.safetensors``; logs, checkpoint and model card go beside it.
        steps, batch_size, lr (Adam, constant), seed, checkpoint_every, stop_at, resume: as for the Trainer.
        patch: LR patch (height, width) in pixels. attention_weight: weight of the attention terms.
        attention_loss_mask: ``"visibility"`` or ``"valid"``: which masks weight those terms (module docstring).
        attention_proxy_weight: weight of :func:`attention_proxy_loss` (0 = off; stereo model only).
        detach_attention_input: train biPAM's matching on features without gradient
            (:attr:`~stereo_depth_ros.models.stereo_sr.BiPAM.detach_input`; stereo model only).
        fusion_lr_scale: learning-rate factor of the refinement block's fusion convolution
            (:func:`fusion_parameter_groups`; both models).
        trainable: ``"all"`` (every tensor) or ``"fusion"``: only the refinement block's fusion convolution and,
            for the stereo model, biPAM learn; every other tensor stays as ``init`` gave it
            (:func:`freeze_all_but_fusion`), so a stereo and a single-image network fine-tuned alike from equal
            features differ only by what the other view's features add.
        channels, growth, rdb_layers, num_rdb, num_rdb_reconstruction: network sizes.
        threads: CPU threads (0 = PyTorch's default). progress: show a progress bar.
        init: weights to start from (fine-tuning, e.g. with wider patches); their configuration replaces the
            network sizes above and must have this ``scale`` and ``model``; a stereo network may also start from
            single-image weights (:func:`initial_network`).
    """

    scale: int
    out: str
    model: str = "stereo"
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA_ROOT / s) for s in DEFAULT_SETS])
    exclude: str | None = field(default_factory=lambda: str(split_file()))
    steps: int = 1000
    batch_size: int = 4
    patch: tuple[int, int] = (32, 64)
    lr: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 50
    stop_at: int | None = None
    resume: str | None = None
    attention_weight: float = 0.1
    attention_loss_mask: str = "visibility"
    attention_proxy_weight: float = 0.0
    detach_attention_input: bool = False
    fusion_lr_scale: float = 1.0
    trainable: str = "all"
    channels: int = 32
    growth: int = 16
    rdb_layers: int = 3
    num_rdb: int = 2
    num_rdb_reconstruction: int = 1
    threads: int = 0
    progress: bool = True
    init: str | None = None


ATTENTION_LOSS_MASKS = ("visibility", "valid")
#: ``TrainSuperResolutionOptions.trainable`` values.
TRAINABLE = ("all", "fusion")
VISIBILITY_THRESHOLD = 0.1


def visibility_masks(right_to_left: torch.Tensor, left_to_right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PASSRnet's visibility masks of the two views (module docstring), without gradient.

    Args:
        right_to_left, left_to_right: (B, H, W, W) float parallax attention maps (rows sum to 1).

    Returns:
        ``(visible_left, visible_right)``, each (B, 1, H, W) float 0/1: a left pixel is visible where the right
        view's attention into it sums to more than 0.1 (``sum_j left_to_right[b, y, j, i]``), and likewise.

    Example:
        >>> spread = torch.full((1, 1, 4, 4), 0.25)
        >>> [m.flatten().tolist() for m in visibility_masks(spread, spread)]
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    with torch.no_grad():
        visible_left = (left_to_right.sum(2) > VISIBILITY_THRESHOLD).to(left_to_right.dtype).unsqueeze(1)
        visible_right = (right_to_left.sum(2) > VISIBILITY_THRESHOLD).to(right_to_left.dtype).unsqueeze(1)
    return visible_left, visible_right


def attention_losses(attention: dict, lr_left: torch.Tensor, lr_right: torch.Tensor,
                     loss_mask: str = "visibility") -> dict[str, torch.Tensor]:
    """iPASSR's photometric, cycle and smoothness terms (module docstring) of :class:`BiPAM`'s attention dict and
    the (B, 3, h, w) LR views; each a scalar tensor. ``loss_mask``: ``"visibility"`` or ``"valid"`` (module
    docstring).

    Raises:
        ValueError: for another ``loss_mask``.
    """
    right_to_left, left_to_right = attention["right_to_left"], attention["left_to_right"]
    if loss_mask == "visibility":
        valid_left, valid_right = visibility_masks(right_to_left, left_to_right)
    elif loss_mask == "valid":
        valid_left, valid_right = attention["valid_left"], attention["valid_right"]
    else:
        raise ValueError(f"attention loss mask must be one of {ATTENTION_LOSS_MASKS}, got {loss_mask!r}")
    photometric = ((valid_left * (lr_left - warp_with_attention(right_to_left, lr_right))).abs().mean()
                   + (valid_right * (lr_right - warp_with_attention(left_to_right, lr_left))).abs().mean())
    width = right_to_left.shape[-1]
    identity = torch.eye(width, device=right_to_left.device, dtype=right_to_left.dtype)
    cycle = 0.0
    for here, back, valid in ((right_to_left, left_to_right, valid_left), (left_to_right, right_to_left, valid_right)):
        product = torch.matmul(here, back)
        cycle = cycle + (valid[:, 0, :, :, None] * (product - identity)).abs().mean()
    smoothness = 0.0
    for m in (right_to_left, left_to_right):
        smoothness = smoothness + (m[:, :-1] - m[:, 1:]).abs().mean() + (m[:, :, :-1, :-1] - m[:, :, 1:, 1:]).abs().mean()
    return {"photometric": photometric, "cycle": cycle, "smoothness": smoothness}


def attention_proxy_loss(attention: dict, proxy_left: torch.Tensor, proxy_right: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the parallax attention at the proxy matches: for each left pixel ``i`` with a proxy
    disparity ``d``, ``-[(1 - f) log M_right_to_left[i, c0] + f log M_right_to_left[i, c0 + 1]]`` where the match
    ``c = i - d = c0 + f`` (linear split between the two neighbouring columns), and the same for the right view
    (match ``j + d`` in the left view); the mean over the pixels whose match lies inside the patch.

    This supervises the attention as stereo matching is supervised by proxy labels (confident SGBM, as in
    ``train-stereo --proxy-weight``); the photometric terms alone train it too slowly for our short runs.

    Args:
        attention: :class:`~stereo_depth_ros.models.stereo_sr.BiPAM`'s dict (``right_to_left``, ``left_to_right``:
            (B, h, w, w)).
        proxy_left, proxy_right: (B, 1, h, w) float LR disparities in pixels, NaN where unknown.

    Returns:
        a scalar tensor (0 when no pixel has a usable proxy).

    Example:
        >>> import torch
        >>> sharp = torch.eye(4).reshape(1, 1, 4, 4) * 0.97 + 0.01
        >>> zero = torch.zeros(1, 1, 1, 4)
        >>> round(float(attention_proxy_loss({"right_to_left": sharp, "left_to_right": sharp}, zero, zero)), 3)
        0.02
    """
    total, count = proxy_left.new_zeros(()), 0
    for attention_map, proxy, direction in ((attention["right_to_left"], proxy_left, -1.0),
                                            (attention["left_to_right"], proxy_right, 1.0)):
        width = attention_map.shape[-1]
        columns = torch.arange(width, device=proxy.device, dtype=proxy.dtype).view(1, 1, 1, width)
        match = columns + direction * torch.nan_to_num(proxy, nan=-1e6)
        usable = torch.isfinite(proxy) & (match >= 0) & (match <= width - 1)
        if not bool(usable.any()):
            continue
        match = torch.where(usable, match, torch.zeros_like(match))[:, 0]
        lower = match.floor().clamp(0, width - 1)
        fraction = match - lower
        upper = (lower + 1).clamp(max=width - 1)
        log_attention = torch.log(attention_map.clamp_min(1e-8))
        picked_lower = log_attention.gather(-1, lower.long().unsqueeze(-1)).squeeze(-1)
        picked_upper = log_attention.gather(-1, upper.long().unsqueeze(-1)).squeeze(-1)
        cross_entropy = -((1 - fraction) * picked_lower + fraction * picked_upper)
        total = total + cross_entropy[usable[:, 0]].sum()
        count += int(usable.sum())
    return total / max(count, 1)


def sr_loss_callback(attention_weight: float, loss_mask: str = "visibility", proxy_weight: float = 0.0):
    """The Trainer's loss callback: ``{"total", "l1", "photometric", "cycle", "smoothness", "attention_proxy"}``
    (the attention terms log 0 for the single-image network; ``attention_proxy``, weighted by ``proxy_weight``, needs
    the dataset's ``proxy_left`` and ``proxy_right`` and logs 0 when ``proxy_weight`` is 0)."""

    def loss(batch: dict, trainer: Trainer) -> dict:
        network = trainer.models[MODEL_NAME]
        sr_left, sr_right, attention = network(batch["lr_left"], batch["lr_right"], return_attention=True)
        l1 = (sr_left - batch["left"]).abs().mean() + (sr_right - batch["right"]).abs().mean()
        total = l1
        logged = {"photometric": 0.0, "cycle": 0.0, "smoothness": 0.0, "attention_proxy": 0.0}
        if attention:
            terms = attention_losses(attention, batch["lr_left"], batch["lr_right"], loss_mask)
            total = total + attention_weight * sum(terms.values())
            logged.update({name: float(value.detach()) for name, value in terms.items()})
            if proxy_weight > 0:
                proxy = attention_proxy_loss(attention, batch["proxy_left"], batch["proxy_right"])
                total = total + proxy_weight * proxy
                logged["attention_proxy"] = float(proxy.detach())
        return {"total": total, "l1": float(l1.detach()), **logged}

    return loss


def write_network(module, path: Path, metadata: dict) -> None:
    """Write the network with :func:`stereo_depth_ros.models.weights.save_weights` (architecture and config)."""
    save_weights(module, path, module.ARCHITECTURE, module.config, metadata)


def initial_network(path: str | Path, scale: int, stereo: bool) -> torch.nn.Module:
    """The network stored in ``path`` (platform weights format), to fine-tune.

    A stereo network may also start from single-image weights: the single-image baseline is the stereo network
    without :class:`~stereo_depth_ros.models.stereo_sr.BiPAM` (same tensor names and shapes for everything else), so
    every one of its tensors is copied and only biPAM starts from its initialisation. The single-image network's
    refinement block reads ``[own, own]`` where the stereo one reads ``[own, fused]``; its 1x1 fusion weights
    ``[W_own, W_other]`` become ``[W_own + W_other, 0]``, so the stereo network starts with exactly the
    single-image network's output whatever biPAM gives, and training grows the weights of the other view's
    features only as far as they lower the loss (a zero-initialised branch, as ControlNet or ReZero start theirs).

    Raises:
        WeightsError: for a missing, changed or truncated file, or stereo weights asked for a single-image network.
        ValueError: if its scale is not ``scale``.
    """
    if stereo and read_architecture(path) == SINGLE_ARCHITECTURE:
        single, _ = load_weights(path, SINGLE_ARCHITECTURE, build_network)
        module = build_network({**single.config, "stereo": True})
        missing, unexpected = module.load_state_dict(single.state_dict(), strict=False)
        if unexpected or any(not name.startswith("bipam.") for name in missing):
            raise WeightsError(f"{path}: single-image tensors do not fit the stereo network (missing {missing}, "
                               f"unexpected {unexpected})")
        with torch.no_grad():
            fusion = module.refine[0].weight  # (C, 2C, 1, 1): input channels [own, other]
            channels = fusion.shape[1] // 2
            fusion[:, :channels] += fusion[:, channels:]
            fusion[:, channels:] = 0.0
    else:
        module, _ = load_weights(path, STEREO_ARCHITECTURE if stereo else SINGLE_ARCHITECTURE, build_network)
    if module.config["scale"] != scale:
        raise ValueError(f"{path}: weights for x{module.config['scale']}, but --scale is {scale}")
    return module


def fusion_parameter_groups(model: torch.nn.Module, lr: float, fusion_lr_scale: float = 1.0) -> list[dict]:
    """Adam parameter groups: the refinement block's 1x1 fusion convolution (which weighs the view's own and the
    fused features) at ``lr * fusion_lr_scale``, everything else at ``lr``. With weights started from the
    single-image network the fusion's weights for the other view start at zero (:func:`initial_network`) and grow
    by at most about ``lr`` per step under Adam; a larger scale lets them grow faster. The same groups are used for
    the single-image network, so a baseline trained with the same options stays comparable.

    Raises:
        ValueError: for a scale that is not positive.
    """
    if not fusion_lr_scale > 0:
        raise ValueError(f"fusion_lr_scale must be positive, got {fusion_lr_scale}")
    fusion = list(model.refine[0].parameters())
    fusion_ids = {id(parameter) for parameter in fusion}
    rest = [parameter for parameter in model.parameters() if id(parameter) not in fusion_ids]
    return [{"params": rest, "lr": lr}, {"params": fusion, "lr": lr * fusion_lr_scale}]


def freeze_all_but_fusion(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freeze every tensor of an SR network except the refinement block's 1x1 fusion convolution (own and fused
    features) and biPAM (stereo model); the frozen modules are also kept in eval mode by :func:`sr_train_mode`.

    Returns:
        the parameters that still learn.
    """
    trainable = list(model.refine[0].parameters()) + (list(model.bipam.parameters()) if model.bipam is not None
                                                      else [])
    keep = {id(parameter) for parameter in trainable}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    return trainable


def sr_train_mode(trainable: str):
    """The Trainer's ``train_mode`` hook: everything in train mode, or (``"fusion"``) the network in eval mode but
    for biPAM, so that no frozen module changes (the extractor has no batch norm; biPAM's batch norm learns)."""
    if trainable == "all":
        return None

    def train_mode(name: str, model: torch.nn.Module) -> None:
        model.eval()
        if model.bipam is not None:
            model.bipam.train()
    return train_mode


def train_super_resolution(options: TrainSuperResolutionOptions) -> dict:
    """Train the stereo or single-image SR network; write the weights, logs and model card.

    Returns:
        the model card written beside the weights.

    Raises:
        ValueError: for a bad scale, model or Trainer option, or test data among the folders
            (:func:`~stereo_depth_ros.resources.check_training_folders`); FileNotFoundError: for missing data.
    """
    scale = check_scale(options.scale)
    check_training_folders(options.data, "train-sr")
    if options.model not in ("stereo", "single"):
        raise ValueError(f"model must be 'stereo' or 'single', got {options.model!r}")
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, backward="total",
        progress=options.progress, description=f"train-sr x{scale} {options.model}", progress_keys=("total", "l1"),
        plot_title=f"train-sr x{scale} ({options.model}): L1 on both views + attention terms", plot_ylabel="loss")
    if options.trainable not in TRAINABLE:  # before any data or weights are read
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {options.trainable!r}")
    start_run(trainer_options, options.threads, options.seed)
    started = time.time()
    exclude = read_pair_list(options.exclude) if options.exclude else None
    if options.attention_proxy_weight < 0 or (options.attention_proxy_weight > 0 and options.model != "stereo"):
        raise ValueError(f"attention_proxy_weight must be >= 0 and applies to the stereo model only, got "
                         f"{options.attention_proxy_weight} for {options.model!r}")
    if options.attention_proxy_weight > 0 and options.patch[1] <= 2 * proxy_search_range(scale):
        raise ValueError(f"the attention proxies need LR patches wider than twice the x{scale} search range "
                         f"({2 * proxy_search_range(scale)} px; lr_proxy_disparities), got a width of "
                         f"{options.patch[1]} px")
    dataset = SuperResolutionPairDataset(options.data, scale, tuple(options.patch), exclude=exclude,
                                         samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                                         proxy=options.attention_proxy_weight > 0)
    config = {"scale": scale, "channels": options.channels, "growth": options.growth,
              "rdb_layers": options.rdb_layers, "num_rdb": options.num_rdb,
              "num_rdb_reconstruction": options.num_rdb_reconstruction, "stereo": options.model == "stereo"}
    if options.init:
        model = initial_network(options.init, scale, options.model == "stereo").train()
    else:
        model = build_network(config).train()
    if options.detach_attention_input:
        if model.bipam is None:
            raise ValueError("detach_attention_input applies to the stereo model only")
        model.bipam.detach_input = True
    groups = fusion_parameter_groups(model, options.lr, options.fusion_lr_scale)
    if options.trainable == "fusion":
        learning = {id(parameter) for parameter in freeze_all_but_fusion(model)}
        groups = [{**group, "params": [p for p in group["params"] if id(p) in learning]} for group in groups]
        groups = [group for group in groups if group["params"]]
    optimizer = torch.optim.Adam(groups)
    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=sr_loss_callback(options.attention_weight, options.attention_loss_mask,
                                           options.attention_proxy_weight),
                      train_dataset=dataset, train_mode=sr_train_mode(options.trainable),
                      weights_writers=write_network)
    facts = {"data": [str(d) for d in options.data], "steps": options.steps, "scale": scale}
    trainer.fit(resume=options.resume, weights_metadata={"training": json.dumps(facts)})
    card = {
        "architecture": model.ARCHITECTURE, "config": model.config,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "data": {"train": [str(d) for d in options.data], "train_pairs": len(dataset.samples),
                 "excluded_list": options.exclude,
                 "degradation": "HR random crop, LR = torch bicubic (a=-0.75) with antialias, rounded to uint8"},
        "options": {key: (list(value) if isinstance(value, tuple) else value)
                    for key, value in vars(options).items() if key not in ("data", "progress")},
        **run_facts(trainer, started, "cpu"),
    }
    return json.loads(write_model_card(Path(options.out), card).read_text())
