"""The training loop every network family runs on: one or more models and optimisers, a loss callback, validation,
checkpoints with exact resume, checkpoint averaging, loss logs (CSV and PNG) and a progress bar.

Structure after monodepth2's ``Trainer`` (Godard et al., "Digging Into Self-Supervised Monocular Depth Estimation",
ICCV 2019): named models and optimisers, a per-batch ``process_batch`` that returns named losses, a validation pass,
and saving/loading of everything a run needs. What differs: the family's loss is a callback (no family code in the
loop), any number of optimisers can be updated in any order inside one step (a CycleGAN's generators and
discriminators), checkpoints are safetensors (no pickle) holding the random generators' states too, so that a run
stopped and resumed gives exactly the weights of an uninterrupted one.

A family builds its models (seeded with :func:`seed_everything` first), optimisers and optional schedulers, and
writes its callback::

    def loss(batch, trainer):                      # batch: the collated items, on trainer.device
        left, right = batch["left"], batch["right"]
        stages = trainer.models["network"](left, right)
        total = ...                                # a scalar tensor
        return {"total": total, "stage3": ...}     # any names; they become the CSV columns

    trainer = Trainer(TrainerOptions(out="run.safetensors", steps=2000, batch_size=4),
                      models={"network": net}, optimizers={"network": adam}, loss=loss, train_dataset=dataset)
    trainer.fit()

With ``TrainerOptions.backward = "total"`` (the default) the Trainer minimises that entry with every optimiser;
with ``backward=None`` the callback makes its own updates with :meth:`Trainer.update` (alternating updates).

Files beside ``out`` (``<stem>`` = its name without ``.safetensors``):

- ``<stem>.losses.csv``: one row per step, columns ``step``, the callback's names in the order returned,
  ``lr`` (one optimiser) or ``lr_<name>`` (several), ``seconds`` (wall time of the run so far);
  ``<stem>.validation.csv`` likewise for validation; ``<stem>.losses.png``: every logged loss against the step.
- ``<stem>.ckpt.safetensors``: the checkpoint (see :meth:`Trainer.save_checkpoint`).
- the weights: ``out`` for a single model, ``<stem>.<model name>.safetensors`` for several; with ``keep_weights``
  also ``<stem>[.<model name>].step<N>.safetensors`` at every checkpoint, for :meth:`Trainer.average_checkpoints`.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = "stereo_depth_ros.trainer/v1"
NOT_LOSS_COLUMNS = ("step", "seconds")

LossCallback = Callable[[dict, "Trainer"], Mapping[str, "torch.Tensor | float"]]
WeightsWriter = Callable[[nn.Module, Path, dict], None]


@dataclass
class TrainerOptions:
    """What the training loop does, apart from the family's models, data and losses.

    Attributes:
        out: the weights file (``.safetensors``) of the run; logs, checkpoint and kept weights go beside it.
        steps: optimiser steps of the whole run (the schedulers' span).
        batch_size: items per step.
        seed: seed of the batch order: the items of step ``s`` are positions ``s * batch_size ..`` of a sequence of
            permutations of the dataset drawn from ``np.random.default_rng(seed)`` (one permutation per epoch).
        checkpoint_every: steps between checkpoints (and loss-log writes); the last step always gets one.
        stop_at: stop after this step with a checkpoint (the schedule still spans ``steps``), to split a run into
            sessions that ``fit(resume=...)`` continues; None runs to ``steps``.
        keep_weights: at every checkpoint also write each model's weights alone as
            ``<stem>[.<model name>].step<N>.safetensors`` (for :meth:`Trainer.average_checkpoints`).
        backward: name of the callback's loss that the Trainer minimises with every optimiser after the callback
            returns; None when the callback makes its own updates with :meth:`Trainer.update`.
        validate_every: steps between validation passes (None = at every checkpoint); the last step of a session
            always gets one. Only with a validation dataset.
        validation_batch_size: items per validation batch (None = ``batch_size``).
        num_workers: data-loading worker processes (0 = in the training process).
        progress: show a tqdm progress bar.
        description: the progress bar's label.
        progress_keys: losses shown on the progress bar (empty = the first two the callback returns).
        plot_title, plot_ylabel: the PNG's title and y-axis label.
    """

    out: str | Path
    steps: int
    batch_size: int
    seed: int = 0
    checkpoint_every: int = 200
    stop_at: int | None = None
    keep_weights: bool = False
    backward: str | None = "total"
    validate_every: int | None = None
    validation_batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True
    description: str = "train"
    progress_keys: tuple[str, ...] = ()
    plot_title: str = "training losses"
    plot_ylabel: str = "loss"
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise ValueError naming the first option out of its range."""
        positive = {"steps": self.steps, "batch_size": self.batch_size, "checkpoint_every": self.checkpoint_every}
        positive.update({name: value for name, value in (("stop_at", self.stop_at),
                                                         ("validate_every", self.validate_every),
                                                         ("validation_batch_size", self.validation_batch_size))
                         if value is not None})
        for name, value in positive.items():
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed PyTorch's, NumPy's and Python's global random generators; call it before building the models.

    Args:
        seed: the run's seed.
        deterministic: also make PyTorch use deterministic algorithms (``warn_only``: an operation without one
            warns instead of failing), so that two runs with one seed give the same weights on one machine.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def start_run(trainer_options: "TrainerOptions", threads: int, seed: int) -> None:
    """What every training command does before it builds data and models: check the Trainer's options, set the
    number of CPU threads (``threads`` > 0; 0 keeps PyTorch's default) and seed every generator
    (:func:`seed_everything`).

    Raises:
        ValueError: for invalid Trainer options (:meth:`TrainerOptions.check`).
    """
    trainer_options.check()
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)


