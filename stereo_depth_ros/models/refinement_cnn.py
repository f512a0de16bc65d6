"""Single-stage refinement CNNs for monocular depth: models C, SC, SCRX, SCRXU and SCRDU of paper 002.

Source: Valdez Rodríguez, Calvo and Felipe Riverón, "Single-Stage Refinement CNN for Depth Estimation in Monocular
Images" (papers/002), section 3, Fig. 4-9. The paper names the models by their layers: Convolutional (C),
reSidual blocks (S, He et al.'s block of Fig. 4: two 3x3 convolutions and an identity shortcut), Refinement (R, after
Xu et al. (X) or Dosovitskiy et al. (D)) and Upsampling (U). Common to all: 3x3 kernels, ReLU, max-pooling in the
first two layers only (so the global estimate is at 1/4 of the input), sigmoid outputs in [0, 1], and a final
bilinear resize to the input size (section 3.2.2). Trained with the L2 loss of eq. 1 on targets from stereo matching.

The paper's figures give no channel counts and it feeds grey images; we feed RGB and use ``width`` channels (32)
in the first layer and ``2 * width`` after the first pool. The layer structure, as we read section 3:

- ``c``: five layers: conv+ReLU+pool, conv+ReLU+pool, conv+ReLU, conv+ReLU, conv+sigmoid (1/4).
- ``sc``: Region A only: four residual blocks (pool after the first two), conv+sigmoid (1/4).
- ``scrx``: Region A (1/4) and Region B (Xu et al.): two convolutions with ReLU and max-pool read the input image
  (to 1/4), are joined with Region A's sigmoid output, and a conv+sigmoid gives the output (1/4).
- ``scrxu``: Region A; Region C's image branch (two conv+ReLU+pool, to 1/4) joined with Region A's output *before*
  up-sampling (Xu et al. refine before the up-sampling stage); Region B: 2x bilinear up-sampling, two residual
  blocks, conv+sigmoid (1/2).
- ``scrdu``: Region A; Region B up-samples Region A's output (2x bilinear, two residual blocks, conv+sigmoid, 1/2);
  Region C (Dosovitskiy et al. refine *after* up-sampling): conv+ReLU+pool and conv+ReLU on the input image (to
  1/2) joined with Region B's output, conv+sigmoid (1/2).

Every model takes a (B, 3, H, W) float32 RGB tensor in [0, 1] (H and W multiples of 4) and returns (B, 1, H, W) in
[0, 1] (normalised depth, bilinearly resized from its last layer).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from stereo_depth_ros.models.mono_unet import Normalise, check_network_input

ARCHITECTURE = "mono-refinement-cnn/v1"
VARIANTS = ("c", "sc", "scrx", "scrxu", "scrdu")
SIZE_MULTIPLE = 4  # two 2x2 max-pools


class ResidualBlock(nn.Module):
    """He et al.'s residual block (paper 002, Fig. 4): ``ReLU(x' + conv(ReLU(conv(x))))``, 3x3 convolutions with
    biases; ``x'`` is ``x``, or a 1x1 convolution of it when the channel count changes.

    Forward: (B, in_channels, h, w) -> (B, out_channels, h, w).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.conv2(F.relu(self.conv1(x))))


def conv_relu(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """3x3 convolution (with bias) + ReLU, then a 2x2 max-pool when ``pool``."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def conv_sigmoid(in_channels: int) -> nn.Sequential:
    """3x3 convolution to one channel + sigmoid: a depth map in [0, 1]."""
    return nn.Sequential(nn.Conv2d(in_channels, 1, 3, padding=1), nn.Sigmoid())


class RefinementCNN(nn.Module):
    """One of the models C, SC, SCRX, SCRXU, SCRDU of paper 002 (see the module's docstring for the layers).

    Args:
        variant: "c", "sc", "scrx", "scrxu" or "scrdu".
        width: channels of the first layer (the second and later global layers have ``2 * width``).

    Forward:
        image (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 4 -> (B, 1, H, W) float32 in [0, 1].

    Raises:
        ValueError: for an unknown variant or a width that is not a positive int; at forward, for an input of the
            wrong shape.

    Example:
        >>> tuple(RefinementCNN("scrdu")(torch.rand(2, 3, 32, 40)).shape)
        (2, 1, 32, 40)
    """

    def __init__(self, variant: str = "scrx", width: int = 32) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if isinstance(width, bool) or int(width) != width or width <= 0:
            raise ValueError(f"width must be a positive number of channels, got {width!r}")
        w = int(width)
        self.variant = variant
        self.config = {"variant": variant, "width": w}
        self.normalise = Normalise()
        if variant == "c":
            self.region_a = nn.Sequential(conv_relu(3, w, pool=True), conv_relu(w, 2 * w, pool=True),
                                          conv_relu(2 * w, 2 * w), conv_relu(2 * w, 2 * w), conv_sigmoid(2 * w))
        else:
            self.region_a = nn.Sequential(ResidualBlock(3, w), nn.MaxPool2d(2), ResidualBlock(w, 2 * w),
                                          nn.MaxPool2d(2), ResidualBlock(2 * w, 2 * w),
                                          ResidualBlock(2 * w, 2 * w), conv_sigmoid(2 * w))
        if variant == "scrx":
            self.refine_image = nn.Sequential(conv_relu(3, w, pool=True), conv_relu(w, w, pool=True))
            self.refine_out = conv_sigmoid(w + 1)
        elif variant == "scrxu":
            self.refine_image = nn.Sequential(conv_relu(3, w, pool=True), conv_relu(w, w, pool=True))
            self.upsample_blocks = nn.Sequential(ResidualBlock(w + 1, w), ResidualBlock(w, w), conv_sigmoid(w))
        elif variant == "scrdu":
            self.upsample_blocks = nn.Sequential(ResidualBlock(1, w), ResidualBlock(w, w), conv_sigmoid(w))
            self.refine_image = nn.Sequential(conv_relu(3, w, pool=True), conv_relu(w, w))
            self.refine_out = conv_sigmoid(w + 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_network_input(image, SIZE_MULTIPLE)
        x = self.normalise(image)
        coarse = self.region_a(x)  # (B, 1, H/4, W/4) in [0, 1]
        if self.variant == "scrx":
            out = self.refine_out(torch.cat([coarse, self.refine_image(x)], 1))
        elif self.variant == "scrxu":
            joined = torch.cat([coarse, self.refine_image(x)], 1)
            out = self.upsample_blocks(F.interpolate(joined, scale_factor=2.0, mode="bilinear", align_corners=False))
        elif self.variant == "scrdu":
            upsampled = self.upsample_blocks(F.interpolate(coarse, scale_factor=2.0, mode="bilinear",
                                                           align_corners=False))
            out = self.refine_out(torch.cat([upsampled, self.refine_image(x)], 1))
        else:
            out = coarse
        return F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_refinement_cnn(config: dict) -> RefinementCNN:
    """:class:`RefinementCNN` from a weights file's config (``variant``, ``width``)."""
    return RefinementCNN(**config)
