"""Coarse-to-fine stereo network (AnyNet-style), the core of this package.

Source: "Real-Time Coarse-To-Fine Depth Estimation on Stereo Endoscopic Images with Self-Supervised Learning"
(../shared/papers/000), which builds on AnyNet (Wang et al., "Anytime Stereo Image Depth Estimation on Mobile
Devices", ICRA 2019): a U-Net feature extractor with shared weights, a distance-based matching cost volume, 3D
convolutions, soft-argmin disparity regression, and residual disparity in the later stages.

Stages (disparities always returned in pixels of the input resolution, left view, positive = x_left - x_right):

- stage 0, at 1/16 scale: full-range cost volume over ``ceil(max_disparity / 16)`` disparities, regularised by 3D
  convolutions, soft-argmin.
- stage 1 (1/8) and stage 2 (1/4): the previous disparity is upsampled, the right features are warped with it, and a
  small cost volume over ``-residual_radius .. +residual_radius`` pixels of *residual* disparity is regularised and
  regressed by soft-argmin; the residual is added to the upsampled previous disparity.
- stage 3: a light 2D refinement network guided by the left image (our choice among the issue's two options). At
  1/2 scale it takes the stage-2 disparity, the left image and the photometric error ``|left - warp(right, d)|``
  and predicts a residual with dilated convolutions. AnyNet uses a spatial propagation network here; we chose a
  guided residual CNN because it works at a finer scale than a fourth cost-volume stage at 1/4 could, sees the
  photometric error directly, and exports to ONNX. What it adds (stage 2 vs stage 3 error) and what it costs (ms at
  1280x1024) are measured in docs/stereo.md and docs/benchmarks.md. The alternatives, a residual cost-volume stage
  around stage 2's disparity at 1/4 (``stage3="cost-volume"``) or at 1/2 on a fourth decoder level
  (``stage3="cost-volume-half"``), are built too and were measured against it there (at 1/4 within 0.015 px of
  stage 2, no better; at 1/2 better than stage 2 on every GT set at 2.3x its time; neither is the packaged design).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from stereo_depth_ros.geometry import warp_right_to_left
from stereo_depth_ros.models import weights
from stereo_depth_ros.models.weights import WeightsError  # noqa: F401  (re-exported: callers catch it from here)

ARCHITECTURE = "coarse-to-fine-stereo/v2"  # v2: input normalisation folded into the first convolution
IMAGE_MEAN = 0.45  # input normalisation (x - mean) / std, the same for the three colour channels
IMAGE_STD = 0.225
NUM_STAGES = 4
STAGE_SCALES = (16, 8, 4, 2)  # downsampling factor at which each stage works (stage 3: its refinement CNN)
#: Stage-3 designs: the guided 2D refinement CNN at 1/2 (the packaged weights), or a residual cost-volume stage
#: around stage 2's disparity with its own 3D convolutions, at 1/4 (stage 2's scale; the alternative the stereo
#: issue allowed) or at 1/2 (``train-stereo --stage3 cost-volume|cost-volume-half``).
STAGE3_DESIGNS = ("refinement", "cost-volume", "cost-volume-half")
#: Scale of stage 3's output for each design (stages 0-2: STAGE_SCALES). "cost-volume-half" searches its residual
#: at 1/2 on features of a fourth decoder level (``features.up2``, ``features.head2``, part of stage 3).
STAGE3_SCALES = {"refinement": 2, "cost-volume": 4, "cost-volume-half": 2}


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _conv3d_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class NormalizingConv2d(nn.Conv2d):
    """A convolution of the normalised image ``(x - IMAGE_MEAN) / IMAGE_STD`` computed from the raw image ``x``.

    The normalisation is folded into the weights (``W / std``, bias ``-sum(W) mean / std``), so no full-resolution
    normalised copy of the input is made: at 1280x1024 stage 0 went from 41.9 to 38.8 ms on onnxruntime
    (docs/benchmarks.md). Zero padding applies to the raw image (black outside) instead of the normalised one, the
    only behavioural change from architecture v1 (v1 weights re-measured under v2 moved by at most 0.003 px EPE;
    docs/stereo.md).

    Input (B, C_in, H, W) float in [0, 1]; output as :class:`torch.nn.Conv2d`. The state-dict keys are those of
    ``nn.Conv2d`` (``weight`` only: ``bias=False`` is required).
    """

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("bias", True):
            raise ValueError("NormalizingConv2d computes its own bias; build it with bias=False")
        super().__init__(*args, **kwargs)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        weight = self.weight / IMAGE_STD
        bias = -self.weight.sum((1, 2, 3)) * (IMAGE_MEAN / IMAGE_STD)
        return F.conv2d(image, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """``(image - IMAGE_MEAN) / IMAGE_STD``: the network's input normalisation for (B, 3, H, W) images in [0, 1]."""
    return (image - IMAGE_MEAN) / IMAGE_STD


