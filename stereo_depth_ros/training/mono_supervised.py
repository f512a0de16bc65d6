"""Supervised training of the monocular depth networks (light U-Net, original U-Net, refinement CNNs C, SC, SCRX,
SCRXU, SCRDU) on depth targets from stereo matching (pseudo ground truth), on the generic
:class:`~stereo_depth_ros.training.trainer.Trainer`.

Targets, as paper 002 made its KITTI targets by stereo matching (section 4.1), from the real pairs themselves
(:func:`build_pseudo_ground_truth`, computed once and cached, by default under ``runs/mono_pseudo_gt``):

1. the package's stereo network (registry ``"coarse-to-fine"``, packaged weights) and SGBM (registry ``"sgbm"``,
   search range a quarter of the image width rounded up to 16, at most 192 px) on each rectified pair at its size;
2. the target disparity is SGBM's where both agree (``|d_sgbm - d_net| <= max(2 px, 10 % of d_net)``: SGBM is the
   more accurate where it answers), the network's where SGBM gives no value (texture-poor tissue, where the
   network's smooth fill is the better guess), and unknown (NaN) where SGBM answers but disagrees, on the black
   border of either view, and in the left band ``x < 5th percentile of the network's disparity`` (no match there);
3. the frame is cropped to the bounding box of its active (non-black) area and resized to ``working_width``
   pixels wide (320), aspect ratio kept, the disparity map with it (nearest for the unknown mask);
4. the target is the *normalised relative depth* ``t = (1 / d) / P98(1 / d)`` clipped to [0, 1] (P98: the 98th
   percentile over the frame's known pixels): depth up to the rig's ``f B`` (``depth = f B / d``, zero
   principal-point offset), normalised per frame as paper 001 normalises its labels to [0, 1]. The networks
   therefore predict relative depth: metric depth needs one scale per frame (median scaling against GT for
   evaluation, or, in the node, a ``depth_scale`` or the median ratio to the stereo depth).

Validation split for model selection (never a test set): every 5th pair (natural order, starting at the 3rd) of
each training folder, after the held-out list is removed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from stereo_depth_ros.data.folder_dataset import path_in_list, read_pair_list
from stereo_depth_ros.data.mono_folder import MonoDepthFolderDataset, depth_target_path
from stereo_depth_ros.data.stereo_folder import black_border_mask
from stereo_depth_ros.device import resolve_device
from stereo_depth_ros.images import pair_stereo_folders, read_image_bgr
from stereo_depth_ros.losses import l2_depth_loss, unet_depth_loss
from stereo_depth_ros.models import mono_unet, refinement_cnn
from stereo_depth_ros.models.weights import save_weights
from stereo_depth_ros.resources import check_training_folders, default_data_root, split_file
from stereo_depth_ros.training.model_card import machine_facts, mean_of_last_steps, write_model_card
from stereo_depth_ros.training.trainer import Trainer, TrainerOptions, start_run

MODEL_NAME = "network"
DEFAULT_CACHE = Path("runs/mono_pseudo_gt")
WORKING_WIDTH = 320
VALIDATION_EVERY, VALIDATION_OFFSET = 5, 2
AGREE_PX, AGREE_FRACTION = 2.0, 0.10
NORMALISING_PERCENTILE = 98.0
MIN_RELATIVE_DEPTH = 1e-3  # the estimators' floor, so that AbsRel and log metrics stay finite


@dataclass(frozen=True)
class SupervisedFamily:
    """One trainable monocular network: how to build it, its weights' architecture name, its loss and size rule."""

    build: Callable[[dict], torch.nn.Module]
    config: dict
    architecture: str
    loss: str  # "unet" (paper 001's L1 + SSIM + edge) or "l2" (paper 002)
    size_multiple: int
    paper: str


