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

- photometric: ``mean |V_left * (lr_left - M_right_to_left (x) lr_right)|`` + the same for the right view;
- cycle: ``mean |V_left * (M_right_to_left M_left_to_right - I)|`` + the same for the right view;
- smoothness: mean absolute difference of each attention map between vertically neighbouring rows and between
  diagonal neighbours ``(i, j)`` and ``(i + 1, j + 1)``.

The single-image baseline has no attention maps; its loss is the L1 term only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stereo_depth_ros.data.folder_dataset import Sample, read_pair_list
from stereo_depth_ros.data.stereo_folder import StereoFolderDataset
from stereo_depth_ros.models.stereo_sr import SINGLE_ARCHITECTURE, STEREO_ARCHITECTURE, bicubic_downscale, \
    build_network, check_scale, warp_with_attention
from stereo_depth_ros.models.weights import load_weights, save_weights
from stereo_depth_ros.training.model_card import run_facts, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, start_run

MODEL_NAME = "network"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "endoscopic_stereo"
DEFAULT_SETS = ("bdis_invivo/6", "bdis_invivo/20", "bdis_invivo/21", "hamlyn_invivo_tpsnet")
HELD_OUT_LIST = Path(__file__).resolve().parents[2] / "config" / "splits" / "bdis_invivo_test.txt"


