"""The self-supervised sub-pixel DispNet of paper 004 (monocular depth from one image, trained on stereo pairs).

Source: the package's paper 004, "A Depth Estimation Framework Based on Unsupervised Learning and Cross-Modal
Translation", section 3.1-3.3 (figures 1-3) and "Post-processing" (section 4): an encoder like ResNet18 whose
residual blocks replace their two 3x3 convolutions by a 1x3 and a 3x1 convolution (the "feature residual blocks",
FRB, grouped in "feature residual groups", FRG), a spatial and channel attention module at 1/32 of the input (the
paper's reference 29, CBAM: Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018), and a decoder of
two up-convolution blocks (nearest-neighbour upsampling + convolution) followed by three sub-pixel blocks
(convolution + PixelShuffle; Shi et al., CVPR 2016, the paper's reference 11) back to the input resolution, with
skip connections from the encoder. From the left image alone it predicts a left and a right disparity at four
scales (1, 1/2, 1/4, 1/8 of the input), as monodepth does (Godard et al., "Unsupervised Monocular Depth Estimation
with Left-Right Consistency", CVPR 2017, the paper's reference 7).

Disparities are fractions of the image width (a sigmoid times ``max_disparity_fraction``, as monodepth), so one
network serves any input size: in pixels of an image ``W`` pixels wide the disparity is ``fraction * W``. With the
training rig's calibration stored in the weights (focal length ``f`` in pixels at the image width ``W_rig`` and the
baseline ``B`` in metres), depth in metres is ``Z = f B / (fraction * W_rig)`` whatever size the image is resized
to; it is metric only for that rig (see :func:`disparity_fraction_to_depth`).

Scaled down against the paper to train on two CPU cores (all in :class:`SubPixelDispNet`'s defaults): encoder
widths (32, 32, 64, 128, 256) instead of ResNet18's (64, 64, 128, 256, 512); decoder widths (128, 64, 32, 16, 16);
input 192x256 instead of 256x512.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from stereo_depth_ros.geometry import disparity_to_depth

ARCHITECTURE = "mono-dispnet-subpixel/v1"
NUM_SCALES = 4
POST_PROCESS_BORDER = 0.05  # monodepth's flip post-processing: 5 % of the width at each border, then a 5 % ramp


def factorised_conv(in_channels: int, out_channels: int, kernel: tuple[int, int], stride: tuple[int, int]
                    ) -> nn.Conv2d:
    """One 1-D convolution (``kernel`` (1, 3) or (3, 1)) with 'same' padding along its long side, no bias (a batch
    norm follows)."""
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)


class FactorisedResidualBlock(nn.Module):
    """Paper 004's feature residual block (FRB, figure 3): ResNet's basic block with its two 3x3 convolutions
    replaced by a 1x3 and a 3x1 convolution (each with batch norm; ReLU between them and after the sum).

    A stride of 2 halves the width in the 1x3 convolution and the height in the 3x1 convolution; the shortcut is
    then a strided 1x1 convolution with batch norm (also when the channel count changes).

    Args:
        in_channels, out_channels: feature channels.
        stride: 1 or 2.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride), float32.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_1x3 = factorised_conv(in_channels, out_channels, (1, 3), (1, stride))
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv_3x1 = factorised_conv(out_channels, out_channels, (3, 1), (stride, 1))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv_1x3(x)), inplace=True)
        y = self.bn2(self.conv_3x1(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def feature_residual_group(in_channels: int, out_channels: int, stride: int, blocks: int = 2) -> nn.Sequential:
    """Paper 004's feature residual group (FRG, figure 2): ``blocks`` factorised residual blocks, the first with
    ``stride`` (two per group, as ResNet18)."""
    layers = [FactorisedResidualBlock(in_channels, out_channels, stride)]
    layers += [FactorisedResidualBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class SpatialChannelAttention(nn.Module):
    """Spatial and channel attention (CBAM, Woo et al. 2018; paper 004, section 3.1, at 1/32 of the input).

    Channel attention: a shared two-layer MLP (reduction ``reduction``) on the spatial mean and maximum, summed,
    sigmoid, multiplied per channel. Spatial attention: a 7x7 convolution on the channel mean and maximum, sigmoid,
    multiplied per pixel.

    Shapes: (B, C, H, W) -> (B, C, H, W), float32.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel_mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                         nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel_mlp(x.mean((2, 3), keepdim=True)) + self.channel_mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(channel)
        spatial = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
        return x * torch.sigmoid(self.spatial(spatial))


def conv_elu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution + ELU (monodepth's decoder activation)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ELU(inplace=True))


class UpConvBlock(nn.Module):
    """Paper 004's up-convolution block: nearest-neighbour 2x upsampling, a 3x3 convolution (ELU), concatenation
    with the encoder's skip features of that resolution, and a 3x3 convolution (ELU).

    Shapes: (B, in_channels, H, W) and skip (B, skip_channels, 2H, 2W) -> (B, out_channels, 2H, 2W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = conv_elu(in_channels, out_channels)
        self.fuse = conv_elu(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.fuse(x if skip is None else torch.cat((x, skip), 1))


class SubPixelBlock(nn.Module):
    """Paper 004's sub-pixel block (Shi et al., CVPR 2016): a 3x3 convolution to ``4 * out_channels`` channels
    (ELU), PixelShuffle(2) (channels to a 2x2 neighbourhood), concatenation with the skip features, 3x3 convolution
    (ELU).

    Shapes: (B, in_channels, H, W) and skip (B, skip_channels, 2H, 2W) or None -> (B, out_channels, 2H, 2W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.expand = conv_elu(in_channels, 4 * out_channels)
        self.shuffle = nn.PixelShuffle(2)
        self.fuse = conv_elu(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.shuffle(self.expand(x))
        return self.fuse(x if skip is None else torch.cat((x, skip), 1))


class SubPixelDispNet(nn.Module):
    """Paper 004's depth prediction network: left image in, left and right disparity pyramids out.

    Encoder (1/2 .. 1/32): 7x7 convolution stride 2 + batch norm + ReLU (1/2), 3x3 max-pool (1/4), four feature
    residual groups (1/4, 1/8, 1/16, 1/32), spatial and channel attention at 1/32. Decoder: up-convolution blocks to
    1/16 and 1/8, sub-pixel blocks to 1/4, 1/2 and 1/1, each joined with the encoder features of its resolution.
    Disparity heads (3x3 convolution to 2 channels, sigmoid times ``max_disparity_fraction``) at 1/8, 1/4, 1/2 and
    1/1.

    Args:
        encoder_channels: widths of the stem and the four groups (ResNet18: 64, 64, 128, 256, 512).
        decoder_channels: widths of the decoder at 1/16, 1/8, 1/4, 1/2, 1/1.
        max_disparity_fraction: the largest disparity, as a fraction of the image width (monodepth: 0.3).
        focal_length_px, image_width_px, baseline_m: the training rig's calibration (focal length in pixels at an
            image width of ``image_width_px`` pixels, baseline in metres), for metric depth; None when unknown.

    Input: (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 32 (normalised inside the network).
    :meth:`forward_pyramid` returns the four scales; :meth:`forward` only the finest (for inference and ONNX).

    Raises:
        ValueError: for wrong channel lists, a non-positive ``max_disparity_fraction`` or calibration, or an input
            that is not (B, 3, H, W) with H and W multiples of 32.
    """

    ARCHITECTURE = ARCHITECTURE
    SIZE_MULTIPLE = 32

    def __init__(self, encoder_channels: tuple[int, ...] = (32, 32, 64, 128, 256),
                 decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16), max_disparity_fraction: float = 0.4,
                 focal_length_px: float | None = None, image_width_px: int | None = None,
                 baseline_m: float | None = None) -> None:
        super().__init__()
        encoder_channels, decoder_channels = tuple(int(c) for c in encoder_channels), tuple(
            int(c) for c in decoder_channels)
        if len(encoder_channels) != 5 or len(decoder_channels) != 5 or min(encoder_channels + decoder_channels) <= 0:
            raise ValueError(f"encoder_channels and decoder_channels need 5 positive widths each, got "
                             f"{encoder_channels} and {decoder_channels}")
        if not 0 < max_disparity_fraction <= 1:
            raise ValueError(f"max_disparity_fraction must be in (0, 1], got {max_disparity_fraction}")
        calibration = (focal_length_px, image_width_px, baseline_m)
        if any(value is not None for value in calibration):
            if any(value is None or not np.isfinite(value) or value <= 0 for value in calibration):
                raise ValueError(f"focal_length_px, image_width_px and baseline_m must all be positive (or all "
                                 f"None), got {calibration}")
        self.config = {"encoder_channels": list(encoder_channels), "decoder_channels": list(decoder_channels),
                       "max_disparity_fraction": float(max_disparity_fraction),
                       "focal_length_px": None if focal_length_px is None else float(focal_length_px),
                       "image_width_px": None if image_width_px is None else int(image_width_px),
                       "baseline_m": None if baseline_m is None else float(baseline_m)}
        self.max_disparity_fraction = float(max_disparity_fraction)
        stem, c1, c2, c3, c4 = encoder_channels
        d16, d8, d4, d2, d1 = decoder_channels
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.group1 = feature_residual_group(stem, c1, 1)
        self.group2 = feature_residual_group(c1, c2, 2)
        self.group3 = feature_residual_group(c2, c3, 2)
        self.group4 = feature_residual_group(c3, c4, 2)
        self.attention = SpatialChannelAttention(c4)
        self.up16 = UpConvBlock(c4, c3, d16)
        self.up8 = UpConvBlock(d16, c2, d8)
        self.sub4 = SubPixelBlock(d8, c1, d4)
        self.sub2 = SubPixelBlock(d4, stem, d2)
        self.sub1 = SubPixelBlock(d2, 0, d1)
        self.heads = nn.ModuleList(nn.Conv2d(channels, 2, 3, padding=1) for channels in (d1, d2, d4, d8))

    @property
    def metric(self) -> bool:
        """Whether the weights carry the training rig's calibration (depth in metres for that rig)."""
        return self.config["baseline_m"] is not None

    def _check(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"the DispNet takes a (B, 3, H, W) RGB tensor, got shape {tuple(image.shape)}")
        if image.shape[2] % self.SIZE_MULTIPLE or image.shape[3] % self.SIZE_MULTIPLE:
            raise ValueError(f"the DispNet needs H and W multiples of {self.SIZE_MULTIPLE}, got "
                             f"{tuple(image.shape[2:])}")

    def forward_pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Disparity pyramids of both views from the left image.

        Args:
            image: (B, 3, H, W) float32 RGB in [0, 1].

        Returns:
            four (B, 2, H / 2^s, W / 2^s) float32 tensors for s = 0 (full resolution), 1, 2, 3; channel 0 the left
            disparity, channel 1 the right disparity, each a fraction of the image width in
            (0, ``max_disparity_fraction``).
        """
        self._check(image)
        x = (image - self.mean) / self.std
        f2 = self.stem(x)
        f4 = self.group1(self.pool(f2))
        f8 = self.group2(f4)
        f16 = self.group3(f8)
        f32 = self.attention(self.group4(f16))
        x16 = self.up16(f32, f16)
        x8 = self.up8(x16, f8)
        x4 = self.sub4(x8, f4)
        x2 = self.sub2(x4, f2)
        x1 = self.sub1(x2, None)
        return [self.max_disparity_fraction * torch.sigmoid(head(features))
                for head, features in zip(self.heads, (x1, x2, x4, x8))]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The finest left disparity: (B, 1, H, W) float32, a fraction of the image width."""
        return self.forward_pyramid(image)[0][:, :1]


def flip_post_process(disparity: torch.Tensor, flipped_disparity: torch.Tensor,
                      border: float = POST_PROCESS_BORDER) -> torch.Tensor:
    """Monodepth's flip post-processing (Godard et al. 2017, section 4; paper 004, "Post-processing").

    ``disparity`` is the left disparity of the image, ``flipped_disparity`` the left disparity of the horizontally
    flipped image, flipped back. The result takes ``flipped_disparity`` on the left ``border`` of the width (where
    the image's own disparity has the occlusion ramp of the left view), ``disparity`` on the right ``border``, the
    mean of both in the middle, with linear ramps of ``border`` of the width between them:
    ``w_left(x) = 1 - clip((x - border) / border, 0, 1)`` for ``x`` in [0, 1] across the width,
    ``w_right = flip(w_left)``, result ``= w_right * d + w_left * d' + (1 - w_left - w_right) * (d + d') / 2``.

    Args:
        disparity, flipped_disparity: (..., W) tensors of one shape (any unit).
        border: fraction of the width, in (0, 0.25].

    Returns:
        tensor of the same shape and dtype.

    Raises:
        ValueError: if the shapes differ or ``border`` is out of range.

    Example:
        >>> d = torch.zeros(1, 1, 1, 41); d_flipped = torch.ones(1, 1, 1, 41)
        >>> [round(v, 2) for v in flip_post_process(d, d_flipped)[0, 0, 0, [0, 2, 3, 20, 37, 38, 40]].tolist()]
        [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if disparity.shape != flipped_disparity.shape:
        raise ValueError(f"flip post-processing needs two maps of one shape, got {tuple(disparity.shape)} and "
                         f"{tuple(flipped_disparity.shape)}")
    if not 0 < border <= 0.25:
        raise ValueError(f"border must be a fraction of the width in (0, 0.25], got {border}")
    width = disparity.shape[-1]
    x = torch.linspace(0.0, 1.0, width, dtype=disparity.dtype, device=disparity.device)
    left_weight = 1.0 - torch.clamp((x - border) / border, 0.0, 1.0)
    right_weight = torch.flip(left_weight, (0,))
    mean = 0.5 * (disparity + flipped_disparity)
    return right_weight * disparity + left_weight * flipped_disparity + (1.0 - left_weight - right_weight) * mean


class DispNetInference(nn.Module):
    """The network as the estimator runs it: the finest left disparity, with or without flip post-processing.

    With ``post_process`` the image and its mirror image run as one batch of two, and :func:`flip_post_process`
    joins the two disparities (twice the computation), all inside the module so that the ONNX graph holds it.

    Shapes: (1, 3, H, W) float32 RGB in [0, 1] -> (1, 1, H, W) float32 disparity as a fraction of the width.
    """

    def __init__(self, network: SubPixelDispNet, post_process: bool = False) -> None:
        super().__init__()
        self.network = network
        self.post_process = bool(post_process)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.post_process:
            return self.network(image)
        both = self.network(torch.cat((image, torch.flip(image, (3,))), 0))
        return flip_post_process(both[:1], torch.flip(both[1:2], (3,)))


def disparity_fraction_to_depth(fraction: np.ndarray, focal_length_px: float, image_width_px: int,
                                baseline_m: float) -> np.ndarray:
    """Depth in metres from a disparity given as a fraction of the image width, for the rig it was trained on.

    ``Z = f B / (fraction * W_rig)``, with ``f`` the rig's focal length in pixels at its image width ``W_rig``: the
    disparity in pixels at that width is ``fraction * W_rig``. The ratio ``f / W_rig`` does not change when images
    are resized, so the depth does not depend on the size the network ran at. Goes through
    :func:`stereo_depth_ros.geometry.disparity_to_depth` (NaN where the disparity is not positive or finite).

    Args:
        fraction: (H, W) float array, disparity / image width.
        focal_length_px: focal length in pixels at ``image_width_px``.
        image_width_px: the image width of that calibration, pixels.
        baseline_m: baseline in metres.

    Returns:
        (H, W) float32 depth in metres (NaN: no measurement).

    Example:
        >>> round(float(disparity_fraction_to_depth(np.array([[0.1]]), 520.0, 640, 0.005)[0, 0]), 6)  # 64 px
        0.040625
    """
    disparity_px = np.asarray(fraction, dtype=np.float32) * float(image_width_px)
    return disparity_to_depth(disparity_px, float(focal_length_px), float(baseline_m))


def build_dispnet(config: dict) -> SubPixelDispNet:
    """:class:`SubPixelDispNet` from a weights file's config."""
    return SubPixelDispNet(**config)


def save_weights(model: SubPixelDispNet, path: str | Path, extra_metadata: dict | None = None) -> None:
    """Write the network (architecture :data:`ARCHITECTURE`, its ``config`` with the rig's calibration)."""
    from stereo_depth_ros.models.weights import save_weights as save

    save(model, path, ARCHITECTURE, model.config, extra_metadata)


def load_weights(path: str | Path) -> SubPixelDispNet:
    """Read weights written by :func:`save_weights` (no pickle), in eval mode on the CPU.

    Raises:
        stereo_depth_ros.models.weights.WeightsError: for a missing, corrupt or wrong file (naming it).
    """
    from stereo_depth_ros.models.weights import load_weights as load

    module, _ = load(path, ARCHITECTURE, build_dispnet)
    return module


DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "dispnet_subpixel.safetensors"
DEFAULT_INPUT_SIZE = (192, 256)  # the training input (height, width) of the packaged weights


def depth_postprocess(config: dict):
    """The estimator's ``postprocess``: the network's disparity fraction -> depth.

    With the rig's calibration in ``config`` (``focal_length_px``, ``image_width_px``, ``baseline_m``): metres,
    :func:`disparity_fraction_to_depth`. Without: relative depth ``1 / fraction`` (proportional to metres for
    any one rig; scale it by median alignment or a ``depth_scale``). Also returns ``"disparity_fraction"``.
    """
    def postprocess(outputs: list[np.ndarray], image_size: tuple[int, int]) -> dict[str, np.ndarray]:
        fraction = np.asarray(outputs[0][0, 0], dtype=np.float32)
        if config.get("baseline_m") is not None:
            depth = disparity_fraction_to_depth(fraction, config["focal_length_px"], config["image_width_px"],
                                                config["baseline_m"])
        else:
            depth = disparity_to_depth(fraction, 1.0, 1.0)
        return {"depth": depth, "disparity_fraction": fraction}

    return postprocess


def create_estimator(weights: str | Path | None = None, post_process: bool = False, backend: str = "auto",
                     device: str = "auto", input_size: tuple[int, int] | None = None, half: bool = False,
                     cache_dir: str | Path | None = None):
    """The ``"dispnet-subpixel"`` estimator (registry): image in, depth out (metres on the training rig).

    Args:
        weights: safetensors file (None = the packaged :data:`DEFAULT_WEIGHTS`).
        post_process: flip post-processing (:func:`flip_post_process`; twice the computation).
        backend, device, half, cache_dir: as :class:`~stereo_depth_ros.models.mono_estimator.MonocularEstimator`.
        input_size: (height, width) the image is resized to, multiples of 32 (None = the training size
            :data:`DEFAULT_INPUT_SIZE`: the network was trained on whole images squeezed to it).

    Returns:
        a :class:`~stereo_depth_ros.models.mono_estimator.MonocularEstimator` whose ``metric`` is True when the
        weights carry the rig's calibration; ``predict`` gives ``"depth"`` (metres, NaN = none) and
        ``"disparity_fraction"`` (disparity / image width).

    Raises:
        WeightsError: for a missing or wrong weights file. ValueError: for a bad option.
    """
    from stereo_depth_ros.models.mono_estimator import MonocularEstimator

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    network = load_weights(path)
    return MonocularEstimator(
        "dispnet-subpixel", DispNetInference(network, post_process).eval(), postprocess=depth_postprocess(
            network.config), metric=network.metric, output_names=("disparity_fraction",),
        input_size=tuple(input_size) if input_size is not None else DEFAULT_INPUT_SIZE,
        size_multiple=SubPixelDispNet.SIZE_MULTIPLE, backend=backend, device=device, half=half, weights_path=path,
        config=dict(network.config, post_process=bool(post_process)), cache_dir=cache_dir)
