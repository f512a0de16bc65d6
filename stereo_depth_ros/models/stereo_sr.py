"""Stereo super-resolution with parallax attention (the SR part of SEGSRNet, paper 003 section II-A), its
single-image baseline, the bicubic degradation, and the estimator behind the registry names ``"stereo-sr-x2"``,
``"stereo-sr-x4"``, ``"single-image-sr-x2"`` and ``"single-image-sr-x4"``.

Network (:class:`StereoSuperResolutionNet`), per view, with shared weights for the two views:

- feature extraction: a 3x3 convolution, the combined channel and spatial attention block (:class:`CCSB`: a
  channel attention block, squeeze-and-excitation style, followed by a spatial attention block on the channel mean
  and maximum), an atrous spatial pyramid pooling block (:class:`ASPP`, dilations 1, 2, 4) and ``num_rdb`` residual
  dense blocks (:class:`ResidualDenseBlock`);
- cross-view interaction (stereo only): the bidirectional parallax attention module (:class:`BiPAM`, as iPASSR,
  Wang et al., "Symmetric Parallax Attention for Stereo Image Super-Resolution", CVPRW 2021): the outputs of every
  RDB are concatenated (multi-scale features), passed through batch norm, a transition residual block and 1x1
  convolutions to queries and keys; the attention between each row of the left view and the same row of the right
  view gives ``M_right_to_left`` and ``M_left_to_right`` ((B, H, W, W), rows sum to 1); the valid masks
  ``V = tanh(5 * diag(M_right_to_left @ M_left_to_right))`` (left-right-left cycle consistency) keep the warped
  features of the other view where they are consistent and fill occluded regions with the target view's own
  features: ``fused = V * warped + (1 - V) * own``;
- reconstruction: a refinement block (1x1 convolution fusing the view's own and the fused features, then a CCSB),
  an RDB, a channel attention layer, ``num_rdb_reconstruction`` more RDBs, a 3x3 convolution, a sub-pixel layer
  (``PixelShuffle``; two x2 steps for x4) and a 3x3 convolution to RGB, added to the bicubic upscale of the input
  (global residual, as iPASSR). The last convolution starts at zero, so an untrained network returns bicubic.

Scaled down against the paper to train on 2 shared CPU cores (docs/super_resolution.md says what it costs): 32
feature channels (iPASSR: 64), 2 RDBs of 3 layers with growth 16 in the extractor (iPASSR: 4 RDBs of 4 layers,
growth 24; SEGSRNet's extractor is deeper still), 1 RDB after the channel attention layer (paper: more), ASPP with
3 branches.

The single-image baseline (:class:`SingleImageSuperResolutionNet` = ``StereoSuperResolutionNet(stereo=False)``)
has the same extractor and reconstruction without :class:`BiPAM`; its refinement block fuses the view's features
with themselves, so it has nearly the same size.

Degradation (:func:`bicubic_downscale`): HR cropped to a multiple of the scale, then PyTorch's bicubic
interpolation with antialiasing (``F.interpolate(mode="bicubic", antialias=True)``, a = -0.75, the kernel widened by
the scale as MATLAB's ``imresize`` does) and rounding to 8 bits. The bicubic baseline upscale is the same
interpolation without antialiasing (:func:`bicubic_upscale`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stereo_depth_ros.images import check_stereo_pair, crop_to_multiple
from stereo_depth_ros.models.base import Estimator, check_image_size

STEREO_ARCHITECTURE = "stereo-sr-parallax-attention/v1"
SINGLE_ARCHITECTURE = "single-image-sr/v1"
SCALES = (2, 4)
OUTPUT_KIND = "image-pair"
DEFAULT_CONFIG = {"scale": 2, "channels": 32, "growth": 16, "rdb_layers": 3, "num_rdb": 2,
                  "num_rdb_reconstruction": 1, "stereo": True}


def check_scale(scale) -> int:
    """``scale`` as an int in :data:`SCALES`.

    Raises:
        ValueError: for any other value.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or int(scale) not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return int(scale)


