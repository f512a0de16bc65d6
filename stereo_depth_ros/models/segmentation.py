"""SPP-LinkNet-34: surgical-instrument segmentation (binary, parts, type) and its estimator.

Source: paper 003 of /work/shared/papers ("SEGSRNet", section II-B and Fig. 2): an encoder-decoder with a ResNet
encoder (7x7 stem convolution, spatial max-pooling, residual blocks; "the lighter ResNet18 as its encoder"), a
spatial pyramid pooling (SPP) block at the bottleneck for multi-scale context, and a LinkNet decoder (Chaurasia and
Culurciello, "LinkNet: Exploiting Encoder Representations for Efficient Semantic Segmentation", 2017): every decoder
block is 1x1 convolution (channels / 4) -> 3x3 transposed convolution (stride 2) -> 1x1 convolution, and its output
is *added* to the encoder feature of the same resolution (additive skips). The final classifier is LinkNet's:
3x3 transposed convolution (stride 2), 3x3 convolution, 3x3 convolution to the classes (as in Shvets et al.,
"Automatic Instrument Segmentation in Robot-Assisted Surgery Using Deep Learning", 2018, LinkNet-34).

Written here from those descriptions (no torchvision): :class:`BasicBlock` and :class:`ResNetEncoder` follow He et
al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Table 1, ResNet-18 column (2, 2, 2, 2 basic blocks).

What is scaled down so that it trains on two shared CPU cores (the defaults of :class:`SPPLinkNet`):

- the encoder widths are ``base_width * (1, 2, 4, 8)`` with ``base_width = 16`` (ResNet-18 has 64: a quarter of the
  channels, about 1/16 of the multiply-adds); the depth (2, 2, 2, 2 basic blocks) is ResNet-18's;
- the SPP block pools at three window sizes (3, 5, 9, stride 1, as SPP-Net's pyramid levels in the size-agnostic
  form of YOLO's SPP) plus one global average level, each reduced by a 1x1 convolution and concatenated with the
  input, then fused by a 1x1 convolution back to the bottleneck width (He et al., "Spatial Pyramid Pooling in Deep
  Convolutional Networks", TPAMI 2015; stride-1 windows keep the graph valid for any input size and ONNX);
- no ImageNet pre-training (none is available here): trained from scratch.

Heads: one shared encoder and decoder, one LinkNet classifier per task (:data:`TASKS`):

- ``"binary"``: 1 channel, a logit of "instrument" (sigmoid -> probability);
- ``"parts"``: 4 classes in the EndoVis 2017 order background, shaft, wrist, claspers (ids 0..3; the EndoVis 2017
  mask values are 0, 10, 20, 30, see :data:`PART_MASK_VALUES`);
- ``"type"``: 8 classes, background and the 7 instrument types of the EndoVis 2018 type labels (:data:`TYPE_NAMES`).

Input: (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 32. Output per head: (B, C, H, W) logits.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stereo_depth_ros.images import check_image
from stereo_depth_ros.models.base import Estimator, check_image_size
from stereo_depth_ros.models.inference import BACKENDS, NetworkRunner
from stereo_depth_ros.models.weights import load_weights as load_weights_file
from stereo_depth_ros.models.weights import save_weights as save_weights_file
from stereo_depth_ros.models.weights import sha256_file

ARCHITECTURE = "spp-linknet-34/v1"
TASKS = ("binary", "parts", "type")
TASK_CHANNELS = {"binary": 1, "parts": 4, "type": 8}
PART_NAMES = ("background", "shaft", "wrist", "claspers")
PART_MASK_VALUES = (0, 10, 20, 30)  # EndoVis 2017 part coding of PART_NAMES
TYPE_NAMES = ("background", "bipolar forceps", "prograsp forceps", "large needle driver",
              "monopolar curved scissors", "ultrasound probe", "suction instrument", "clip applier")
INPUT_MULTIPLE = 32  # the encoder downsamples by 32
IMAGE_MEAN = (0.485, 0.456, 0.406)  # RGB normalisation inside the network (ImageNet statistics)
IMAGE_STD = (0.229, 0.224, 0.225)
DEFAULT_WORKING_HEIGHT = 256


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution (no bias, "same" padding for odd kernels) -> batch norm -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, Fig. 2 left): two 3x3 convolutions with batch norm and an identity or
    1x1-projection shortcut. (B, in, H, W) -> (B, out, H / stride, W / stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class ResNetEncoder(nn.Module):
    """ResNet encoder: 7x7 stride-2 stem, 3x3 stride-2 max-pooling, four stages of basic blocks (the first at stride
    1, the others at stride 2). Returns the four stage outputs at 1/4, 1/8, 1/16 and 1/32 of the input size, with
    ``widths`` channels."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, widths[0], 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, in_channels = [], widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks)):
            layers = [BasicBlock(in_channels, width, 1 if index == 0 else 2)]
            layers += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool(self.stem(x))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class SpatialPyramidPooling(nn.Module):
    """SPP block at the bottleneck: the input, max-pooled at windows ``pool_sizes`` (stride 1) and globally
    average-pooled, each level reduced to ``channels / 4`` by a 1x1 convolution, concatenated and fused back to
    ``channels`` by a 1x1 convolution. (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, channels: int, pool_sizes: tuple[int, ...] = (3, 5, 9)) -> None:
        super().__init__()
        reduced = max(channels // 4, 1)
        self.pool_sizes = tuple(pool_sizes)
        self.reduce = nn.ModuleList(conv_bn_relu(channels, reduced, 1) for _ in range(len(pool_sizes) + 1))
        self.fuse = conv_bn_relu(channels + reduced * (len(pool_sizes) + 1), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = [x]
        for size, reduce in zip(self.pool_sizes, self.reduce):
            levels.append(reduce(F.max_pool2d(x, size, 1, size // 2)))
        global_level = self.reduce[-1](x.mean(dim=(2, 3), keepdim=True))
        levels.append(global_level.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.fuse(torch.cat(levels, 1))


class LinkNetDecoderBlock(nn.Module):
    """LinkNet decoder block: 1x1 conv (in -> in / 4), 3x3 transposed conv stride 2 (doubles h and w), 1x1 conv
    (in / 4 -> out), each with batch norm and ReLU. (B, in, h, w) -> (B, out, 2h, 2w)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        middle = max(in_channels // 4, 1)
        self.reduce = conv_bn_relu(in_channels, middle, 1)
        self.up = nn.Sequential(nn.ConvTranspose2d(middle, middle, 3, 2, 1, output_padding=1, bias=False),
                                nn.BatchNorm2d(middle), nn.ReLU(inplace=True))
        self.expand = conv_bn_relu(middle, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.up(self.reduce(x)))


class LinkNetClassifier(nn.Module):
    """LinkNet's final block, from the last decoder block's output at 1/2 resolution (a ResNet encoder whose first
    stage keeps the 1/4 resolution, as in Shvets et al.'s LinkNet-34) to full resolution: 3x3 transposed conv
    stride 2, 3x3 conv, 3x3 conv to ``classes`` logits. (B, in, h, w) -> (B, classes, 2h, 2w)."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        middle = max(in_channels // 2, 8)
        self.body = nn.Sequential(
            nn.ConvTranspose2d(in_channels, middle, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(middle),
            nn.ReLU(inplace=True), conv_bn_relu(middle, middle, 3), nn.Conv2d(middle, classes, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SPPLinkNet(nn.Module):
    """SPP-LinkNet-34 (see the module docstring) with one classifier per task.

    Args:
        base_width: channels of the first encoder stage (ResNet-18: 64; default 16, see the module docstring).
        blocks: basic blocks per encoder stage (ResNet-18: 2, 2, 2, 2).
        pool_sizes: SPP max-pooling windows at the bottleneck (stride 1).
        tasks: the heads to build, a subset of :data:`TASKS` in that order.

    Forward: ``image`` (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 32 -> a tuple of logits, one per
    task in ``tasks`` order, each (B, TASK_CHANNELS[task], H, W) float32.

    Raises:
        ValueError: for an unknown task, no task, widths or blocks that are not positive, or (in forward) an input
            that is not (B, 3, H, W) with H and W multiples of 32.
    """

    ARCHITECTURE = ARCHITECTURE

    def __init__(self, base_width: int = 16, blocks: tuple[int, ...] = (2, 2, 2, 2),
                 pool_sizes: tuple[int, ...] = (3, 5, 9), tasks: tuple[str, ...] = TASKS) -> None:
        super().__init__()
        tasks = tuple(tasks)
        if not tasks or any(task not in TASKS for task in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {tasks}")
        if int(base_width) != base_width or base_width < 4 or len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"base_width must be an integer >= 4 and blocks four counts >= 1, got {base_width}, "
                             f"{tuple(blocks)}")
        widths = tuple(int(base_width) * factor for factor in (1, 2, 4, 8))
        self.config = {"base_width": int(base_width), "blocks": list(blocks), "pool_sizes": list(pool_sizes),
                       "tasks": list(tasks)}
        self.tasks = tasks
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self.encoder = ResNetEncoder(widths, tuple(blocks))
        self.spp = SpatialPyramidPooling(widths[3], tuple(pool_sizes))
        self.decoders = nn.ModuleList([LinkNetDecoderBlock(widths[3], widths[2]),
                                       LinkNetDecoderBlock(widths[2], widths[1]),
                                       LinkNetDecoderBlock(widths[1], widths[0]),
                                       LinkNetDecoderBlock(widths[0], widths[0])])
        self.heads = nn.ModuleDict({f"head_{task}": LinkNetClassifier(widths[0], TASK_CHANNELS[task]) for task in tasks})

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The shared decoder output at 1/2 of the input size: (B, base_width, H / 2, W / 2).

        Decoder 4 (bottleneck, after SPP) -> + stage 3 -> decoder 3 -> + stage 2 -> decoder 2 -> + stage 1 ->
        decoder 1 (LinkNet's additive skips)."""
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] % INPUT_MULTIPLE or image.shape[3] % INPUT_MULTIPLE:
            raise ValueError(f"SPP-LinkNet takes (B, 3, H, W) with H and W multiples of {INPUT_MULTIPLE}, got "
                             f"{tuple(image.shape)}")
        stage1, stage2, stage3, stage4 = self.encoder((image - self.mean) / self.std)
        x = self.decoders[0](self.spp(stage4)) + stage3
        x = self.decoders[1](x) + stage2
        x = self.decoders[2](x) + stage1
        return self.decoders[3](x)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shared = self.features(image)
        return tuple(self.heads[f"head_{task}"](shared) for task in self.tasks)


def save_weights(model: SPPLinkNet, path: str | Path, extra_metadata: dict | None = None) -> None:
    """Write the network to a safetensors file (architecture :data:`ARCHITECTURE`, its ``config``)."""
    save_weights_file(model, path, ARCHITECTURE, dict(model.config), extra_metadata)


def load_weights(path: str | Path) -> SPPLinkNet:
    """The network stored in a safetensors file by :func:`save_weights` (eval mode, CPU; no pickle).

    Raises:
        stereo_depth_ros.models.weights.WeightsError: for a missing, corrupt or foreign file (naming it).
    """
    def build(config: dict) -> SPPLinkNet:
        return SPPLinkNet(base_width=config["base_width"], blocks=tuple(config["blocks"]),
                          pool_sizes=tuple(config["pool_sizes"]), tasks=tuple(config["tasks"]))

    model, _ = load_weights_file(path, ARCHITECTURE, build)
    return model


def default_weights_path() -> Path:
    """The packaged weights (``stereo_depth_ros/weights/spp_linknet_binary.safetensors``)."""
    return Path(__file__).resolve().parent.parent / "weights" / "spp_linknet_binary.safetensors"


def working_size(height: int, width: int, working_height: int) -> tuple[int, int]:
    """The network's input size for an image: height scaled to ``working_height`` (aspect kept), both sides
    rounded up to multiples of 32.

    Example:
        >>> working_size(1024, 1280, 256), working_size(480, 854, 256)
        ((256, 320), (256, 480))
    """
    check_image_size(height, width)
    scaled_width = width * working_height / height
    return (int(math.ceil(working_height / INPUT_MULTIPLE) * INPUT_MULTIPLE),
            int(math.ceil(scaled_width / INPUT_MULTIPLE) * INPUT_MULTIPLE))


class SegmentationEstimator(Estimator):
    """SPP-LinkNet-34 as an :class:`~stereo_depth_ros.models.base.Estimator` (registered as ``"spp-linknet"``,
    ``"spp-linknet-parts"`` and ``"spp-linknet-type"``).

    ``predict(image_bgr)`` -> ``{"mask": (H, W) uint8 class ids, "probability": (H, W) float32}``: for the binary
    task the mask is 0 background / 1 instrument (probability >= ``threshold``) and ``probability`` is the
    instrument probability in [0, 1]; for ``parts`` the ids are 0 background, 1 shaft, 2 wrist, 3 claspers and for
    ``type`` 0..7 (:data:`TYPE_NAMES`), with ``probability`` the probability of the chosen class.

    The image is resized (area average) so that its height is ``working_height`` pixels (aspect kept), padded at the
    bottom and right to multiples of 32, run, and the logits are cropped and resized back (bilinear) to the input
    size before the decision.

    Args:
        weights: safetensors file (None: the packaged one); or ``model`` instead.
        model: an already built :class:`SPPLinkNet`.
        task: ``"binary"``, ``"parts"`` or ``"type"`` (the weights must have that head).
        working_height: network input height in pixels (default 256, the training scale).
        threshold: binary decision threshold on the probability (0, 1).
        backend: "auto" (onnxruntime on the CPU), "torch" or "onnx". device: "auto", "cpu", "cuda".
        cache_dir: ONNX cache folder.

    Raises:
        WeightsError: for a missing or wrong weights file. ValueError: for a task the weights lack, a bad
            threshold, working height, backend or device.
    """

    def __init__(self, weights: str | Path | None = None, model: SPPLinkNet | None = None, task: str = "binary",
                 working_height: int = DEFAULT_WORKING_HEIGHT, threshold: float = 0.5, backend: str = "auto",
                 device: str = "auto", cache_dir: str | Path | None = None, name: str = "spp-linknet") -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if isinstance(working_height, bool) or int(working_height) != working_height or working_height < 32:
            raise ValueError(f"working_height must be an integer >= 32 pixels, got {working_height!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.name = name
        self.task = task
        self.threshold = float(threshold)
        self.working_height = int(working_height)
        self.weights_path = None if model is not None else Path(weights or default_weights_path())
        digest = None
        if model is None:
            model = load_weights(self.weights_path)
            digest = sha256_file(self.weights_path)
        if task not in model.tasks:
            raise ValueError(f"the weights {self.weights_path or 'given'} have the heads {model.tasks}, not {task!r}")
        self.model = model.eval()
        self._head = model.tasks.index(task)
        output_names = [f"logits_{name}" for name in model.tasks]
        self.runner = NetworkRunner(model, ["image"], output_names, backend=backend, device=device,
                                    weights_sha256=digest, config=dict(model.config), cache_dir=cache_dir)
        self.backend = self.runner.backend

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` images (ONNX export or cache load)."""
        network_height, network_width = working_size(height, width, self.working_height)
        self.runner.prepare((1, 3, network_height, network_width))

    def logits(self, image_bgr: np.ndarray) -> np.ndarray:
        """The selected head's logits resized to the image: (C, H, W) float32 (C = 1, 4 or 8).

        Raises:
            ValueError: unless the image is a non-empty (H, W, 3) uint8 array.
        """
        check_image(image_bgr)
        height, width = image_bgr.shape[:2]
        network_height, network_width = working_size(height, width, self.working_height)
        scaled_width = int(round(width * self.working_height / height))
        resized = cv2.resize(image_bgr, (scaled_width, self.working_height),
                             interpolation=cv2.INTER_AREA if self.working_height < height else cv2.INTER_LINEAR)
        padded = cv2.copyMakeBorder(resized, 0, network_height - self.working_height, 0,
                                    network_width - scaled_width, cv2.BORDER_REPLICATE)
        tensor = torch.from_numpy(np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1))).float()[None] / 255.0
        logits = self.runner.run(tensor)[self._head][0, :, :self.working_height, :scaled_width]
        return np.stack([cv2.resize(channel, (width, height), interpolation=cv2.INTER_LINEAR)
                         for channel in logits]).astype(np.float32)

    def predict(self, image_bgr: np.ndarray) -> dict:
        """``{"mask": (H, W) uint8, "probability": (H, W) float32 in [0, 1]}`` (see the class docstring)."""
        logits = self.logits(image_bgr)
        if self.task == "binary":
            probability = 1.0 / (1.0 + np.exp(-np.clip(logits[0], -60, 60)))
            return {"mask": (probability >= self.threshold).astype(np.uint8),
                    "probability": probability.astype(np.float32)}
        shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
        probabilities = shifted / shifted.sum(axis=0, keepdims=True)
        mask = probabilities.argmax(axis=0).astype(np.uint8)
        return {"mask": mask, "probability": probabilities.max(axis=0).astype(np.float32)}