UNET_PAPER = "Realtime Single Image Depth Estimation (papers/001)"
REFINEMENT_PAPER = "Single-Stage Refinement CNN for Depth Estimation in Monocular Images (papers/002)"
FAMILIES: dict[str, SupervisedFamily] = {
    "unet": SupervisedFamily(mono_unet.build_light_unet, mono_unet.LightUNet().config, mono_unet.LIGHT_ARCHITECTURE,
                             "unet", mono_unet.SIZE_MULTIPLE, UNET_PAPER),
    "unet-original": SupervisedFamily(mono_unet.build_original_unet, {"width": 64}, mono_unet.ORIGINAL_ARCHITECTURE,
                                      "unet", mono_unet.SIZE_MULTIPLE, UNET_PAPER + ", baseline (Ronneberger 2015)"),
    **{variant: SupervisedFamily(refinement_cnn.build_refinement_cnn, {"variant": variant, "width": 32},
                                 refinement_cnn.ARCHITECTURE, "l2", refinement_cnn.SIZE_MULTIPLE, REFINEMENT_PAPER)
       for variant in refinement_cnn.VARIANTS},
}
SUPERVISED_MODELS = tuple(FAMILIES)

# Training folders under endoscopic_stereo/: every set with no GT that is not evaluation-only.
TRAINING_SETS = ("bdis_invivo/6", "bdis_invivo/20", "bdis_invivo/21", "hamlyn_invivo_tpsnet", "opencas_exvivo",
                 "scared_extra")


def sgbm_search_range(width: int) -> int:
    """SGBM's search range for a ``width``-pixel-wide pair: a quarter of the width rounded up to a multiple of 16,
    between 16 and 192 pixels.

    Example:
        >>> sgbm_search_range(360), sgbm_search_range(640), sgbm_search_range(1280)
        (96, 160, 192)
    """
    return int(min(192, max(16, 16 * math.ceil(width / 4 / 16))))


