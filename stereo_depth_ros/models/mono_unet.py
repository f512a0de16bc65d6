"""Monocular depth U-Nets: the light U-Net of paper 001 and the original U-Net it is compared with.

:class:`LightUNet`: "Realtime Single Image Depth Estimation" (papers/001, section 3.2, Fig. 2 and 3): two stem
layers, an encoder of 4 convolutional blocks (two 3x3 convolutions, each followed by batch norm and ReLU, then a
2x2 max-pool) down to 1/16 of the input with 101 channels, a decoder of 4 up-sampling blocks (bilinear 2x
up-sampling, skip connection from the encoder block of the same size, two 3x3 convolutions with ReLU, no batch norm)
and a final 3x3 convolution to one channel. The paper gives the 101 bottleneck channels and 1.22M parameters but not
the other widths; ours (stem 16, 32; encoder 32, 64, 128, 101; decoder 136, 64, 48, 32) give 1.22M parameters.

:class:`OriginalUNet`: the U-Net of Ronneberger et al. (MICCAI 2015) in the form the paper's baseline row counts,
17.26M parameters: double 3x3 convolutions with batch norm and ReLU at 64, 128, 256, 512 and 512 channels (the
bottleneck halved for bilinear up-sampling), bilinear up-sampling with skips, 1x1 output convolution.

Both take a (B, 3, H, W) float32 RGB tensor in [0, 1] (H and W multiples of 16) and return (B, 1, H, W) depth
normalised to [0, 1] (a sigmoid output; paper 001, section 4.1: "the ground truth depth map label is normalized to
[0, 1]"). What the normalised depth means is the training's choice (:mod:`stereo_depth_ros.training.mono_supervised`:
depth divided by a per-image high percentile, so a relative depth).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LIGHT_ARCHITECTURE = "mono-light-unet/v1"
ORIGINAL_ARCHITECTURE = "mono-original-unet/v1"
SIZE_MULTIPLE = 16  # four 2x2 max-pools
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalise(nn.Module):
    """RGB in [0, 1] -> ImageNet-standardised RGB (part of the network, so that the ONNX graph is complete)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias) + batch norm + ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1) + ReLU (the light U-Net's decoder: no batch norm)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear up-sampling of ``x`` to the spatial size of ``reference`` (align_corners=False)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def check_network_input(image: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> None:
    """Raise ValueError unless ``image`` is (B, 3, H, W) with H and W positive multiples of ``multiple``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) RGB tensor, got shape {tuple(image.shape)}")
    if image.shape[-2] % multiple or image.shape[-1] % multiple or min(image.shape[-2:]) == 0:
        raise ValueError(f"image height and width must be positive multiples of {multiple}, "
                         f"got {tuple(image.shape[-2:])}")


class LightUNet(nn.Module):
    """The light U-Net of paper 001 (about 1.22M parameters with the default widths).

    Args:
        stem: channels of the two stem layers (3x3 convolution + batch norm + ReLU each, full resolution).
        encoder: channels of the 4 encoder blocks (the last is the 1/16 bottleneck, 101 in the paper).
        decoder: channels of the 4 up-sampling blocks (1/8, 1/4, 1/2, 1/1).

    Forward:
        image (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 16 -> (B, 1, H, W) float32 in [0, 1]
        (normalised depth).

    Raises:
        ValueError: for widths that are not 2, 4 and 4 positive ints; at forward, for an input of the wrong shape.

    Example:
        >>> net = LightUNet()
        >>> round(sum(p.numel() for p in net.parameters()) / 1e6, 2)
        1.22
        >>> tuple(net(torch.rand(1, 3, 32, 48)).shape)
        (1, 1, 32, 48)
    """

    def __init__(self, stem: tuple[int, ...] = (16, 32), encoder: tuple[int, ...] = (32, 64, 128, 101),
                 decoder: tuple[int, ...] = (136, 64, 48, 32)) -> None:
        super().__init__()
        for label, widths, count in (("stem", stem, 2), ("encoder", encoder, 4), ("decoder", decoder, 4)):
            if len(widths) != count or any(int(w) != w or w <= 0 for w in widths):
                raise ValueError(f"{label} must be {count} positive channel counts, got {widths!r}")
        self.config = {"stem": list(stem), "encoder": list(encoder), "decoder": list(decoder)}
        self.normalise = Normalise()
        self.stem = nn.Sequential(conv_bn_relu(3, stem[0]), conv_bn_relu(stem[0], stem[1]))
        self.encoder = nn.ModuleList()
        channels = stem[1]
        for width in encoder:
            self.encoder.append(nn.Sequential(conv_bn_relu(channels, width), conv_bn_relu(width, width)))
            channels = width
        # Skips: the output of every encoder block before its pool (1/1, 1/2, 1/4, 1/8), deepest first.
        self.decoder = nn.ModuleList()
        for width, skip in zip(decoder, reversed(encoder)):
            self.decoder.append(nn.Sequential(conv_relu(channels + skip, width), conv_relu(width, width)))
            channels = width
        self.head = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_network_input(image)
        x = self.stem(self.normalise(image))
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(torch.cat([upsample_to(x, skip), skip], 1))
        return torch.sigmoid(self.head(x))


def double_conv(in_channels: int, out_channels: int, middle_channels: int | None = None) -> nn.Sequential:
    """The original U-Net's unit: two 3x3 convolutions, each with batch norm and ReLU."""
    middle_channels = middle_channels or out_channels
    return nn.Sequential(conv_bn_relu(in_channels, middle_channels), conv_bn_relu(middle_channels, out_channels))


class OriginalUNet(nn.Module):
    """The original U-Net (Ronneberger et al. 2015) with bilinear up-sampling: the baseline of paper 001
    (17.26M parameters at width 64).

    Args:
        width: channels of the first level (64); the levels have width x 1, 2, 4, 8 and 8 (the bottleneck halved
            because bilinear up-sampling keeps the channel count).

    Forward:
        image (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 16 -> (B, 1, H, W) float32 in [0, 1].

    Raises:
        ValueError: for a width that is not a positive even int; at forward, for an input of the wrong shape.

    Example:
        >>> round(sum(p.numel() for p in OriginalUNet().parameters()) / 1e6, 2)
        17.26
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        if int(width) != width or width <= 0 or width % 2:
            raise ValueError(f"width must be a positive even number of channels, got {width!r}")
        self.config = {"width": int(width)}
        w = int(width)
        self.normalise = Normalise()
        self.inc = double_conv(3, w)
        self.down = nn.ModuleList([double_conv(w, 2 * w), double_conv(2 * w, 4 * w), double_conv(4 * w, 8 * w),
                                   double_conv(8 * w, 8 * w)])
        self.up = nn.ModuleList([double_conv(16 * w, 4 * w, 8 * w), double_conv(8 * w, 2 * w, 4 * w),
                                 double_conv(4 * w, w, 2 * w), double_conv(2 * w, w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_network_input(image)
        x = self.inc(self.normalise(image))
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([skip, upsample_to(x, skip)], 1))
        return torch.sigmoid(self.head(x))


def build_light_unet(config: dict) -> LightUNet:
    """:class:`LightUNet` from a weights file's config (``stem``, ``encoder``, ``decoder``)."""
    return LightUNet(**{key: tuple(value) for key, value in config.items()})


def build_original_unet(config: dict) -> OriginalUNet:
    """:class:`OriginalUNet` from a weights file's config (``width``)."""
    return OriginalUNet(**config)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