def default_weights_writer(module: nn.Module, path: Path, metadata: dict) -> None:
    """Write a module with :func:`stereo_depth_ros.models.weights.save_weights`: its ``ARCHITECTURE`` attribute (or
    the class's qualified name) and ``config`` attribute (or ``{}``)."""
    from stereo_depth_ros.models.weights import save_weights

    architecture = getattr(module, "ARCHITECTURE", f"{type(module).__module__}.{type(module).__qualname__}")
    save_weights(module, path, architecture, dict(getattr(module, "config", {}) or {}), metadata)


def move_to_device(batch, device: torch.device):
    """Tensors of a collated batch (nested dicts, lists, tuples) moved to ``device``; other values unchanged."""
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of several state dicts of one network (checkpoint averaging, as in SWA).

    Every floating-point tensor (weights, biases, batch-norm running mean and variance) becomes the mean over the
    states, computed in float64 and returned in the tensor's dtype; integer tensors (batch-norm step counters) are
    taken from the last state. Averaged running statistics are the mean of the checkpoints' statistics, not the
    statistics of the averaged network; :func:`recompute_batch_norm_statistics` measures the latter.

    Raises:
        ValueError: for no state, or states whose tensor names or shapes differ (naming the first difference).
    """
    if not states:
        raise ValueError("averaging needs at least one state")
    reference = states[0]
    for index, state in enumerate(states[1:], 1):
        if state.keys() != reference.keys():
            differing = sorted(set(state) ^ set(reference))
            raise ValueError(f"state {index} has other tensors than state 0: {differing[:5]}")
        for key, value in state.items():
            if value.shape != reference[key].shape:
                raise ValueError(f"tensor {key} has shape {tuple(value.shape)} in state {index}, "
                                 f"{tuple(reference[key].shape)} in state 0")
    return {key: (torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
                  if value.dtype.is_floating_point else states[-1][key].clone())
            for key, value in reference.items()}


BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def recompute_batch_norm_statistics(module: nn.Module, batches: Iterable,
                                    forward: Callable[[nn.Module, object], object],
                                    train_mode: Callable[[nn.Module], None] | None = None) -> nn.Module:
    """Measure the batch-norm running statistics of ``module`` as it is (after averaging weights), as SWA does.

    Averaged weights change every layer's activations, so the running mean and variance of the checkpoints no longer
    describe them (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", 2018,
    and ``torch.optim.swa_utils.update_bn``). This resets the statistics of every batch-norm layer that is in
    training mode after ``train_mode`` (frozen parts a family keeps in eval mode keep theirs) and sets them to the
    plain average over ``batches`` (``momentum=None``), without gradients.

    Args:
        module: the network; returned in eval mode.
        batches: the batches to measure on (for example training batches, on the module's device).
        forward: ``forward(module, batch)`` runs the network on one batch.
        train_mode: puts the module in training mode (default ``module.train()``).

    Returns:
        ``module``, with new running statistics, in eval mode.

    Raises:
        ValueError: if ``batches`` is empty while the module has batch-norm layers to measure.
    """
    (train_mode or (lambda m: m.train()))(module)
    layers = [layer for layer in module.modules() if isinstance(layer, BATCH_NORM_TYPES) and layer.training
              and layer.track_running_stats]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    seen = 0
    with torch.no_grad():
        for batch in batches:
            forward(module, batch)
            seen += 1
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    if layers and not seen:
        raise ValueError("recompute_batch_norm_statistics needs at least one batch")
    return module.eval()


def kept_weights_files(out: str | Path, model: str | None = None, first_step: int | None = None,
                       last_step: int | None = None) -> list[tuple[int, Path]]:
    """The weights kept at checkpoints (``TrainerOptions.keep_weights``) of a run, in step order.

    Args:
        out: the run's weights file. model: the model's name for a run of several models, None for one model.
        first_step, last_step: the inclusive step range (None = unbounded).

    Returns:
        ``[(step, path), ...]`` of the files ``<stem>[.<model>].step<N>.safetensors`` with N in the range.
    """
    out = Path(out)
    prefix = out.stem if model is None else f"{out.stem}.{model}"
    pattern = re.compile(re.escape(prefix) + r"\.step(\d+)\.safetensors$")
    found = []
    for path in out.parent.glob(f"{prefix}.step*.safetensors") if out.parent.is_dir() else []:
        match = pattern.match(path.name)
        if match:
            step = int(match.group(1))
            if (first_step is None or step >= first_step) and (last_step is None or step <= last_step):
                found.append((step, path))
    return sorted(found)


class Trainer:
    """Trains named models with named optimisers on a dataset, with a family's loss callback.

    Args:
        options: :class:`TrainerOptions`.
        models: name -> module, already on its device (names are identifiers: letters, digits, ``_``, ``-``).
        optimizers: name -> optimiser over (some of) the models' parameters.
        loss: ``loss(batch, trainer) -> {name: scalar tensor or float}``, called once per step with the collated
            items (on ``device``); any names but ``step``, ``seconds``, ``lr`` and ``lr_*``. With
            ``options.backward`` set, that entry (a scalar tensor) is minimised by every optimiser after the call;
            otherwise the callback calls :meth:`update` itself. All entries are logged.
        train_dataset: a map-style dataset whose items ``torch.utils.data.default_collate`` can batch (dicts of
            tensors and strings). Items should depend on their index only (see ``data.folder_dataset``), so that a
            resumed run reads the same batches.
        schedulers: optimiser name -> learning-rate scheduler of that optimiser, stepped once after every step.
        validation_dataset: optional dataset for :attr:`validate`.
        validate: ``validate(batch, trainer) -> {name: scalar}``, run without gradients with the models in eval mode;
            each name is averaged over the validation batches and logged in ``<stem>.validation.csv``.
        weights_writers: one writer ``writer(module, path, metadata)`` for every model, or name -> writer
            (default :func:`default_weights_writer`); the family's own format wrapper goes here.
        train_mode: ``train_mode(name, module)`` puts a model in training mode (default ``module.train()``); a family
            that keeps parts frozen in eval mode (batch-norm statistics kept) does it here. Called before the first
            step and after every validation pass.
        device: where batches go before the callback sees them.

    Attributes:
        step: the 0-based step in progress (what the callback sees). steps_done: the number of steps done.
        history: the logged rows (dicts), one per step; validation_history: one per validation pass.

    Raises:
        ValueError: for bad options, no model or optimiser, a name that is not an identifier, a scheduler of another
            optimiser, a validation dataset without a callback or the reverse, or an empty dataset.
    """

    def __init__(self, options: TrainerOptions, models: Mapping[str, nn.Module],
                 optimizers: Mapping[str, torch.optim.Optimizer], loss: LossCallback, train_dataset,
                 schedulers: Mapping[str, object] | None = None, validation_dataset=None,
                 validate: LossCallback | None = None,
                 weights_writers: WeightsWriter | Mapping[str, WeightsWriter] | None = None,
                 train_mode: Callable[[str, nn.Module], None] | None = None,
                 device: torch.device | str = "cpu") -> None:
        options.check()
        if not models or not optimizers:
            raise ValueError("a Trainer needs at least one model and one optimiser")
        for kind, names in (("model", models), ("optimiser", optimizers)):
            for name in names:
                if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                    raise ValueError(f"{kind} name {name!r} must use letters, digits, '_' or '-' only")
        schedulers = dict(schedulers or {})
        for name, scheduler in schedulers.items():
            if name not in optimizers or getattr(scheduler, "optimizer", None) is not optimizers[name]:
                raise ValueError(f"scheduler {name!r} must drive the optimiser of that name "
                                 f"(optimisers: {sorted(optimizers)})")
        if (validation_dataset is None) != (validate is None):
            raise ValueError("give both validation_dataset and validate, or neither")
        if len(train_dataset) == 0:
            raise ValueError("the training dataset is empty")
        if validation_dataset is not None and len(validation_dataset) == 0:
            raise ValueError("the validation dataset is empty")
        self.options = options
        self.out = Path(options.out)
        self.models = dict(models)
        self.optimizers = dict(optimizers)
        self.schedulers = schedulers
        self.loss = loss
        self.train_dataset = train_dataset
        self.validation_dataset = validation_dataset
        self.validate = validate
        if weights_writers is None or callable(weights_writers):
            self.weights_writers = {name: weights_writers or default_weights_writer for name in self.models}
        else:
            missing = sorted(set(self.models) - set(weights_writers))
            if missing:
                raise ValueError(f"no weights writer for the models {missing}")
            self.weights_writers = dict(weights_writers)
        self.train_mode = train_mode or (lambda name, module: module.train())
        self.device = torch.device(device)
        self.step = 0
        self.steps_done = 0
        self.history: list[dict] = []
        self.validation_history: list[dict] = []
        self._permutations: list[np.ndarray] = []
        self._order_rng = np.random.default_rng(options.seed)

    # Paths.

    @property
    def checkpoint_path(self) -> Path:
        """``<stem>.ckpt.safetensors`` beside the weights."""
        return self.out.with_name(self.out.stem + ".ckpt.safetensors")

    def weights_path(self, name: str) -> Path:
        """The final weights of model ``name``: ``out`` for a single model, ``<stem>.<name>.safetensors`` else."""
        return self.out if len(self.models) == 1 else self.out.with_name(f"{self.out.stem}.{name}.safetensors")

    def kept_weights_path(self, name: str, step: int) -> Path:
        """Weights of model ``name`` kept at checkpoint ``step``: ``<stem>[.<name>].step<N>.safetensors``."""
        prefix = self.out.stem if len(self.models) == 1 else f"{self.out.stem}.{name}"
        return self.out.with_name(f"{prefix}.step{step:06d}.safetensors")

    # Data order.

    def batch_indices(self, step: int) -> list[int]:
        """Dataset indices of the items of 0-based ``step`` (see :attr:`TrainerOptions.seed`)."""
        size = len(self.train_dataset)
        indices = []
        for position in range(step * self.options.batch_size, (step + 1) * self.options.batch_size):
            epoch, offset = divmod(position, size)
            while len(self._permutations) <= epoch:
                self._permutations.append(self._order_rng.permutation(size))
            indices.append(int(self._permutations[epoch][offset]))
        return indices

    def _batches(self, first_step: int, last_step: int) -> Iterator:
        from torch.utils.data import DataLoader

        steps = [self.batch_indices(step) for step in range(first_step, last_step)]
        # Its own generator: the loader draws a base seed, which must not consume the global torch generator.
        loader = DataLoader(self.train_dataset, batch_sampler=steps, num_workers=self.options.num_workers,
                            generator=torch.Generator().manual_seed(self.options.seed))
        return iter(loader)

    # Optimisation.

    def update(self, loss: torch.Tensor, optimizers: str | Sequence[str] | None = None) -> None:
        """Minimise ``loss`` by one step of the named optimisers (default all): zero their gradients, back-propagate,
        step. A callback that alternates updates (generators, then discriminators) calls this once per update.

        Raises:
            KeyError: for an unknown optimiser name.
            FloatingPointError: if ``loss`` is not finite (the message names the step; the last checkpoint on disk
                is unaffected).
            ValueError: if ``loss`` is not a scalar tensor.
        """
        names = list(self.optimizers) if optimizers is None else ([optimizers] if isinstance(optimizers, str)
                                                                  else list(optimizers))
        unknown = [name for name in names if name not in self.optimizers]
        if unknown:
            raise KeyError(f"unknown optimisers {unknown}; the Trainer has {sorted(self.optimizers)}")
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise ValueError(f"the loss to minimise must be a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"step {self.step + 1}: the loss minimised by {names} is {value}; training "
                                     f"stopped (the last checkpoint is {self.checkpoint_path})")
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            self.optimizers[name].step()

    def learning_rates(self) -> dict[str, float]:
        """``{"lr": ...}`` for one optimiser, ``{"lr_<name>": ...}`` for several (their first parameter group)."""
        if len(self.optimizers) == 1:
            return {"lr": float(next(iter(self.optimizers.values())).param_groups[0]["lr"])}
        return {f"lr_{name}": float(optimizer.param_groups[0]["lr"]) for name, optimizer in self.optimizers.items()}

    def _set_train_mode(self) -> None:
        for name, module in self.models.items():
            self.train_mode(name, module)

    # The loop.

    def fit(self, resume: str | Path | None = None, weights_metadata: dict | None = None) -> list[dict]:
        """Train from step 0 or from a checkpoint up to ``stop_at`` or ``steps``; write logs, checkpoints, weights.

        Args:
            resume: a checkpoint written by :meth:`save_checkpoint` (``<stem>.ckpt.safetensors``), or None.
            weights_metadata: extra metadata of the final weights files (e.g. ``{"training": {...}}``).

        Returns:
            the logged rows of the whole run (also in ``<stem>.losses.csv``).

        Raises:
            ValueError: for a checkpoint of another run (see :meth:`load_checkpoint`), or a callback result without
                the ``backward`` loss.
            FloatingPointError: for a non-finite loss to minimise.
        """
        from tqdm import tqdm

        options = self.options
        self.out.parent.mkdir(parents=True, exist_ok=True)
        start = self.load_checkpoint(resume) if resume else 0
        last = options.steps if options.stop_at is None else min(options.stop_at, options.steps)
        self._set_train_mode()
        started = time.perf_counter() - (self.history[-1]["seconds"] if self.history else 0.0)
        bar = tqdm(range(start, last), initial=start, total=options.steps, desc=options.description,
                   disable=not options.progress, dynamic_ncols=True)
        batches = self._batches(start, last) if last > start else iter(())
        for step in bar:
            self.step = step
            batch = move_to_device(next(batches), self.device)
            rates = self.learning_rates()
            losses = self.loss(batch, self)
            if not isinstance(losses, Mapping) or not losses:
                raise ValueError(f"the loss callback must return a non-empty dict of named losses, got {losses!r}")
            reserved = [name for name in losses if name in NOT_LOSS_COLUMNS or name == "lr" or name.startswith("lr_")]
            if reserved:
                raise ValueError(f"the loss callback returned {reserved}: 'step', 'seconds', 'lr' and 'lr_*' are the "
                                 f"Trainer's own columns")
            if options.backward is not None:
                if options.backward not in losses:
                    raise ValueError(f"the loss callback returned {list(losses)}, without {options.backward!r} "
                                     f"(TrainerOptions.backward) to minimise")
                self.update(losses[options.backward])
            row = {"step": step + 1, **{name: _scalar(value, name) for name, value in losses.items()}, **rates}
            for scheduler in self.schedulers.values():
                scheduler.step()
            row["seconds"] = time.perf_counter() - started
            self.history.append(row)
            self.steps_done = step + 1
            shown = options.progress_keys or tuple(losses)[:2]
            bar.set_postfix({name: f"{row[name]:.4f}" for name in shown if name in row})
            done = step + 1
            if self.validation_dataset is not None and (
                    done == last or done % (options.validate_every or options.checkpoint_every) == 0):
                self.run_validation()
            if done % options.checkpoint_every == 0 or done == last:
                self.save_checkpoint()
                self.write_logs()
                if options.keep_weights:
                    for name, module in self.models.items():
                        self.weights_writers[name](module, self.kept_weights_path(name, done),
                                                   {"training": {"step": done, "of_run": self.out.name}})
        bar.close()
        for module in self.models.values():
            module.eval()
        for name, module in self.models.items():
            self.weights_writers[name](module, self.weights_path(name), dict(weights_metadata or {}))
        self.write_logs()
        return self.history

    def run_validation(self) -> dict[str, float]:
        """One pass over the validation dataset with the models in eval mode and no gradients.

        The random generators are restored afterwards (a validation pass never changes what training draws next),
        and the models are put back in training mode. The row (``step`` + the mean of each name over the batches) is
        appended to :attr:`validation_history` and returned.
        """
        from torch.utils.data import DataLoader

        loader = DataLoader(self.validation_dataset, shuffle=False, num_workers=self.options.num_workers,
                            batch_size=self.options.validation_batch_size or self.options.batch_size)
        sums: dict[str, float] = {}
        count = 0
        for module in self.models.values():
            module.eval()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for batch in loader:
                values = self.validate(move_to_device(batch, self.device), self)
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + _scalar(value, name)
                count += 1
        self._set_train_mode()
        row = {"step": self.steps_done, **{name: total / max(count, 1) for name, total in sums.items()}}
        self.validation_history.append(row)
        return row

    # Checkpoints.

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write everything an exact resume needs to one safetensors file (no pickle; written atomically).

        Tensors: ``model.<name>.<key>`` (every model's state dict), ``optimizer.<name>.state.<index>.<key>`` (the
        optimisers' per-parameter tensors), ``rng.torch`` and ``rng.cuda.<device>`` (PyTorch's generator states).
        Metadata (JSON strings): ``format``, ``step`` (steps done), ``seed``, ``batch_size``, ``steps``,
        ``history``, ``validation_history``, ``optimizers`` (parameter groups and non-tensor state), ``schedulers``
        (their state dicts), ``rng`` (Python's and NumPy's global generators), ``models`` (each model's ``config``).

        Returns:
            the path written (default :attr:`checkpoint_path`).

        Raises:
            TypeError: if an optimiser's or scheduler's state holds something JSON cannot represent (naming it).
        """
        from safetensors.torch import save_file

        path = Path(path) if path is not None else self.checkpoint_path
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.models.items():
            for key, value in module.state_dict().items():
                tensors[f"model.{name}.{key}"] = value.detach().cpu().contiguous()
        optimizer_meta = {}
        for name, optimizer in self.optimizers.items():
            state = optimizer.state_dict()
            scalars: dict[str, dict] = {}
            for index, parameter_state in state["state"].items():
                for key, value in parameter_state.items():
                    if torch.is_tensor(value):
                        tensors[f"optimizer.{name}.state.{index}.{key}"] = value.detach().cpu().contiguous()
                    else:
                        scalars.setdefault(str(index), {})[key] = value
            optimizer_meta[name] = {"param_groups": state["param_groups"], "scalars": scalars}
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{index}"] = cuda_state
        numpy_state = np.random.get_state()
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "step": str(self.steps_done),
            "seed": str(self.options.seed),
            "batch_size": str(self.options.batch_size),
            "steps": str(self.options.steps),
            "history": json.dumps(self.history),
            "validation_history": json.dumps(self.validation_history),
            "optimizers": _json("optimiser state", optimizer_meta),
            "schedulers": _json("scheduler state",
                                {name: scheduler.state_dict() for name, scheduler in self.schedulers.items()}),
            "rng": json.dumps({"python": _python_rng_to_json(random.getstate()),
                               "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]}),
            "models": _json("model config", {name: getattr(module, "config", None)
                                             for name, module in self.models.items()}),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        save_file(tensors, str(temporary), metadata=metadata)
        temporary.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> int:
        """Restore what :meth:`save_checkpoint` wrote into this Trainer's models, optimisers, schedulers, logs and
        random generators; returns the number of steps done.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: if it is not a readable checkpoint of this Trainer (format, models, optimisers, schedulers),
                or its seed or batch size differ from the options (the batches would not continue the run).
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ValueError(f"checkpoint {path} is not a readable safetensors file (truncated?): {error}") from error
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {path} has format {metadata.get('format')!r}, expected "
                             f"{CHECKPOINT_FORMAT!r} (written by another program or an older version)")
        for key in ("seed", "batch_size"):
            if int(metadata[key]) != getattr(self.options, key):
                raise ValueError(f"checkpoint {path} was written with {key} {metadata[key]}, this run has "
                                 f"{getattr(self.options, key)}: resuming would not continue the run's batches")
        optimizer_meta = json.loads(metadata["optimizers"])
        scheduler_meta = json.loads(metadata["schedulers"])
        saved_models = {key.split(".")[1] for key in tensors if key.startswith("model.")}
        for kind, saved, wanted in (("models", saved_models, set(self.models)),
                                    ("optimisers", set(optimizer_meta), set(self.optimizers)),
                                    ("schedulers", set(scheduler_meta), set(self.schedulers))):
            if saved != wanted:
                raise ValueError(f"checkpoint {path} holds the {kind} {sorted(saved)}, this run has {sorted(wanted)}")
        for name, module in self.models.items():
            prefix = f"model.{name}."
            try:
                module.load_state_dict({key[len(prefix):]: value for key, value in tensors.items()
                                        if key.startswith(prefix)})
            except RuntimeError as error:
                raise ValueError(f"checkpoint {path} does not fit model {name!r}: {error}") from error
        for name, optimizer in self.optimizers.items():
            prefix = f"optimizer.{name}.state."
            state: dict[int, dict] = {}
            for key, value in tensors.items():
                if key.startswith(prefix):
                    index, entry = key[len(prefix):].split(".", 1)
                    state.setdefault(int(index), {})[entry] = value
            for index, entries in optimizer_meta[name]["scalars"].items():
                state.setdefault(int(index), {}).update(entries)
            try:
                optimizer.load_state_dict({"state": state, "param_groups": optimizer_meta[name]["param_groups"]})
            except (ValueError, KeyError) as error:
                raise ValueError(f"checkpoint {path} does not fit optimiser {name!r}: {error}") from error
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(scheduler_meta[name])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[key] for key in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
        generators = json.loads(metadata["rng"])
        random.setstate(_python_rng_from_json(generators["python"]))
        name, keys, position, has_gauss, cached = generators["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
        self.history = json.loads(metadata["history"])
        self.validation_history = json.loads(metadata["validation_history"])
        self.steps_done = self.step = int(metadata["step"])
        return self.steps_done

    # Logs.

    def write_logs(self) -> None:
        """Write ``<stem>.losses.csv``, ``<stem>.validation.csv`` (with validation) and ``<stem>.losses.png``."""
        write_loss_csv(self.history, self.out.with_name(self.out.stem + ".losses.csv"))
        if self.validation_history:
            write_loss_csv(self.validation_history, self.out.with_name(self.out.stem + ".validation.csv"))
        plot_losses(self.history, self.out.with_name(self.out.stem + ".losses.png"), self.validation_history,
                    self.options.plot_title, self.options.plot_ylabel)

    # Checkpoint averaging.

    def average_checkpoints(self, model: str | None = None, first_step: int | None = None,
                            last_step: int | None = None, out: str | Path | None = None,
                            batch_norm_batches: Iterable | None = None,
                            forward: Callable[[nn.Module, object], object] | None = None) -> nn.Module:
        """Average the weights kept at the checkpoints of a step range (``keep_weights``) into one model.

        Floating-point tensors are averaged (:func:`average_state_dicts`); batch-norm running statistics are the
        average of the checkpoints' unless ``batch_norm_batches`` is given, in which case they are measured again
        on those batches with the averaged weights (:func:`recompute_batch_norm_statistics`, the family's
        ``train_mode`` decides which layers are measured).

        Args:
            model: the model's name (may be None when the Trainer has one model).
            first_step, last_step: the inclusive step range (None = unbounded).
            out: the averaged weights file (default ``<stem>[.<model>].average.safetensors``); written with the
                model's weights writer, metadata ``averaged_from`` (the file names).
            batch_norm_batches, forward: batches and ``forward(module, batch)`` to re-measure batch-norm statistics.

        Returns:
            a copy of the model with the averaged weights, in eval mode (the Trainer's model is unchanged).

        Raises:
            ValueError: for an unknown or missing model name, no kept weights in the range (naming the steps that
                exist), files of another configuration, or ``batch_norm_batches`` without ``forward``.
        """
        from safetensors import safe_open

        if model is None:
            if len(self.models) != 1:
                raise ValueError(f"name the model to average: one of {sorted(self.models)}")
            model = next(iter(self.models))
        if model not in self.models:
            raise ValueError(f"unknown model {model!r}; the Trainer has {sorted(self.models)}")
        if batch_norm_batches is not None and forward is None:
            raise ValueError("re-measuring batch-norm statistics needs forward(module, batch)")
        name_in_files = None if len(self.models) == 1 else model
        files = kept_weights_files(self.out, name_in_files, first_step, last_step)
        if not files:
            existing = [step for step, _ in kept_weights_files(self.out, name_in_files)]
            raise ValueError(f"no weights of {model!r} kept in steps {first_step}..{last_step} beside {self.out} "
                             f"(kept steps: {existing}; train with keep_weights=True)")
        states, configs = [], []
        for _, path in files:
            with safe_open(str(path), framework="pt") as handle:
                configs.append((handle.metadata() or {}).get("config"))
                states.append({key: handle.get_tensor(key) for key in handle.keys()})
        if len(set(configs)) != 1:
            raise ValueError(f"the kept weights {[p.name for _, p in files]} have different configurations")
        averaged = copy.deepcopy(self.models[model]).cpu()
        averaged.load_state_dict(average_state_dicts(states))
        if batch_norm_batches is not None:
            recompute_batch_norm_statistics(averaged, batch_norm_batches, forward,
                                            lambda module: self.train_mode(model, module))
        averaged.eval()
        if out is None:
            prefix = self.out.stem if name_in_files is None else f"{self.out.stem}.{model}"
            out = self.out.with_name(f"{prefix}.average.safetensors")
        self.weights_writers[model](averaged, Path(out), {"averaged_from": [path.name for _, path in files]})
        return averaged


def write_loss_csv(rows: list[dict], path: Path) -> None:
    """One CSV row per dict; the columns are every key in the order first seen (missing values left empty)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)


def loss_columns(rows: list[dict]) -> list[str]:
    """The loss columns of logged rows: every key but ``step``, ``seconds`` and learning rates (``lr``, ``lr_*``)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(key for key in row if key not in NOT_LOSS_COLUMNS
                                     and key != "lr" and not key.startswith("lr_")))
    return list(columns)


def plot_losses(history: list[dict], path: Path, validation_history: list[dict] | None = None,
                title: str = "training losses", ylabel: str = "loss") -> None:
    """Every logged loss against the step (moving mean over ``len // 50`` steps), validation losses dashed."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, len(history) // 50)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for rows, prefix, style in ((history, "", "-"), (validation_history or [], "validation ", "--")):
        steps = np.array([row["step"] for row in rows])
        smoothing = window if prefix == "" else 1
        for key in loss_columns(rows):
            values = np.array([row.get(key, np.nan) for row in rows], dtype=float)
            if smoothing > 1:
                values = np.convolve(values, np.ones(smoothing) / smoothing, mode="valid")
            axis.plot(steps[len(steps) - len(values):], values, style, label=prefix + key)
    axis.set_xlabel("step")
    axis.set_ylabel(f"{ylabel} (moving mean of {window})" if window > 1 else ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _scalar(value, name: str) -> float:
    """A logged value as a float; ValueError naming it for a tensor that is not a scalar."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"loss {name!r} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach())
    return float(value)


def _json(what: str, value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"the {what} cannot be written to a checkpoint as JSON: {error}") from error


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss
