"""CycleGAN training of the NIR <-> RGB generators on the :class:`~stereo_depth_ros.training.trainer.Trainer`
(``stereo-depth-ros train-cross-modal``; paper 004 section 3.5; Zhu et al., ICCV 2017, section 3 and 4).

Models: ``g_nir_to_rgb`` (G), ``g_rgb_to_nir`` (F), ``d_rgb`` (D_Y, judges RGB), ``d_nir`` (D_X, judges NIR);
optimisers: ``generators`` (G and F together) and ``discriminators`` (D_Y and D_X together), Adam with learning
rate 2e-4 and betas (0.5, 0.999), constant for the first half of the steps and decayed linearly to 0 over the second
half (CycleGAN: 100 epochs constant + 100 decaying). The Trainer runs with ``backward=None``: each step the callback
makes two updates with :meth:`Trainer.update`:

1. generators, discriminators frozen: ``L_G = LSGAN(D_Y(G(x)), real) + LSGAN(D_X(F(y)), real)
   + lambda * (|F(G(x)) - x|_1 + |G(F(y)) - y|_1) + 0.5 * lambda * (|G(y) - y|_1 + |F(x) - x|_1)`` with
   ``lambda = 10`` (cycle consistency, eq. 2; identity loss, section 5.2, weight 0.5 lambda);
2. discriminators: ``L_D = 0.5 * [LSGAN(D_Y(y), real) + LSGAN(D_Y(pool_Y(G(x))), fake)]`` + the same for D_X,
   on fakes drawn from the 50-image pools (:class:`~stereo_depth_ros.models.cross_modal.ImagePool`).

x: NIR as 3-channel grey, y: RGB, both float in [0, 1] (the networks map to [-1, 1] inside, so the L1 terms are
half of CycleGAN's in that range; the weights are CycleGAN's). The identity loss on a 1-channel/3-channel pair is
defined by handling NIR as 3 equal channels: ``G(y)`` takes an RGB image where it expects 3-channel grey, ``F(x)``
returns its one NIR channel replicated to 3.

Data: :class:`~stereo_depth_ros.data.nir_rgb.UnpairedNirRgbDataset` (unpaired crops). The image pools are not in the
checkpoint: a resumed run refills them, so it is not bit-identical to an uninterrupted one (everything else is).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stereo_depth_ros.data.nir_rgb import UnpairedNirRgbDataset
from stereo_depth_ros.models.cross_modal import (ImagePool, build_discriminator, build_generator, lsgan_loss,
                                                 save_generator)
from stereo_depth_ros.models.weights import save_weights
from stereo_depth_ros.resources import check_training_folders, default_data_root
from stereo_depth_ros.training.model_card import run_facts, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, start_run

DEFAULT_DATA_ROOT = default_data_root() / "nir_rgb" / "country"
GENERATOR_FILES = {"nir-to-rgb": "cyclegan_nir_to_rgb.safetensors", "rgb-to-nir": "cyclegan_rgb_to_nir.safetensors"}
MODEL_DIRECTIONS = {"g_nir_to_rgb": "nir-to-rgb", "g_rgb_to_nir": "rgb-to-nir"}
DISCRIMINATOR_ARCHITECTURE = "cyclegan-patch-discriminator/v1"


@dataclass
class TrainCrossModalOptions:
    """Options of :func:`train_cross_modal` (``train-cross-modal``'s arguments).

    Attributes:
        out: the run's folder: Trainer logs, checkpoint (``cyclegan.ckpt.safetensors``), discriminators.
        weights_dir: where the two generators and their model cards go (``cyclegan_nir_to_rgb.safetensors``,
            ``cyclegan_rgb_to_nir.safetensors``); None: ``out``.
        data: folders of ``NNNN_nir.jpg`` + ``NNNN_rgb.jpg`` (used unpaired).
        steps, batch_size, seed, checkpoint_every, stop_at, resume: as the Trainer's.
        crop: (height, width) pixels of the random windows; short_side: the images' short side after downscaling.
        lr: Adam learning rate (constant for half the steps, then linear decay to 0).
        cycle_weight: lambda of the cycle loss (CycleGAN: 10); identity_weight: of the identity loss, as a fraction
            of lambda (CycleGAN: 0.5).
        pool_size: images kept by each image pool (CycleGAN: 50).
        generator, discriminator: configs (keys of ``DEFAULT_GENERATOR_CONFIG`` / ``DEFAULT_DISCRIMINATOR_CONFIG``;
            ``out_channels`` is set per direction).
        threads: torch CPU threads (0: leave PyTorch's default).
    """

    out: str | Path
    data: list = field(default_factory=lambda: [str(DEFAULT_DATA_ROOT)])
    weights_dir: str | Path | None = None
    steps: int = 2000
    batch_size: int = 1
    crop: tuple[int, int] = (128, 128)
    short_side: int | None = 256
    lr: float = 2e-4
    cycle_weight: float = 10.0
    identity_weight: float = 0.5
    pool_size: int = 50
    generator: dict = field(default_factory=dict)
    discriminator: dict = field(default_factory=dict)
    seed: int = 0
    checkpoint_every: int = 100
    stop_at: int | None = None
    resume: str | Path | None = None
    threads: int = 0
    progress: bool = True


def linear_decay(steps: int):
    """The learning-rate factor of step ``s`` (0-based): 1 for the first half of ``steps``, then linear to 0 at
    ``steps`` (CycleGAN's schedule).

    Example:
        >>> factor = linear_decay(100)
        >>> factor(0), factor(50), factor(75), factor(100)
        (1.0, 1.0, 0.5, 0.0)
    """
    constant = steps // 2

    def factor(step: int) -> float:
        if step <= constant:
            return 1.0
        return max(0.0, 1.0 - (step - constant) / max(1, steps - constant))
    return factor


def _set_requires_grad(modules, flag: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(flag)


def cyclegan_loss_callback(cycle_weight: float = 10.0, identity_weight: float = 0.5, pool_size: int = 50,
                           seed: int = 0):
    """The Trainer callback of one CycleGAN step (the two updates of the module docstring).

    Returns:
        ``loss(batch, trainer) -> {"generator_total", "adversarial", "cycle", "identity", "d_rgb", "d_nir"}``
        (floats; ``cycle`` and ``identity`` are the unweighted sums of the two directions' mean L1 errors in [0, 1]
        units).
    """
    pools = {"rgb": ImagePool(pool_size, seed=seed), "nir": ImagePool(pool_size, seed=seed + 1)}

    def loss(batch: dict, trainer: Trainer) -> dict:
        nir, rgb = batch["nir"], batch["rgb"]
        g, f = trainer.models["g_nir_to_rgb"], trainer.models["g_rgb_to_nir"]
        d_rgb, d_nir = trainer.models["d_rgb"], trainer.models["d_nir"]
        _set_requires_grad((d_rgb, d_nir), False)
        fake_rgb, fake_nir = g(nir), f(rgb)
        cycle = (f(fake_rgb) - nir).abs().mean() + (g(fake_nir) - rgb).abs().mean()
        identity = (g(rgb) - rgb).abs().mean() + (f(nir) - nir).abs().mean() if identity_weight > 0 \
            else torch.zeros((), device=nir.device)
        adversarial = lsgan_loss(d_rgb(fake_rgb), True) + lsgan_loss(d_nir(fake_nir), True)
        total = adversarial + cycle_weight * cycle + identity_weight * cycle_weight * identity
        trainer.update(total, "generators")
        _set_requires_grad((d_rgb, d_nir), True)
        pooled_rgb, pooled_nir = pools["rgb"].query(fake_rgb), pools["nir"].query(fake_nir)
        loss_rgb = 0.5 * (lsgan_loss(d_rgb(rgb), True) + lsgan_loss(d_rgb(pooled_rgb), False))
        loss_nir = 0.5 * (lsgan_loss(d_nir(nir), True) + lsgan_loss(d_nir(pooled_nir), False))
        trainer.update(loss_rgb + loss_nir, "discriminators")
        return {"generator_total": float(total.detach()), "adversarial": float(adversarial.detach()),
                "cycle": float(cycle.detach()), "identity": float(identity.detach()),
                "d_rgb": float(loss_rgb.detach()), "d_nir": float(loss_nir.detach())}
    return loss


def _writers():
    def generator_writer(name: str):
        def write(module, path: Path, metadata: dict) -> None:
            save_generator(module, path, MODEL_DIRECTIONS[name], metadata)
        return write

    def discriminator_writer(module, path: Path, metadata: dict) -> None:
        save_weights(module, path, DISCRIMINATOR_ARCHITECTURE, dict(module.config), metadata)

    return {"g_nir_to_rgb": generator_writer("g_nir_to_rgb"), "g_rgb_to_nir": generator_writer("g_rgb_to_nir"),
            "d_rgb": discriminator_writer, "d_nir": discriminator_writer}


def train_cross_modal(options: TrainCrossModalOptions) -> dict:
    """Train the two generators and two discriminators; write the generators with
    :func:`~stereo_depth_ros.models.cross_modal.save_generator` and a model card beside each.

    Returns:
        ``{"nir-to-rgb": card, "rgb-to-nir": card}``, the model cards written.

    Raises:
        ValueError: for bad options (steps, crop, weights, configs) or test data among the folders (the held-out
        indoor pairs: :func:`~stereo_depth_ros.resources.check_training_folders`); FileNotFoundError: for missing
        data; FloatingPointError: for a non-finite loss (the checkpoint on disk is kept).
    """
    check_training_folders(options.data, "train-cross-modal")
    for label, value in (("cycle_weight", options.cycle_weight), ("identity_weight", options.identity_weight),
                         ("lr", options.lr)):
        if not value >= 0:
            raise ValueError(f"{label} must be >= 0, got {value!r}")
    out = Path(options.out)
    weights_dir = Path(options.weights_dir) if options.weights_dir is not None else out
    trainer_options = TrainerOptions(
        out=out / "cyclegan.safetensors", steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, backward=None,
        progress=options.progress, description="train-cross-modal", progress_keys=("cycle", "adversarial"),
        plot_title="train-cross-modal: CycleGAN NIR <-> RGB losses", plot_ylabel="loss")
    start_run(trainer_options, options.threads, options.seed)
    started = time.time()
    dataset = UnpairedNirRgbDataset(options.data, crop=tuple(options.crop), augment=True,
                                    samples_per_epoch=options.steps * options.batch_size, seed=options.seed,
                                    short_side=options.short_side)
    generator_config = {key: value for key, value in options.generator.items() if key != "out_channels"}
    models = {"g_nir_to_rgb": build_generator({**generator_config, "out_channels": 3}),
              "g_rgb_to_nir": build_generator({**generator_config, "out_channels": 1}),
              "d_rgb": build_discriminator(options.discriminator),
              "d_nir": build_discriminator(options.discriminator)}
    betas = (0.5, 0.999)
    optimizers = {
        "generators": torch.optim.Adam(list(models["g_nir_to_rgb"].parameters())
                                       + list(models["g_rgb_to_nir"].parameters()), lr=options.lr, betas=betas),
        "discriminators": torch.optim.Adam(list(models["d_rgb"].parameters()) + list(models["d_nir"].parameters()),
                                           lr=options.lr, betas=betas)}
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(options.steps))
                  for name, optimizer in optimizers.items()}
    trainer = Trainer(trainer_options, models=models, optimizers=optimizers,
                      loss=cyclegan_loss_callback(options.cycle_weight, options.identity_weight, options.pool_size,
                                                  options.seed),
                      train_dataset=dataset, schedulers=schedulers, weights_writers=_writers())
    facts = {"data": [str(d) for d in options.data], "steps": options.steps, "unpaired": True}
    trainer.fit(resume=options.resume, weights_metadata={"training": json.dumps(facts)})
    cards = {}
    finished = trainer.steps_done >= options.steps
    for name, direction in MODEL_DIRECTIONS.items():
        module = models[name]
        path = weights_dir / GENERATOR_FILES[direction] if finished else trainer.weights_path(name)
        if finished:
            save_generator(module, path, direction, {"training": json.dumps(facts)})
        card = {
            "architecture": "cyclegan-resnet-generator/v1", "direction": direction, "config": module.config,
            "parameters": int(sum(p.numel() for p in module.parameters())),
            "discriminator": {"architecture": DISCRIMINATOR_ARCHITECTURE, "config": models["d_rgb"].config,
                              "parameters": int(sum(p.numel() for p in models["d_rgb"].parameters()))},
            "data": {"train": [str(d) for d in options.data], "train_pairs": len(dataset.samples),
                     "unpaired": "NIR and RGB of each item from independent images and independent random crops",
                     "preprocessing": f"short side downscaled to {options.short_side} px (area), random "
                                      f"{options.crop[0]}x{options.crop[1]} crops, random horizontal flips"},
            "losses": {"adversarial": "least squares (LSGAN)", "cycle_weight": options.cycle_weight,
                       "identity_weight": f"{options.identity_weight} x cycle_weight",
                       "image_pool": options.pool_size, "optimiser": "Adam 2e-4 betas (0.5, 0.999), constant "
                                                                     "half the steps, then linear decay to 0"},
            "options": {key: (list(value) if isinstance(value, tuple) else
                              (str(value) if isinstance(value, Path) else value))
                        for key, value in vars(options).items() if key not in ("data", "progress")},
            **run_facts(trainer, started, "cpu"),
        }
        cards[direction] = json.loads(write_model_card(path, card).read_text())
    return cards