class UNetFeatures(nn.Module):
    """U-Net feature extractor applied with shared weights to the left and right images.

    Encoder: four stride-2 blocks to 1/2, 1/4, 1/8, 1/16; decoder: upsample + skip connection to 1/8 and 1/4.

    Input: (B, 3, H, W) float image in [0, 1] (not normalised: the first convolution normalises, see
    :class:`NormalizingConv2d`) with H and W multiples of 16.
    Output of :meth:`forward`: features at 1/16, 1/8, 1/4 (and, built with ``half=True`` and ``finest=2``, 1/2)
    scale, each (B, feature_channels, H/s, W/s); the decoder levels are computed only up to ``finest`` (so stage 0
    alone skips the decoder).
    """

    def __init__(self, widths: tuple[int, int, int, int] = (8, 16, 24, 32), feature_channels: int = 16,
                 half: bool = False) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.down1 = nn.Sequential(NormalizingConv2d(3, w1, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
        self.down2 = nn.Sequential(_conv_bn_relu(w1, w2, stride=2), _conv_bn_relu(w2, w2))
        self.down3 = nn.Sequential(_conv_bn_relu(w2, w3, stride=2), _conv_bn_relu(w3, w3))
        self.down4 = nn.Sequential(_conv_bn_relu(w3, w4, stride=2), _conv_bn_relu(w4, w4))
        self.head16 = nn.Conv2d(w4, feature_channels, 3, padding=1)
        self.up8 = _conv_bn_relu(w4 + w3, w3)
        self.head8 = nn.Conv2d(w3, feature_channels, 3, padding=1)
        self.up4 = _conv_bn_relu(w3 + w2, w2)
        self.head4 = nn.Conv2d(w2, feature_channels, 3, padding=1)
        if half:  # a fourth decoder level to 1/2 (the cost-volume stage 3 at 1/2)
            self.up2 = _conv_bn_relu(w2 + w1, w1)
            self.head2 = nn.Conv2d(w1, feature_channels, 3, padding=1)

    def forward(self, image: torch.Tensor, finest: int = 4) -> list[torch.Tensor]:
        x2 = self.down1(image)
        x4 = self.down2(x2)
        x8 = self.down3(x4)
        x16 = self.down4(x8)
        features = [self.head16(x16)]
        if finest <= 8:
            y8 = self.up8(torch.cat((F.interpolate(x16, size=x8.shape[-2:], mode="nearest"), x8), 1))
            features.append(self.head8(y8))
            if finest <= 4:
                y4 = self.up4(torch.cat((F.interpolate(y8, size=x4.shape[-2:], mode="nearest"), x4), 1))
                features.append(self.head4(y4))
                if finest <= 2 and hasattr(self, "up2"):
                    y2 = self.up2(torch.cat((F.interpolate(y4, size=x2.shape[-2:], mode="nearest"), x2), 1))
                    features.append(self.head2(y2))
        return features


def group_l1_distance(left: torch.Tensor, right: torch.Tensor, groups: int) -> torch.Tensor:
    """Distance-based matching cost: mean absolute difference per channel group.

    Args:
        left, right: (B, C, H, W) features, C divisible by ``groups``.
        groups: number of channel groups G.

    Returns:
        (B, G, H, W) non-negative costs.
    """
    b, c, h, w = left.shape
    return (left - right).abs().view(b, groups, c // groups, h, w).mean(2)


def build_full_cost_volume(left: torch.Tensor, right: torch.Tensor, num_disparities: int,
                           groups: int) -> torch.Tensor:
    """Full-range cost volume: cost of matching left pixel x with right pixel x - d, d = 0 .. D-1.

    Args:
        left, right: (B, C, H, W) features at one scale.
        num_disparities: D, disparities in pixels of this scale.
        groups: channel groups G of :func:`group_l1_distance`.

    Returns:
        (B, G, D, H, W) costs; where x - d < 0 the right feature is taken as zero (also when D exceeds the width).
    """
    volumes = []
    width = right.shape[-1]
    for d in range(num_disparities):
        if d == 0:
            shifted = right
        elif d < width:
            shifted = F.pad(right[..., : width - d], (d, 0))
        else:  # the search range is wider than the image: nothing to match
            shifted = torch.zeros_like(right)
        volumes.append(group_l1_distance(left, shifted, groups))
    return torch.stack(volumes, 2)


def build_residual_cost_volume(left: torch.Tensor, warped_right: torch.Tensor, radius: int,
                               groups: int) -> torch.Tensor:
    """Residual cost volume around a current disparity estimate.

    ``warped_right`` is the right feature map already warped to the left view with the current disparity; the
    residual ``r`` in ``-radius .. +radius`` shifts it by ``r`` more pixels (right sample at ``x - d - r``).

    Args:
        left, warped_right: (B, C, H, W).
        radius: R, the residual range in pixels of this scale.
        groups: channel groups.

    Returns:
        (B, G, 2R + 1, H, W) costs, residual ``-R`` first.
    """
    volumes = []
    for r in range(-radius, radius + 1):
        if r > 0:
            shifted = F.pad(warped_right[..., :-r], (r, 0, 0, 0), mode="replicate")
        elif r < 0:
            shifted = F.pad(warped_right[..., -r:], (0, -r, 0, 0), mode="replicate")
        else:
            shifted = warped_right
        volumes.append(group_l1_distance(left, shifted, groups))
    return torch.stack(volumes, 2)


def soft_argmin(cost: torch.Tensor, values: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Differentiable soft-argmin disparity regression (Kendall et al., GC-Net, eq. 1), optionally local.

    ``d = sum_k values[k] * p[k]`` with ``p = softmax(-cost)`` over the disparity axis. With ``window = w`` the
    probabilities are kept only within ``w`` slices of the most likely one and renormalised (a local soft-argmin):
    where the distribution is multimodal (texture-poor or dark regions) the plain expectation falls between the
    modes, biased towards the middle of the range; the local one follows the strongest mode and stays sub-pixel.

    Args:
        cost: (B, D, H, W) matching costs (lower is better).
        values: (D,) the disparity (or residual) each of the D cost slices stands for.
        window: None for the plain soft-argmin (training), or the half-width in slices of the local one.

    Returns:
        (B, 1, H, W) expected disparity, between ``values.min()`` and ``values.max()``.

    Raises:
        ValueError: if ``values`` does not have one entry per cost slice.
    """
    if cost.shape[1] != values.numel():
        raise ValueError(f"cost has {cost.shape[1]} disparity slices but {values.numel()} values were given")
    probability = torch.softmax(-cost, dim=1)
    if window is not None:
        index = torch.arange(cost.shape[1], device=cost.device).view(1, -1, 1, 1)
        mode = probability.argmax(1, keepdim=True)
        probability = probability * ((index - mode).abs() <= window).to(probability.dtype)
        probability = probability / probability.sum(1, keepdim=True).clamp(min=1e-12)
    return (probability * values.view(1, -1, 1, 1).to(cost)).sum(1, keepdim=True)


def peak_probability(cost: torch.Tensor) -> torch.Tensor:
    """Confidence of a soft-argmin: the largest matching probability, rescaled so that a flat distribution gives 0.

    ``p = softmax(-cost)`` over the D disparity slices as in :func:`soft_argmin`; the peak ``max_k p[k]`` lies in
    ``[1/D, 1]`` and is mapped linearly to ``[0, 1]``: ``(max_k p[k] - 1/D) / (1 - 1/D)``. A single sharp
    minimum of the cost gives about 1, an ambiguous match (flat or multimodal costs: texture-poor regions,
    occlusions, repeated patterns) a value near 0. This is the "peak ratio"/"maximum likelihood" family of
    cost-volume confidence measures (Hu and Mordohai, "A Quantitative Evaluation of Confidence Measures for Stereo
    Vision", TPAMI 2012, section 3; Kendall et al., GC-Net, section 3.4, read the same softmax as a probability).

    Args:
        cost: (B, D, H, W) matching costs (lower is better), D >= 2.

    Returns:
        (B, 1, H, W) confidence in [0, 1], the cost's dtype.

    Raises:
        ValueError: for fewer than two disparity slices (no choice, no confidence).

    Example:
        >>> sharp = torch.tensor([0.0, 50.0, 50.0]).view(1, 3, 1, 1)
        >>> flat = torch.zeros(1, 3, 1, 1)
        >>> round(peak_probability(sharp).item(), 3), peak_probability(flat).item()
        (1.0, 0.0)
    """
    slices = cost.shape[1]
    if slices < 2:
        raise ValueError(f"a confidence needs at least 2 disparity slices, the cost has {slices}")
    peak = torch.softmax(-cost, dim=1).amax(1, keepdim=True)
    return ((peak - 1.0 / slices) * (slices / (slices - 1.0))).clamp(0.0, 1.0)


class CostRegularizer(nn.Module):
    """3D convolutions that filter a (B, G, D, H, W) cost volume into (B, D, H, W) costs."""

    def __init__(self, in_channels: int, channels: int, layers: int) -> None:
        super().__init__()
        blocks = [_conv3d_bn_relu(in_channels, channels)]
        blocks += [_conv3d_bn_relu(channels, channels) for _ in range(layers - 1)]
        self.body = nn.Sequential(*blocks)
        self.out = nn.Conv3d(channels, 1, 3, padding=1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(volume)).squeeze(1)


class GuidedRefinement(nn.Module):
    """Stage 3: residual refinement of a disparity map guided by the left image and the photometric error.

    Input: disparity (B, 1, h, w) in pixels of this scale, left and right images (B, 3, h, w) normalised.
    Output: refined disparity (B, 1, h, w).
    """

    def __init__(self, channels: int = 12, dilations: tuple[int, ...] = (1, 2, 4, 1)) -> None:
        super().__init__()
        layers = [_conv_bn_relu(5, channels)]
        layers += [_conv_bn_relu(channels, channels, dilation=d) for d in dilations]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        warped, _ = warp_right_to_left(right, disparity, padding_mode="border")
        error = (left - warped).abs().mean(1, keepdim=True)
        scale = disparity.shape[-1] / 64.0  # keep the disparity input of order 1 for any image width
        x = torch.cat((disparity / scale, left, error), 1)
        return disparity + self.out(self.body(x)) * scale / 8.0


class CoarseToFineStereoNet(nn.Module):
    """Four-stage coarse-to-fine stereo network with residual disparity (AnyNet-style).

    Args:
        max_disparity: largest disparity searched, in pixels of the input resolution (> 0); stage 0 searches
            ``ceil(max_disparity / 16)`` disparities at 1/16 scale.
        feature_channels: channels of the U-Net feature maps (divisible by ``groups``).
        groups: channel groups of the distance-based cost volume.
        cost_channels: 3D-convolution channels of stages 0, 1, 2.
        cost_layers: 3D-convolution layers of stages 0, 1, 2 (the packaged weights use 3, 2, 2; their config is
            stored in the weights file).
        residual_radius: residual search range of stages 1 and 2, pixels at their scale (1/8 and 1/4).
        refine_channels: channels of the stage-3 refinement CNN.
        stage3: one of :data:`STAGE3_DESIGNS`: ``"refinement"`` (the guided CNN at 1/2, default) or
            ``"cost-volume"`` (a residual cost volume at 1/4 around stage 2's disparity, radius
            ``residual_radius``, regularised by ``cost_channels[2]`` channels in ``cost_layers[2]`` layers, its last
            convolution starting at zero so that an untrained stage 3 equals stage 2; its disparity is upsampled
            from 1/4 like stage 2's) or ``"cost-volume-half"`` (the same at 1/2, on features of a fourth decoder
            level, around stage 2's disparity upsampled to 1/2). Stored in the config only when not the default.
        stage3_radius, stage3_layers: residual range (pixels at its scale) and 3D-convolution layers of a
            cost-volume stage 3 (None: ``residual_radius`` and ``cost_layers[2]``; stored only when given).
        inference_window: at inference (``eval()``), stage 0 uses a local soft-argmin that keeps this many
            disparity slices either side of the most likely one (see :func:`soft_argmin`); None = the plain
            soft-argmin, as in training. It changes no weight.

    Shapes:
        ``forward(left, right)`` takes (B, 3, H, W) float tensors in [0, 1] (RGB or BGR, as trained: this package
        feeds RGB) of any H, W >= 1; they are padded to multiples of 16 internally and cropped back. It returns a
        list of ``max_stage + 1`` tensors, each (B, 1, H, W) float (float32 unless the model runs in half precision),
        the left disparity in pixels of the input resolution, >= 0.

    Raises:
        ValueError: for inputs that are not two (B, 3, H, W) tensors of the same shape, or an invalid ``max_stage``;
            at construction, for an unknown ``stage3`` design.

    Example:
        >>> net = CoarseToFineStereoNet(max_disparity=64).eval()
        >>> stages = net(torch.rand(1, 3, 37, 50), torch.rand(1, 3, 37, 50))
        >>> [tuple(s.shape) for s in stages]
        [(1, 1, 37, 50), (1, 1, 37, 50), (1, 1, 37, 50), (1, 1, 37, 50)]
    """

    def __init__(self, max_disparity: int = 192, feature_channels: int = 16, groups: int = 4,
                 cost_channels: tuple[int, int, int] = (8, 4, 4), cost_layers: tuple[int, int, int] = (3, 2, 1),
                 residual_radius: int = 2, refine_channels: int = 12, inference_window: int | None = 1,
                 stage3: str = "refinement", stage3_radius: int | None = None,
                 stage3_layers: int | None = None) -> None:
        super().__init__()
        if stage3 not in STAGE3_DESIGNS:
            raise ValueError(f"stage3 must be one of {STAGE3_DESIGNS}, got {stage3!r}")
        if max_disparity <= 0:
            raise ValueError(f"max_disparity must be a positive number of pixels, got {max_disparity}")
        if feature_channels % groups:
            raise ValueError(f"feature_channels ({feature_channels}) must be divisible by groups ({groups})")
        self.config = dict(max_disparity=int(max_disparity), feature_channels=int(feature_channels),
                           groups=int(groups), cost_channels=[int(c) for c in cost_channels],
                           cost_layers=[int(n) for n in cost_layers], residual_radius=int(residual_radius),
                           refine_channels=int(refine_channels),
                           inference_window=None if inference_window is None else int(inference_window))
        if stage3 != "refinement":  # the packaged weights' config has no such key
            self.config["stage3"] = stage3
        for name, value in (("stage3_radius", stage3_radius), ("stage3_layers", stage3_layers)):
            if value is not None:
                if stage3 == "refinement" or int(value) < 1:
                    raise ValueError(f"{name} must be a positive integer for a cost-volume stage 3, got {value!r} "
                                     f"with stage3={stage3!r}")
                self.config[name] = int(value)
        self.stage3 = stage3
        self.stage3_radius = residual_radius if stage3_radius is None else int(stage3_radius)
        self.max_disparity = int(max_disparity)
        self.inference_window = inference_window
        self.groups = groups
        self.residual_radius = residual_radius
        self.coarse_disparities = math.ceil(max_disparity / STAGE_SCALES[0])
        self.features = UNetFeatures(feature_channels=feature_channels, half=stage3 == "cost-volume-half")
        self.regularizers = nn.ModuleList(
            CostRegularizer(groups, c, n) for c, n in zip(cost_channels, cost_layers))
        if stage3 != "refinement":
            self.regularizers.append(CostRegularizer(groups, cost_channels[2],
                                                     cost_layers[2] if stage3_layers is None else int(stage3_layers)))
            # Zero-started residual: equal costs give a soft-argmin residual of exactly 0, so an untrained stage 3
            # returns stage 2's disparity and training moves it only as far as that lowers the loss.
            nn.init.zeros_(self.regularizers[3].out.weight)
            nn.init.zeros_(self.regularizers[3].out.bias)
            self.refinement = None
        else:
            self.refinement = GuidedRefinement(refine_channels)

    def cost_volume_stages(self, max_stage: int = NUM_STAGES - 1) -> int:
        """How many of the stages ``0..max_stage`` regress from a cost volume (the number of peak maps of
        :meth:`forward_with_confidence`): ``min(max_stage, 2) + 1`` with the refinement CNN as stage 3,
        ``max_stage + 1`` with a cost-volume stage 3."""
        return min(max_stage, 2) + 1 if self.refinement is not None else max_stage + 1

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The sub-networks that stage ``stage`` adds to the ones before it.

        Stage 0: the U-Net encoder and its 1/16 head, and the stage-0 cost regulariser; stage 1: the decoder level
        and head at 1/8 and its regulariser; stage 2: the same at 1/4; stage 3: the refinement CNN (or, for a
        cost-volume stage 3, its own cost regulariser, and at 1/2 the decoder level to 1/2). Stage ``s``'s
        output depends only on the modules of stages ``0..s``, so freezing those of stages ``< s`` leaves their
        outputs unchanged while ``s`` and later train (``train-stereo --first-trained-stage``).

        Raises:
            ValueError: for a stage outside ``0..NUM_STAGES - 1``.
        """
        f = self.features
        modules = {0: [f.down1, f.down2, f.down3, f.down4, f.head16, self.regularizers[0]],
                   1: [f.up8, f.head8, self.regularizers[1]],
                   2: [f.up4, f.head4, self.regularizers[2]],
                   3: ([self.refinement] if self.refinement is not None else
                       [m for m in (getattr(f, "up2", None), getattr(f, "head2", None)) if m is not None]
                       + [self.regularizers[3]])}
        if stage not in modules:
            raise ValueError(f"stage must be in 0..{NUM_STAGES - 1}, got {stage}")
        return modules[stage]

    def forward(self, left: torch.Tensor, right: torch.Tensor, max_stage: int = NUM_STAGES - 1
                ) -> list[torch.Tensor]:
        return self._stages(left, right, max_stage, None)

    def forward_with_confidence(self, left: torch.Tensor, right: torch.Tensor, max_stage: int = NUM_STAGES - 1
                                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The disparities of :meth:`forward` (identical values) and the peak confidence of each cost volume.

        Stages 0, 1 and 2 regress their disparity (stage 0) or residual (stages 1, 2) from a cost volume by
        soft-argmin; for each one run, :func:`peak_probability` of its regularised costs is returned at the
        stage's own scale (upsampling them in the graph cost more than the rest of the confidence; see
        :func:`upsample_peak`). Stage 3 adds none with the refinement CNN (it has no cost volume) and its own
        (at 1/4 or 1/2) as a cost-volume stage (:meth:`cost_volume_stages`).

        Args:
            left, right: as :meth:`forward`.
            max_stage: last stage computed, 0..3.

        Returns:
            ``(disparities, peaks)``: ``disparities`` as :meth:`forward`; ``peaks`` has
            :meth:`cost_volume_stages` tensors (B, 1, H16 / s, W16 / s) in [0, 1] (stage 0 first, ``s`` = 16, 8, 4,
            then 4 or 2 for a cost-volume stage 3), where H16, W16 are H, W rounded up to multiples of 16.

        Raises:
            ValueError: as :meth:`forward`.
        """
        peaks: list[torch.Tensor] = []
        disparities = self._stages(left, right, max_stage, peaks)
        return disparities, peaks

    def _stages(self, left: torch.Tensor, right: torch.Tensor, max_stage: int, peaks: list | None
                ) -> list[torch.Tensor]:
        """The stages up to ``max_stage``; appends each cost volume's peak confidence to ``peaks`` unless None."""
        if not 0 <= max_stage < NUM_STAGES:
            raise ValueError(f"max_stage must be in 0..{NUM_STAGES - 1}, got {max_stage}")
        if left.ndim != 4 or left.shape[1] != 3 or left.shape != right.shape:
            raise ValueError(f"expected left and right (B, 3, H, W) of the same shape, got {tuple(left.shape)} and "
                             f"{tuple(right.shape)}")
        h, w = left.shape[-2:]
        pad_h, pad_w = (-h) % 16, (-w) % 16
        images = torch.cat((left, right), 0)
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        # the decoder runs to the finest scale a cost volume needs (the refinement CNN reads images, not features)
        finest = self._stage_scale(max_stage) if max_stage < 3 or self.refinement is None else STAGE_SCALES[2]
        both = self.features(images, finest=finest)
        batch = left.shape[0]
        left_features = [f[:batch] for f in both]
        right_features = [f[batch:] for f in both]

        full_size = images.shape[-2:]
        outputs = []
        # Stage 0: full-range cost volume at 1/16.
        volume = build_full_cost_volume(left_features[0], right_features[0], self.coarse_disparities, self.groups)
        values = torch.arange(self.coarse_disparities, device=left.device, dtype=left_features[0].dtype)
        window = None if self.training else self.inference_window
        cost = self.regularizers[0](volume)
        disparity = soft_argmin(cost, values, window)
        outputs.append(self._to_input_resolution(disparity, STAGE_SCALES[0], full_size, h, w))
        if peaks is not None:
            peaks.append(peak_probability(cost))
        # Stages 1, 2: residual disparity at 1/8 and 1/4.
        residual_values = torch.arange(-self.residual_radius, self.residual_radius + 1, device=left.device,
                                       dtype=left_features[0].dtype)
        residual_stages = (1, 2) if self.refinement is not None else (1, 2, 3)
        for stage in residual_stages:
            if stage > max_stage:
                return outputs
            scale = self._stage_scale(stage)  # a cost-volume stage 3 at 1/4 searches again at stage 2's scale
            level = STAGE_SCALES.index(scale)  # feature list index: 1/16, 1/8, 1/4, 1/2
            fl, fr = left_features[level], right_features[level]
            if fl.shape[-1] != disparity.shape[-1]:
                factor = fl.shape[-1] / disparity.shape[-1]
                disparity = factor * F.interpolate(disparity, size=fl.shape[-2:], mode="bilinear",
                                                   align_corners=False)
            warped, _ = warp_right_to_left(fr, disparity, padding_mode="border")
            radius = self.residual_radius if stage < 3 else self.stage3_radius
            values = residual_values if radius == self.residual_radius else torch.arange(
                -radius, radius + 1, device=left.device, dtype=left_features[0].dtype)
            volume = build_residual_cost_volume(fl, warped, radius, self.groups)
            cost = self.regularizers[stage](volume)
            disparity = F.relu(disparity + soft_argmin(cost, values))
            outputs.append(self._to_input_resolution(disparity, scale, full_size, h, w))
            if peaks is not None:
                peaks.append(peak_probability(cost))
        if max_stage < 3 or self.refinement is None:
            return outputs
        # Stage 3: guided refinement at 1/2.
        size2 = (full_size[0] // 2, full_size[1] // 2)
        disparity = 2.0 * F.interpolate(disparity, size=size2, mode="bilinear", align_corners=False)
        images2 = normalize_image(F.avg_pool2d(images, 2))  # normalisation commutes with the average
        disparity = F.relu(self.refinement(disparity, images2[:batch], images2[batch:]))
        outputs.append(self._to_input_resolution(disparity, STAGE_SCALES[3], full_size, h, w))
        return outputs

    def _stage_scale(self, stage: int) -> int:
        """The downsampling factor at which stage ``stage`` works (stage 3: :data:`STAGE3_SCALES` of its design)."""
        return STAGE_SCALES[stage] if stage < 3 else STAGE3_SCALES[self.stage3]

    @staticmethod
    def _to_input_resolution(disparity: torch.Tensor, scale: int, full_size, h: int, w: int) -> torch.Tensor:
        up = F.interpolate(disparity, size=full_size, mode="bilinear", align_corners=False) * scale
        return up[..., :h, :w]


def upsample_peak(peak, height: int, width: int):
    """A stage's peak confidence (:meth:`CoarseToFineStereoNet.forward_with_confidence`) at the input resolution.

    Bilinear upsampling to the padded size (H and W rounded up to multiples of 16) and the crop to ``height`` x
    ``width``, as the network does for its disparities (``align_corners=False``; OpenCV's ``INTER_LINEAR`` uses the
    same pixel-centre convention).

    Args:
        peak: (h_s, w_s) float32 NumPy array in [0, 1], a stage's peak map of one image.
        height, width: the input size in pixels.

    Returns:
        (height, width) float32 in [0, 1].

    Raises:
        ValueError: for a map whose size is not the padded input size divided by one factor.

    Example:
        >>> import numpy as np
        >>> upsample_peak(np.array([[0.0, 1.0]], np.float32), 10, 20).shape
        (10, 20)
    """
    import cv2
    import numpy as np

    padded_height, padded_width = height + (-height) % 16, width + (-width) % 16
    peak = np.asarray(peak, dtype=np.float32)
    if peak.ndim != 2 or padded_height % peak.shape[0] or padded_width % peak.shape[1] \
            or padded_height // peak.shape[0] != padded_width // peak.shape[1]:
        raise ValueError(f"a peak map of shape {peak.shape} does not belong to a {height} x {width} input")
    up = cv2.resize(peak, (padded_width, padded_height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(up[:height, :width])


def save_weights(model: CoarseToFineStereoNet, path: str | Path, extra_metadata: dict | None = None) -> None:
    """Write the network's weights to a safetensors file with :data:`ARCHITECTURE` and its config in the metadata
    (:func:`stereo_depth_ros.models.weights.save_weights`).

    Args:
        model: the network.
        path: output ``.safetensors`` file.
        extra_metadata: more facts to store (training steps, data); values are JSON-encoded unless strings.
    """
    weights.save_weights(model, path, ARCHITECTURE, model.config, extra_metadata)


def load_weights(path: str | Path, max_disparity: int | None = None) -> CoarseToFineStereoNet:
    """Build a :class:`CoarseToFineStereoNet` from a safetensors file written by :func:`save_weights`.

    No pickle is involved: the file holds tensors and a JSON header only, so it can never run code. When the model
    card (``<stem>.json``) beside the file records a ``sha256``, the file must match it
    (:func:`stereo_depth_ros.models.weights.load_weights`).

    Args:
        path: the ``.safetensors`` file.
        max_disparity: override the stored search range (pixels at input resolution); the weights do not depend
            on it.

    Returns:
        the network in eval mode on the CPU.

    Raises:
        WeightsError: naming the file and what is wrong (missing, SHA-256 differs from the model card, not
            safetensors / truncated, another architecture, missing or unexpected tensors, wrong shapes).
    """
    def build(config: dict) -> CoarseToFineStereoNet:
        if max_disparity is not None:
            config = dict(config, max_disparity=int(max_disparity))
        return CoarseToFineStereoNet(**config)

    model, _ = weights.load_weights(path, ARCHITECTURE, build)
    return model