class SuperResolutionPairDataset(StereoFolderDataset):
    """HR crops of rectified stereo pairs with their bicubic LR versions.

    Args:
        roots, exclude, seed, samples_per_epoch: as :class:`~stereo_depth_ros.data.stereo_folder.StereoFolderDataset`.
        scale: 2 or 4.
        patch: (height, width) of the LR patch in pixels; the HR crop is ``scale`` times larger.

    Items: ``left``, ``right`` (3, scale*h, scale*w) float32 RGB in [0, 1] (HR); ``lr_left``, ``lr_right``
    (3, h, w) float32 RGB in [0, 1]; ``valid`` (1, scale*h, scale*w); ``name``. No colour augmentation (it would
    change the degradation); no flip.

    Raises:
        ValueError: for a bad scale or patch; FileNotFoundError: as the base class.
    """

    def __init__(self, roots, scale: int, patch: tuple[int, int] = (32, 64), exclude: list[str] | None = None,
                 samples_per_epoch: int | None = None, seed: int = 0) -> None:
        self.scale = check_scale(scale)
        if len(patch) != 2 or any(int(p) != p or p <= 0 for p in patch):
            raise ValueError(f"patch must be (height, width) positive pixels, got {tuple(patch)}")
        super().__init__(roots, crop=(int(patch[0]) * self.scale, int(patch[1]) * self.scale), augment=False,
                         samples_per_epoch=samples_per_epoch, seed=seed, exclude=exclude)

    def to_float(self, sample: Sample) -> Sample:
        sample = dict(sample)
        sample["lr_left"] = bicubic_downscale(np.ascontiguousarray(sample["left"]), self.scale)
        sample["lr_right"] = bicubic_downscale(np.ascontiguousarray(sample["right"]), self.scale)
        return super().to_float(sample)


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
        channels, growth, rdb_layers, num_rdb, num_rdb_reconstruction: network sizes.
        threads: CPU threads (0 = PyTorch's default). progress: show a progress bar.
        init: weights to start from (fine-tuning, e.g. with wider patches); their configuration replaces the
            network sizes above and must have this ``scale`` and ``model``.
    """

    scale: int
    out: str
    model: str = "stereo"
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA_ROOT / s) for s in DEFAULT_SETS])
    exclude: str | None = str(HELD_OUT_LIST)
    steps: int = 1000
    batch_size: int = 4
    patch: tuple[int, int] = (32, 64)
    lr: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 50
    stop_at: int | None = None
    resume: str | None = None
    attention_weight: float = 0.1
    channels: int = 32
    growth: int = 16
    rdb_layers: int = 3
    num_rdb: int = 2
    num_rdb_reconstruction: int = 1
    threads: int = 0
    progress: bool = True
    init: str | None = None


def attention_losses(attention: dict, lr_left: torch.Tensor, lr_right: torch.Tensor) -> dict[str, torch.Tensor]:
    """iPASSR's photometric, cycle and smoothness terms (module docstring) of :class:`BiPAM`'s attention dict and
    the (B, 3, h, w) LR views; each a scalar tensor."""
    right_to_left, left_to_right = attention["right_to_left"], attention["left_to_right"]
    valid_left, valid_right = attention["valid_left"], attention["valid_right"]
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


def sr_loss_callback(attention_weight: float):
    """The Trainer's loss callback: ``{"total", "l1", "photometric", "cycle", "smoothness"}`` (the attention terms
    log 0 for the single-image network)."""

    def loss(batch: dict, trainer: Trainer) -> dict:
        network = trainer.models[MODEL_NAME]
        sr_left, sr_right, attention = network(batch["lr_left"], batch["lr_right"], return_attention=True)
        l1 = (sr_left - batch["left"]).abs().mean() + (sr_right - batch["right"]).abs().mean()
        total = l1
        logged = {"photometric": 0.0, "cycle": 0.0, "smoothness": 0.0}
        if attention:
            terms = attention_losses(attention, batch["lr_left"], batch["lr_right"])
            total = total + attention_weight * sum(terms.values())
            logged = {name: float(value.detach()) for name, value in terms.items()}
        return {"total": total, "l1": float(l1.detach()), **logged}

    return loss


def write_network(module, path: Path, metadata: dict) -> None:
    """Write the network with :func:`stereo_depth_ros.models.weights.save_weights` (architecture and config)."""
    save_weights(module, path, module.ARCHITECTURE, module.config, metadata)


def initial_network(path: str | Path, scale: int, stereo: bool) -> torch.nn.Module:
    """The network stored in ``path`` (platform weights format), to fine-tune.

    Raises:
        WeightsError: for a missing, changed or truncated file or another architecture (stereo vs single-image).
        ValueError: if its scale is not ``scale``.
    """
    module, _ = load_weights(path, STEREO_ARCHITECTURE if stereo else SINGLE_ARCHITECTURE, build_network)
    if module.config["scale"] != scale:
        raise ValueError(f"{path}: weights for x{module.config['scale']}, but --scale is {scale}")
    return module


def train_super_resolution(options: TrainSuperResolutionOptions) -> dict:
    """Train the stereo or single-image SR network; write the weights, logs and model card.

    Returns:
        the model card written beside the weights.

    Raises:
        ValueError: for a bad scale, model or Trainer option; FileNotFoundError: for missing data.
    """
    scale = check_scale(options.scale)
    if options.model not in ("stereo", "single"):
        raise ValueError(f"model must be 'stereo' or 'single', got {options.model!r}")
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, backward="total",
        progress=options.progress, description=f"train-sr x{scale} {options.model}", progress_keys=("total", "l1"),
        plot_title=f"train-sr x{scale} ({options.model}): L1 on both views + attention terms", plot_ylabel="loss")
    start_run(trainer_options, options.threads, options.seed)
    started = time.time()
    exclude = read_pair_list(options.exclude) if options.exclude else None
    dataset = SuperResolutionPairDataset(options.data, scale, tuple(options.patch), exclude=exclude,
                                         samples_per_epoch=options.steps * options.batch_size, seed=options.seed)
    config = {"scale": scale, "channels": options.channels, "growth": options.growth,
              "rdb_layers": options.rdb_layers, "num_rdb": options.num_rdb,
              "num_rdb_reconstruction": options.num_rdb_reconstruction, "stereo": options.model == "stereo"}
    if options.init:
        model = initial_network(options.init, scale, options.model == "stereo").train()
    else:
        model = build_network(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=sr_loss_callback(options.attention_weight), train_dataset=dataset,
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