def gate_disparity(network: np.ndarray, sgbm: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The pseudo ground-truth disparity of step 2 of the module's docstring.

    Args:
        network: (H, W) float32 disparity of the stereo network, pixels.
        sgbm: (H, W) float32 SGBM disparity, pixels, NaN or <= 0 where it gives no value.
        valid: (H, W) bool, False on the black border of either view.

    Returns:
        (H, W) float32 disparity in pixels, NaN where unknown.

    Example:
        >>> net = np.ones((1, 6), np.float32)  # 1 px everywhere: the left band is column 0
        >>> sgbm = np.array([[1.5, 1.5, np.nan, 5.0, 1.0, 1.0]], np.float32)
        >>> gate_disparity(net, sgbm, np.array([[True] * 5 + [False]])).tolist()
        [[nan, 1.5, 1.0, nan, 1.0, nan]]
    """
    if not (network.shape == sgbm.shape == valid.shape):
        raise ValueError(f"network {network.shape}, SGBM {sgbm.shape} and mask {valid.shape} differ in size")
    sgbm_known = np.isfinite(sgbm) & (sgbm > 0)
    network_known = np.isfinite(network) & (network > 0)
    agree = sgbm_known & network_known & (np.abs(sgbm - network) <= np.maximum(AGREE_PX, AGREE_FRACTION * network))
    target = np.full(network.shape, np.nan, np.float32)
    target[agree] = sgbm[agree]
    fill = ~sgbm_known & network_known
    target[fill] = network[fill]
    target[~valid] = np.nan
    if network_known.any():
        band = int(math.ceil(np.percentile(network[network_known], 5)))
        target[:, :band] = np.nan
    return target


def normalised_relative_depth(disparity: np.ndarray) -> np.ndarray:
    """Step 4 of the module's docstring: ``(1 / d) / P98(1 / d)`` clipped to [0, 1], NaN where ``d`` is unknown.

    Raises:
        ValueError: if no pixel has a positive disparity.

    Example:
        >>> [round(float(v), 3) for v in normalised_relative_depth(np.array([[1.0, 2.0, np.nan]], np.float32))[0]]
        [1.0, 0.505, nan]
    """
    known = np.isfinite(disparity) & (disparity > 0)
    if not known.any():
        raise ValueError("the disparity map has no positive value to make a depth target from")
    depth = np.full(disparity.shape, np.nan, np.float32)
    depth[known] = 1.0 / disparity[known]
    scale = np.percentile(depth[known], NORMALISING_PERCENTILE)
    return np.clip(depth / scale, 0.0, 1.0).astype(np.float32)


def crop_and_resize(image: np.ndarray, disparity: np.ndarray, active: np.ndarray, working_width: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: crop to the active area's bounding box and resize to ``working_width`` (aspect ratio kept).

    Returns:
        ``(image (h, w, 3) uint8, disparity (h, w) float32 with NaN unknown)``; the disparity is not rescaled (the
        target is normalised afterwards).
    """
    rows, columns = np.nonzero(active)
    if rows.size == 0:
        raise ValueError("the frame has no active (non-black) area")
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    image, disparity = image[y0:y1, x0:x1], disparity[y0:y1, x0:x1]
    height = max(1, round(image.shape[0] * working_width / image.shape[1]))
    size = (working_width, height)
    known = np.isfinite(disparity)
    resized_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    resized = cv2.resize(np.where(known, disparity, 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(known.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    keep = cv2.resize(known.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool) & (weight > 0.5)
    result = np.full(resized.shape, np.nan, np.float32)
    result[keep] = resized[keep] / weight[keep]
    return resized_image, result


def training_pairs(data_root: str | Path, sets: tuple[str, ...] = TRAINING_SETS, exclude: list[str] | None = None
                   ) -> dict[str, list[tuple[str, tuple[Path, Path]]]]:
    """The training pairs of ``data_root`` (``.../endoscopic_stereo``) split into ``"train"`` and ``"validation"``.

    Returns:
        ``{"train": [(tag, (left, right)), ...], "validation": [...]}``; ``tag`` names the sample uniquely
        (``bdis_invivo-6-201``).

    Raises:
        FileNotFoundError: if a set folder does not exist or has no pair layout.
    """
    root = Path(data_root)
    split: dict[str, list] = {"train": [], "validation": []}
    for name in sets:
        folder = root / name
        candidates = [(folder / "images_rectified" / "left", folder / "images_rectified" / "right"),
                      (folder / "left", folder / "right")]
        for left_dir, right_dir in candidates:
            if left_dir.is_dir() and right_dir.is_dir():
                pairs = pair_stereo_folders(left_dir, right_dir)
                break
        else:
            raise FileNotFoundError(f"{folder} has neither left/ and right/ nor images_rectified/left and right")
        pairs = [pair for pair in pairs if not (exclude and path_in_list(pair[0], exclude))]
        for index, pair in enumerate(pairs):
            tag = f"{name.replace('/', '-')}-{pair[0].stem}"
            part = "validation" if index % VALIDATION_EVERY == VALIDATION_OFFSET else "train"
            split[part].append((tag, pair))
    return split


def build_pseudo_ground_truth(data_root: str | Path, out: str | Path = DEFAULT_CACHE,
                              exclude: list[str] | None = None, sets: tuple[str, ...] = TRAINING_SETS,
                              working_width: int = WORKING_WIDTH, progress: bool = True) -> dict:
    """Compute the pseudo ground truth once and cache it as ``out/{train,validation}/<tag>.png`` +
    ``<tag>.depth.npy`` (the :class:`~stereo_depth_ros.data.mono_folder.MonoDepthFolderDataset` layout). Pairs whose
    files exist already are skipped.

    Returns:
        a summary: pairs per split, the mean share of known target pixels, the sources.

    Raises:
        FileNotFoundError: if a data folder is missing.
    """
    from tqdm import tqdm

    from stereo_depth_ros.models.registry import create_estimator

    out = Path(out)
    split = training_pairs(data_root, sets, exclude)
    network = create_estimator("coarse-to-fine")
    known_shares: list[float] = []
    for part, pairs in split.items():
        (out / part).mkdir(parents=True, exist_ok=True)
        for tag, (left_path, right_path) in tqdm(pairs, desc=f"pseudo ground truth ({part})", disable=not progress):
            image_path = out / part / f"{tag}.png"
            target_path = depth_target_path(image_path)
            if image_path.is_file() and target_path.is_file():
                known_shares.append(float(np.isfinite(np.load(target_path)).mean()))
                continue
            left, right = read_image_bgr(left_path), read_image_bgr(right_path)
            active = black_border_mask(left) & black_border_mask(right)
            network_disparity = network.estimate(left, right)[-1]
            sgbm = create_estimator("sgbm", max_disparity=sgbm_search_range(left.shape[1]))
            sgbm_disparity = sgbm.estimate(left, right)[0]
            disparity = gate_disparity(network_disparity, sgbm_disparity, active)
            image, disparity = crop_and_resize(left, disparity, active, working_width)
            target = normalised_relative_depth(disparity)
            cv2.imwrite(str(image_path), image)
            np.save(target_path, target)
            known_shares.append(float(np.isfinite(target).mean()))
    return {"train_pairs": len(split["train"]), "validation_pairs": len(split["validation"]),
            "mean_known_pct": 100.0 * float(np.mean(known_shares)) if known_shares else 0.0,
            "sources": {"stereo_network": "coarse-to-fine (packaged weights)", "sgbm": "registry sgbm"},
            "cache": str(out)}


SYNTHETIC_CACHE = Path("runs/mono_synthetic_gt")


def build_synthetic_ground_truth(data_root: str | Path, out: str | Path = SYNTHETIC_CACHE,
                                 sets: tuple[int, ...] = (30, 31), working_width: int = WORKING_WIDTH,
                                 progress: bool = True) -> dict:
    """Rendered training frames with their true depth, in the layout of :func:`build_pseudo_ground_truth`.

    Paper 001 trains the light U-Net on collected ground-truth depth (NYU-Depth v2) and names rendered data as the
    way to get such labels; the BDIS synthetic sets are our rendered frames with exact depth. Only the sets given
    here are written (30 and 31 by default: sets 32 and 33 are the monocular test sets and must never be passed).
    Each frame: the left image and its GT disparity (``f B / depth``) through steps 3 and 4 of the module docstring
    (active-area crop, ``working_width`` wide, normalised relative depth), so the targets mean exactly what the
    pseudo ground truth means. Split: every 5th frame of each set (natural order, starting at the 3rd) goes to
    ``validation``, as :func:`training_pairs` splits the real sets.

    Args:
        data_root: the ``endoscopic_stereo`` folder (``bdis_synthetic/<set>`` inside it).

    Returns:
        a summary: frames per split, the mean share of known target pixels, the sets.

    Raises:
        ValueError: if a set is 32 or 33 (the test sets) or the list is empty.
        FileNotFoundError: if a set folder or a depth file is missing.
    """
    from tqdm import tqdm

    from stereo_depth_ros.evaluation.datasets import bdis_synthetic

    sets = tuple(int(s) for s in sets)
    if not sets or set(sets) & {32, 33}:
        raise ValueError(f"synthetic ground-truth sets must be non-empty and leave out the test sets 32 and 33, "
                         f"got {sets}")
    out = Path(out)
    known_shares: list[float] = []
    counts = {"train": 0, "validation": 0}
    for set_id in sets:
        dataset = bdis_synthetic(Path(data_root).parent, (set_id,))
        for index, sample in enumerate(tqdm(dataset, total=len(dataset), desc=f"synthetic ground truth {set_id}",
                                            disable=not progress)):
            part = "validation" if index % VALIDATION_EVERY == VALIDATION_OFFSET else "train"
            (out / part).mkdir(parents=True, exist_ok=True)
            image_path = out / part / f"bdis_synthetic-{sample.name.split('-')[-1].replace('/', '-')}.png"
            active = black_border_mask(sample.left_bgr) & np.isfinite(sample.gt_disparity)
            image, disparity = crop_and_resize(sample.left_bgr, sample.gt_disparity, active, working_width)
            target = normalised_relative_depth(disparity)
            cv2.imwrite(str(image_path), image)
            np.save(depth_target_path(image_path), target)
            known_shares.append(float(np.isfinite(target).mean()))
            counts[part] += 1
    return {"train_frames": counts["train"], "validation_frames": counts["validation"], "sets": list(sets),
            "mean_known_pct": 100.0 * float(np.mean(known_shares)) if known_shares else 0.0, "cache": str(out),
            "source": "BDIS synthetic ground-truth depth (rendered), not stereo matching"}


def median_scaled_abs_rel(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over the batch of AbsRel ``mean(|s p - t| / t)`` with the per-image median scale ``s = median(t) /
    median(p)`` over the known pixels (``t > 0``): the validation score that picks the best model (scale-free, as
    the evaluation's median scaling)."""
    values = []
    for p, t, m in zip(prediction, target, mask):
        known = (m > 0) & (t > 0)
        if known.sum() < 10:
            continue
        p, t = p[known].clamp(min=MIN_RELATIVE_DEPTH), t[known]
        scale = t.median() / p.median()
        values.append(float(((scale * p - t).abs() / t).mean()))
    return float(np.mean(values)) if values else float("nan")


def mono_loss_callback(family: SupervisedFamily):
    """The Trainer's loss callback: paper 001's loss for the U-Nets, paper 002's L2 for the refinement CNNs.

    The batch holds ``image`` (B, 3, h, w), ``depth`` and ``mask`` (B, 1, h, w) (see
    :class:`~stereo_depth_ros.data.mono_folder.MonoDepthFolderDataset`).

    Returns:
        ``loss(batch, trainer) -> {"total": scalar tensor, ...}``: for the U-Nets also ``l1``, ``ssim``, ``edge``.
    """
    def loss(batch: dict, trainer: Trainer) -> dict:
        prediction = trainer.models[MODEL_NAME](batch["image"])
        if family.loss == "unet":
            return unet_depth_loss(prediction, batch["depth"], batch["image"], batch["mask"])
        return {"total": l2_depth_loss(prediction, batch["depth"], batch["mask"])}

    return loss


def mono_validate_callback(family: SupervisedFamily):
    """The Trainer's validation callback: the training loss and the median-scaled AbsRel on the validation split."""
    loss = mono_loss_callback(family)

    def validate(batch: dict, trainer: Trainer) -> dict:
        prediction = trainer.models[MODEL_NAME](batch["image"])
        values = {"loss": float(loss(batch, trainer)["total"])}
        values["abs_rel"] = median_scaled_abs_rel(prediction, batch["depth"], batch["mask"])
        return values

    return validate


@dataclass
class TrainMonoOptions:
    """Options of ``stereo-depth-ros train-mono`` for the supervised models.

    Attributes:
        model: one of :data:`SUPERVISED_MODELS` ("unet", "unet-original", "c", "sc", "scrx", "scrxu", "scrdu").
        out: output weights ``.safetensors``; CSV, PNG, checkpoint and model card beside it.
        data: folders of training images with depth targets (``<name>.png`` + ``<name>.depth.npy``); None: build
            the pseudo ground truth from ``data_root`` into ``cache`` and use its ``train`` folder.
        validation: folders of validation images with targets (None: ``cache/validation`` when ``data`` is None).
        data_root: the ``endoscopic_stereo`` folder (for the pseudo ground truth).
        exclude: held-out pair list (left-image paths) never trained on (config/splits/bdis_invivo_test.txt).
        cache: pseudo ground-truth folder.
        synthetic_sets: BDIS synthetic sets whose true depth is added to training and validation
            (:func:`build_synthetic_ground_truth`; never 32 or 33); empty: none. synthetic_cache: their folder.
        synthetic_repeat: how many times the synthetic training folder is listed (its frames are drawn that many
            times as often as a real frame; the real pseudo ground truth has far more frames).
        steps, batch_size, crop (height, width), lr (Adam, cosine decay), seed, checkpoint_every, stop_at, resume,
        device, threads, progress: as train-stereo.
    """

    model: str
    out: str | Path
    data: list[str] | None = None
    validation: list[str] | None = None
    data_root: str | Path = field(default_factory=lambda: str(default_data_root() / "endoscopic_stereo"))
    exclude: str | None = field(default_factory=lambda: str(split_file()))
    cache: str | Path = DEFAULT_CACHE
    synthetic_sets: tuple[int, ...] = ()
    synthetic_cache: str | Path = SYNTHETIC_CACHE
    synthetic_repeat: int = 1
    steps: int = 1500
    batch_size: int = 8
    crop: tuple[int, int] = (128, 160)
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 250
    stop_at: int | None = None
    resume: str | None = None
    device: str = "cpu"
    threads: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)


def check_model(model: str) -> SupervisedFamily:
    """The :class:`SupervisedFamily` of ``model``.

    Raises:
        ValueError: for a name that is not a supervised monocular model (listing them).
    """
    if model not in FAMILIES:
        raise ValueError(f"unknown supervised monocular model {model!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[model]


def train_mono(options: TrainMonoOptions) -> dict:
    """Train one supervised monocular model; write weights, CSV, PNG, checkpoint and model card.

    Returns:
        the model card (dict) written beside the weights.

    Raises:
        ValueError: for an unknown model, bad options (crop not a multiple of the network's size multiple) or
            test data among the folders (:func:`~stereo_depth_ros.resources.check_training_folders`).
        FileNotFoundError: for missing data folders.
    """
    family = check_model(options.model)
    pseudo_sets = [Path(options.data_root) / name for name in TRAINING_SETS] if options.data is None else []
    check_training_folders([*(options.data or []), *(options.validation or []), *pseudo_sets],
                           f"train-mono {options.model}")
    crop = tuple(int(n) for n in options.crop)
    if len(crop) != 2 or min(crop) <= 0 or crop[0] % family.size_multiple or crop[1] % family.size_multiple:
        raise ValueError(f"crop must be two positive multiples of {family.size_multiple} for {options.model}, "
                         f"got {options.crop}")
    trainer_options = TrainerOptions(
        out=options.out, steps=options.steps, batch_size=options.batch_size, seed=options.seed,
        checkpoint_every=options.checkpoint_every, stop_at=options.stop_at, backward="total",
        progress=options.progress, description=f"train-mono {options.model}", progress_keys=("total",),
        plot_title=f"train-mono {options.model}: {'L1 + SSIM + edge' if family.loss == 'unet' else 'L2'} loss",
        plot_ylabel="loss")
    start_run(trainer_options, options.threads, options.seed)
    device = resolve_device(options.device)
    pseudo = None
    data, validation = options.data, options.validation
    if data is None:
        exclude = read_pair_list(options.exclude) if options.exclude else None
        pseudo = build_pseudo_ground_truth(options.data_root, options.cache, exclude, progress=options.progress)
        data = [str(Path(options.cache) / "train")]
        validation = validation or [str(Path(options.cache) / "validation")]
    synthetic = None
    if options.synthetic_sets:
        synthetic = build_synthetic_ground_truth(options.data_root, options.synthetic_cache,
                                                 tuple(options.synthetic_sets), progress=options.progress)
        if options.synthetic_repeat < 1:
            raise ValueError(f"synthetic_repeat must be at least 1, got {options.synthetic_repeat}")
        data = [*data, *[str(Path(options.synthetic_cache) / "train")] * options.synthetic_repeat]
        validation = [*(validation or []), str(Path(options.synthetic_cache) / "validation")]
    dataset = MonoDepthFolderDataset(data, crop=crop, augment=True,
                                     samples_per_epoch=options.steps * options.batch_size, seed=options.seed)
    validation_dataset = (MonoDepthFolderDataset(validation, crop=crop, augment=False, seed=options.seed + 1)
                          if validation else None)
    model = family.build(dict(family.config)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, options.steps) / options.steps)))

    def writer(module: torch.nn.Module, path: Path, metadata: dict) -> None:
        save_weights(module, path, family.architecture, module.config, metadata)

    trainer = Trainer(trainer_options, models={MODEL_NAME: model}, optimizers={MODEL_NAME: optimizer},
                      loss=mono_loss_callback(family), train_dataset=dataset, schedulers={MODEL_NAME: scheduler},
                      validation_dataset=validation_dataset,
                      validate=mono_validate_callback(family) if validation_dataset is not None else None,
                      weights_writers=writer, device=device)
    history = trainer.fit(resume=options.resume, weights_metadata={"training": {
        "model": options.model, "steps": options.steps, "crop": list(crop), "seed": options.seed}})
    final = mean_of_last_steps(history, 50)
    options_dict = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()}
    options_dict.pop("extra", None)
    card = {
        "model": options.model, "architecture": family.architecture, "config": model.config, "paper": family.paper,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "output": "normalised relative depth in [0, 1] (per-frame (1/d) / P98(1/d)); metric depth needs a scale "
                  "per frame (median scaling, depth_scale, or alignment to stereo depth)",
        "targets": "pseudo ground truth from stereo matching: SGBM where it agrees with the coarse-to-fine network, "
                   "the network where SGBM gives no value (stereo_depth_ros/training/mono_supervised.py)"
                   + (f"; plus the true depth of BDIS synthetic sets {list(options.synthetic_sets)}"
                      if synthetic else ""),
        "ground_truth_used": (f"BDIS synthetic sets {list(options.synthetic_sets)} (never 32 or 33)"
                              if synthetic else False),
        "data": [str(d) for d in data], "validation_data": [str(v) for v in validation or []],
        "pseudo_ground_truth": pseudo, "synthetic_ground_truth": synthetic, "held_out_pairs": options.exclude,
        "images_trained_on": len(dataset.samples),
        "steps": options.steps, "batch_size": options.batch_size, "crop": list(crop), "lr": options.lr,
        "loss": ("(2 L1 + 1 (1 - SSIM) + 5 edge) / 8, paper 001 eq. 7 (beta = 1 our choice)"
                 if family.loss == "unet" else "L2, paper 002 eq. 1 (per-pixel mean)"),
        "options": options_dict,
        "wall_time_s": history[-1]["seconds"] if history else 0.0,
        "machine": machine_facts(device),
        "final_losses": final,
        "validation": trainer.validation_history[-1] if trainer.validation_history else None,
        "validation_history": trainer.validation_history,
        **options.extra,
    }
    return json.loads(write_model_card(options.out, card).read_text())


def weights_from_checkpoint(model: str, checkpoint: str | Path, out: str | Path, note: str = "",
                            facts: dict | None = None) -> dict:
    """Write the weights and model card of a run stopped before its last step, from its Trainer checkpoint
    (``<stem>.ckpt.safetensors``: the model's tensors at the last checkpoint, the loss and validation history).

    Args:
        model: the supervised model name (one of :data:`SUPERVISED_MODELS`).
        checkpoint: the Trainer checkpoint.
        out: the weights file to write (``.safetensors``); the card goes beside it.
        note: why the run was stopped early (recorded in the card).
        facts: more facts for the card (the data, the held-out list, the command that made the run).

    Returns:
        the model card written (with ``sha256``).

    Raises:
        ValueError: for an unknown model, or a checkpoint without this model's tensors.
        FileNotFoundError: if the checkpoint does not exist.
    """
    from safetensors import safe_open

    family = check_model(model)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    prefix = f"model.{MODEL_NAME}."
    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        state = {key[len(prefix):]: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}
    if not state:
        raise ValueError(f"checkpoint {checkpoint} holds no tensors of a model named {MODEL_NAME!r}")
    config = json.loads(metadata.get("models", "{}")).get(MODEL_NAME) or dict(family.config)
    network = family.build(dict(config))
    network.load_state_dict(state, strict=True)
    history = json.loads(metadata.get("history", "[]"))
    validation_history = json.loads(metadata.get("validation_history", "[]"))
    step = int(json.loads(metadata.get("step", "0")))
    save_weights(network.eval(), out, family.architecture, network.config,
                 {"training": {"model": model, "steps_done": step, "from_checkpoint": checkpoint.name}})
    run_card_path = checkpoint.with_name(checkpoint.name.replace(".ckpt.safetensors", ".json"))
    card = {
        "model": model, "architecture": family.architecture, "config": network.config, "paper": family.paper,
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "output": "normalised relative depth in [0, 1] (per-frame (1/d) / P98(1/d)); metric depth needs a scale "
                  "per frame (median scaling, depth_scale, or alignment to stereo depth)",
        "targets": "pseudo ground truth from stereo matching: SGBM where it agrees with the coarse-to-fine network, "
                   "the network where SGBM gives no value (stereo_depth_ros/training/mono_supervised.py)",
        "ground_truth_used": False,
        "steps_done": step, "steps_scheduled": json.loads(metadata.get("steps", "0")),
        "batch_size": json.loads(metadata.get("batch_size", "0")),
        "stopped_early": note or None,
        "wall_time_s": history[-1]["seconds"] if history else 0.0,
        "final_losses": mean_of_last_steps(history, 50),
        "validation": validation_history[-1] if validation_history else None,
        "validation_history": validation_history,
        "run_card": json.loads(run_card_path.read_text()) if run_card_path.is_file() else None,
        "machine": machine_facts(),
        **(facts or {}),
    }
    return json.loads(write_model_card(out, card).read_text())