class ChannelAttention(nn.Module):
    """Channel attention (squeeze and excitation): ``x * sigmoid(W2 relu(W1 mean_hw(x)))``; (B, C, H, W) -> same."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x)


class SpatialAttention(nn.Module):
    """Spatial attention (CBAM): ``x * sigmoid(conv7x7([mean_c(x), max_c(x)]))``; (B, C, H, W) -> same."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
        return x * torch.sigmoid(self.conv(pooled))


class CCSB(nn.Module):
    """Combined channel and spatial attention block (paper 003, section II-A): channel attention, then spatial
    attention, with a residual connection; (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.spatial(self.channel(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 3x3 convolutions with dilations (1, 2, 4) in parallel, concatenated and fused
    by a 1x1 convolution, with a residual connection; (B, C, H, W) -> same."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.fuse = nn.Conv2d(channels * len(dilations), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([F.leaky_relu(branch(x), 0.1) for branch in self.branches], 1))


class ResidualDenseBlock(nn.Module):
    """Residual dense block (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018):
    ``layers`` densely connected 3x3 convolutions of ``growth`` channels, local 1x1 fusion and a residual
    connection; (B, C, H, W) -> same."""

    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels + i * growth, growth, 3, padding=1) for i in range(layers))
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.1))
        return x + self.fuse(torch.cat(features, 1))


class ResidualBlock(nn.Module):
    """Transition residual block: ``x + conv3x3(leaky_relu(conv3x3(x)))``; (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


def parallax_attention(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parallax attention maps between the rows of a rectified pair (iPASSR, section 3.2).

    Args:
        query: (B, C, H, W) float features of the left view.
        key: (B, C, H, W) float features of the right view.

    Returns:
        ``(M_right_to_left, M_left_to_right)``, each (B, H, W, W) float, rows summing to 1:
        ``M_right_to_left[b, y, i, j]`` is the weight of right pixel ``(y, j)`` for left pixel ``(y, i)``
        (softmax over ``j`` of the dot product of the mean-centred features); ``M_left_to_right`` is the softmax
        of the transposed scores over the left pixels.
    """
    query = query - query.mean(3, keepdim=True)
    key = key - key.mean(3, keepdim=True)
    score = torch.einsum("bchi,bchj->bhij", query, key)
    return torch.softmax(score, -1), torch.softmax(score.transpose(2, 3), -1)


def valid_mask(attention_here: torch.Tensor, attention_back: torch.Tensor) -> torch.Tensor:
    """The valid (non-occluded) mask of one view from the left-right-left cycle (iPASSR, eq. 5).

    ``V[b, y, i] = tanh(5 * sum_j attention_here[b, y, i, j] * attention_back[b, y, j, i])``: near 1 where a
    pixel's attention into the other view comes back to it, near 0 in occluded regions.

    Args:
        attention_here: (B, H, W, W) from this view to the other (rows sum to 1).
        attention_back: (B, H, W, W) from the other view back to this one.

    Returns:
        (B, 1, H, W) float in [0, 1).
    """
    cycle = (attention_here * attention_back.transpose(2, 3)).sum(-1)
    return torch.tanh(5.0 * cycle).unsqueeze(1)


def warp_with_attention(attention: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Features of the other view moved into this one: ``out[b, c, y, i] = sum_j attention[b, y, i, j] *
    features[b, c, y, j]``; attention (B, H, W, W), features (B, C, H, W) -> (B, C, H, W)."""
    return torch.einsum("bhij,bchj->bchi", attention, features)


class BiPAM(nn.Module):
    """Bidirectional parallax attention module with multi-scale input and occlusion handling (iPASSR's biPAM as
    used in paper 003, section II-A).

    Args:
        channels: feature channels of each RDB output and of the result.
        scales: how many RDB outputs are concatenated (the multi-scale input).

    Forward: ``(features_left, features_right, multi_left, multi_right)`` with features (B, C, H, W) and multi
    (B, scales * C, H, W) -> ``(fused_left, fused_right, attention)`` where ``fused_*`` is (B, C, H, W) and
    ``attention`` the dict ``right_to_left``, ``left_to_right`` (B, H, W, W), ``valid_left``, ``valid_right``
    (B, 1, H, W).
    """

    #: Training only (not part of the configuration; the output is the same either way): with True the RDB outputs
    #: enter the attention without gradient, so the attention's own terms train biPAM alone and never pull the
    #: per-view features that the reconstruction shares with the single-image network.
    detach_input: bool = False

    def __init__(self, channels: int, scales: int) -> None:
        super().__init__()
        width = channels * scales
        self.norm = nn.BatchNorm2d(width)
        self.transition = ResidualBlock(width)
        self.query = nn.Conv2d(width, channels, 1)
        self.key = nn.Conv2d(width, channels, 1)

    def forward(self, features_left, features_right, multi_left, multi_right):
        if self.detach_input:
            multi_left, multi_right = multi_left.detach(), multi_right.detach()
        buffer_left = self.transition(self.norm(multi_left))
        buffer_right = self.transition(self.norm(multi_right))
        right_to_left, left_to_right = parallax_attention(self.query(buffer_left), self.key(buffer_right))
        valid_left = valid_mask(right_to_left, left_to_right)
        valid_right = valid_mask(left_to_right, right_to_left)
        warped_left = warp_with_attention(right_to_left, features_right)
        warped_right = warp_with_attention(left_to_right, features_left)
        fused_left = valid_left * warped_left + (1 - valid_left) * features_left
        fused_right = valid_right * warped_right + (1 - valid_right) * features_right
        attention = {"right_to_left": right_to_left, "left_to_right": left_to_right, "valid_left": valid_left,
                     "valid_right": valid_right}
        return fused_left, fused_right, attention


class StereoSuperResolutionNet(nn.Module):
    """Stereo (or, with ``stereo=False``, single-image) super-resolution network (module docstring).

    Args:
        scale: 2 or 4.
        channels, growth, rdb_layers, num_rdb, num_rdb_reconstruction: sizes (module docstring).
        stereo: True: with :class:`BiPAM`; False: the single-image baseline (each view alone).

    Forward: ``(left, right)`` (B, 3, h, w) float RGB in [0, 1] low resolution, any h, w >= 1 -> ``(sr_left,
    sr_right)`` (B, 3, scale*h, scale*w) float (not clipped); with ``return_attention=True`` also the attention
    dict of :class:`BiPAM` (empty for the single-image network).

    Raises:
        ValueError: for a scale not in :data:`SCALES` or a size that is not positive.
    """

    def __init__(self, scale: int = 2, channels: int = 32, growth: int = 16, rdb_layers: int = 3, num_rdb: int = 2,
                 num_rdb_reconstruction: int = 1, stereo: bool = True) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        for name, value in (("channels", channels), ("growth", growth), ("rdb_layers", rdb_layers),
                            ("num_rdb", num_rdb), ("num_rdb_reconstruction", num_rdb_reconstruction)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.stereo = bool(stereo)
        self.config = {"scale": self.scale, "channels": channels, "growth": growth, "rdb_layers": rdb_layers,
                       "num_rdb": num_rdb, "num_rdb_reconstruction": num_rdb_reconstruction, "stereo": self.stereo}
        self.ARCHITECTURE = STEREO_ARCHITECTURE if self.stereo else SINGLE_ARCHITECTURE
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.ccsb = CCSB(channels)
        self.aspp = ASPP(channels)
        self.rdbs = nn.ModuleList(ResidualDenseBlock(channels, growth, rdb_layers) for _ in range(num_rdb))
        self.bipam = BiPAM(channels, num_rdb) if self.stereo else None
        self.refine = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), CCSB(channels))
        self.rdb_after_refine = ResidualDenseBlock(channels, growth, rdb_layers)
        self.channel_attention = ChannelAttention(channels)
        self.rdbs_reconstruction = nn.Sequential(*(ResidualDenseBlock(channels, growth, rdb_layers)
                                                   for _ in range(num_rdb_reconstruction)))
        self.body_conv = nn.Conv2d(channels, channels, 3, padding=1)
        steps = [2] * (self.scale // 2)
        upsample = []
        for factor in steps:
            upsample += [nn.Conv2d(channels, channels * factor * factor, 3, padding=1), nn.PixelShuffle(factor),
                         nn.LeakyReLU(0.1, inplace=True)]
        self.upsample = nn.Sequential(*upsample)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view features: (B, 3, h, w) -> ((B, C, h, w) last RDB output, (B, num_rdb * C, h, w) all RDB
        outputs)."""
        x = self.aspp(self.ccsb(F.leaky_relu(self.head(image), 0.1)))
        outputs = []
        for rdb in self.rdbs:
            x = rdb(x)
            outputs.append(x)
        return x, torch.cat(outputs, 1)

    def reconstruct(self, image: torch.Tensor, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) LR image, its features and the fused features -> (B, 3, scale*h, scale*w)."""
        x = self.refine(torch.cat((own, other), 1))
        x = self.rdbs_reconstruction(self.channel_attention(self.rdb_after_refine(x)))
        x = self.tail(self.upsample(self.body_conv(x) + own))
        return x + bicubic_upscale_tensor(image, self.scale)

    def forward(self, left: torch.Tensor, right: torch.Tensor, return_attention: bool = False):
        features_left, multi_left = self.extract(left)
        features_right, multi_right = self.extract(right)
        if self.stereo:
            fused_left, fused_right, attention = self.bipam(features_left, features_right, multi_left, multi_right)
        else:
            fused_left, fused_right, attention = features_left, features_right, {}
        sr_left = self.reconstruct(left, features_left, fused_left)
        sr_right = self.reconstruct(right, features_right, fused_right)
        if return_attention:
            return sr_left, sr_right, attention
        return sr_left, sr_right


def SingleImageSuperResolutionNet(**config) -> StereoSuperResolutionNet:  # noqa: N802  (a constructor)
    """The single-image baseline: :class:`StereoSuperResolutionNet` with ``stereo=False`` (same arguments)."""
    config["stereo"] = False
    return StereoSuperResolutionNet(**config)


def build_network(config: dict) -> StereoSuperResolutionNet:
    """Build the network from a weights file's ``config`` (keys of :data:`DEFAULT_CONFIG`).

    Raises:
        ValueError: for unknown keys or bad values.
    """
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown super-resolution network configuration keys {unknown}")
    return StereoSuperResolutionNet(**{**DEFAULT_CONFIG, **config})


def bicubic_upscale_tensor(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upscale (a = -0.75, no antialiasing) of (B, C, h, w) float -> (B, C, scale*h, scale*w)."""
    return F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)


def _to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1].transpose(2, 0, 1))).float()[None] / 255.0


def _to_uint8_bgr(image_rgb: torch.Tensor | np.ndarray) -> np.ndarray:
    array = np.asarray(image_rgb, dtype=np.float32)[0].transpose(1, 2, 0)[..., ::-1]
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def bicubic_downscale(image_bgr: np.ndarray, scale: int) -> np.ndarray:
    """The low-resolution image of the standard degradation (module docstring).

    Args:
        image_bgr: (H, W, 3) uint8 high-resolution image.
        scale: 2 or 4.

    Returns:
        (H // scale, W // scale, 3) uint8 (the HR image is first cropped to multiples of ``scale``).

    Raises:
        ValueError: for a bad scale, an image that is not (H, W, 3) uint8, or smaller than the scale.
    """
    scale = check_scale(scale)
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 \
            or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {getattr(image_bgr, 'shape', type(image_bgr))} "
                         f"{getattr(image_bgr, 'dtype', '')}")
    image = crop_to_multiple(image_bgr, scale)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]
    small = F.interpolate(tensor, size=(image.shape[0] // scale, image.shape[1] // scale), mode="bicubic",
                          align_corners=False, antialias=True)
    return np.clip(np.round(small[0].numpy().transpose(1, 2, 0)), 0, 255).astype(np.uint8)


def bicubic_upscale(image_bgr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: (h, w, 3) uint8 -> (scale*h, scale*w, 3) uint8 (a = -0.75, rounded, clipped).

    Raises:
        ValueError: for a bad scale or an image that is not (h, w, 3) uint8.
    """
    scale = check_scale(scale)
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 \
            or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) uint8 image, got {getattr(image_bgr, 'shape', type(image_bgr))}")
    tensor = torch.from_numpy(np.ascontiguousarray(image_bgr.transpose(2, 0, 1))).float()[None]
    big = bicubic_upscale_tensor(tensor, scale)
    return np.clip(np.round(big[0].numpy().transpose(1, 2, 0)), 0, 255).astype(np.uint8)


class SuperResolutionEstimator(Estimator):
    """A stereo pair in, the super-resolved pair out: ``predict(left, right) -> {"image-pair": (left_sr,
    right_sr)}``, BGR uint8 (H, W, 3) in, BGR uint8 (scale*H, scale*W, 3) out.

    Args:
        name: the registered name (``"stereo-sr-x2"``, ...).
        scale: 2 or 4; must match the weights.
        stereo: whether the network is the stereo one (the weights' architecture is checked).
        weights: a ``.safetensors`` file (None: the packaged one of the registry entry; if that is absent, an
            untrained network, which returns bicubic, with a warning).
        backend: "auto", "torch" or "onnx" (:class:`~stereo_depth_ros.models.inference.NetworkRunner`).
        device: "auto", "cpu" or "cuda".
        cache_dir: ONNX cache folder (None: the default).

    Raises:
        ValueError: for a bad scale, backend or device; weights of the other scale.
        stereo_depth_ros.models.weights.WeightsError: for a missing or wrong weights file (naming it).
    """

    def __init__(self, name: str, scale: int, stereo: bool, weights: str | Path | None = None,
                 backend: str = "auto", device: str = "cpu", cache_dir: str | Path | None = None) -> None:
        import warnings

        from stereo_depth_ros.models.inference import NetworkRunner
        from stereo_depth_ros.models.weights import load_weights, sha256_file

        self.name = name
        self.scale = check_scale(scale)
        architecture = STEREO_ARCHITECTURE if stereo else SINGLE_ARCHITECTURE
        if weights is None:
            from stereo_depth_ros.models.registry import model_spec

            default = model_spec(name).default_weights
            weights = default if default is not None and Path(default).is_file() else None
            if weights is None:
                warnings.warn(f"no packaged weights for {name}; the untrained network returns bicubic upscales",
                              stacklevel=2)
        digest = None
        if weights is None:
            module = build_network({"scale": self.scale, "stereo": bool(stereo)})
            self.metadata: dict = {}
        else:
            module, self.metadata = load_weights(weights, architecture, build_network)
            digest = sha256_file(weights)
            if module.scale != self.scale:
                raise ValueError(f"weights {weights} are for scale x{module.scale}, model {name} is x{self.scale}")
        self.weights = None if weights is None else Path(weights)
        self.config = dict(module.config)
        self.runner = NetworkRunner(module, ["left", "right"], ["sr_left", "sr_right"], backend=backend,
                                    device=device, weights_sha256=digest, config=self.config, cache_dir=cache_dir)
        self.backend = self.runner.backend

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for LR inputs of ``height`` x ``width`` pixels (ONNX export or cache load)."""
        check_image_size(height, width)
        self.runner.prepare((1, 3, height, width), (1, 3, height, width))

    def predict(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> dict:
        """Super-resolve a rectified pair.

        Args:
            left_bgr, right_bgr: (H, W, 3) uint8 BGR of one size.

        Returns:
            ``{"image-pair": (left_sr, right_sr)}``, each (scale*H, scale*W, 3) uint8 BGR.

        Raises:
            ValueError: for images that are not a same-size (H, W, 3) uint8 pair (naming what is wrong).
        """
        check_stereo_pair(left_bgr, right_bgr)
        for label, image in (("left", left_bgr), ("right", right_bgr)):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"{label} image must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        sr_left, sr_right = self.runner.run(_to_tensor(left_bgr), _to_tensor(right_bgr))
        return {OUTPUT_KIND: (_to_uint8_bgr(sr_left), _to_uint8_bgr(sr_right))}

    def super_resolve(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``predict(left, right)["image-pair"]``."""
        return self.predict(left_bgr, right_bgr)[OUTPUT_KIND]

    def describe(self) -> str:
        """One line: name, scale, backend, weights."""
        return json.dumps({"model": self.name, "scale": self.scale, "backend": self.backend,
                           "weights": None if self.weights is None else str(self.weights)})


def create_estimator(name: str, scale: int, stereo: bool, **options) -> SuperResolutionEstimator:
    """Build a :class:`SuperResolutionEstimator` (the registry's build function)."""
    return SuperResolutionEstimator(name, scale, stereo, **options)
