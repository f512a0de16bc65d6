"""NIR-to-RGB cross-modal translation with CycleGAN (paper 004 section 3.5; Zhu et al., "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks", ICCV 2017), and the estimator behind the registry names
``"cyclegan-nir-to-rgb"`` and ``"cyclegan-rgb-to-nir"``.

Networks (CycleGAN's, appendix 7.2 of Zhu et al., scaled down to train on 2 shared CPU cores; docs/cross_modal.md
says what it costs against the paper's 20 GPU hours):

- generator (:class:`ResnetGenerator`, :func:`build_generator`): reflection pad 3 + 7x7 convolution to
  ``base_channels`` (CycleGAN: 64), two stride-2 3x3 convolutions (x2 channels each), ``residual_blocks`` residual
  blocks of two reflection-padded 3x3 convolutions (CycleGAN: 9 at 256 px), two stride-2 transposed 3x3
  convolutions back to full resolution, reflection pad 3 + 7x7 convolution to the output channels and tanh;
  instance normalisation and ReLU after every convolution but the last. The packaged size: 24 base channels, 5
  residual blocks (:data:`DEFAULT_GENERATOR_CONFIG`). Option ``input_skip`` (not in CycleGAN): the output is added
  to the input (its grey for the NIR output) and clipped, the last convolution starting at zero, so that training
  starts from the identity instead of from a blur.
- discriminator (:class:`PatchDiscriminator`, :func:`build_discriminator`): the 70x70 PatchGAN, 4x4 convolutions
  C(b)-C(2b)-C(4b) with stride 2 and C(8b) with stride 1, then a 4x4 convolution to one channel of per-patch
  real/fake scores; instance normalisation (not on the first layer), LeakyReLU 0.2; least-squares loss, so no
  sigmoid (Mao et al., LSGAN, ICCV 2017). Packaged base: 16 channels (CycleGAN: 64).
- :class:`ImagePool`: CycleGAN's history of generated images (Shrivastava et al., CVPR 2017) that the
  discriminators are updated on.

Image conventions. The networks take and return float RGB in [0, 1] (they map to [-1, 1] inside, as CycleGAN
trains, and back), so the ONNX graph is the whole network. NIR is handled as a 3-channel grey image (the dataset
stores it so): the NIR -> RGB generator takes 3 equal channels, the RGB -> NIR generator computes one channel and
replicates it to 3 (``out_channels=1``). This keeps CycleGAN's identity loss well defined in both directions
(``G_nir_to_rgb(rgb) ~ rgb``, ``G_rgb_to_nir(nir) ~ nir``).

Sizes: any H, W; the estimator pads by reflection to a multiple of 4 (the two stride-2 steps), at least 16 pixels,
and crops back.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stereo_depth_ros.images import check_image
from stereo_depth_ros.models.base import Estimator, check_image_size

__all__ = ["ARCHITECTURE", "DIRECTIONS", "DEFAULT_GENERATOR_CONFIG", "DEFAULT_DISCRIMINATOR_CONFIG", "SIZE_MULTIPLE",
           "ResnetGenerator", "PatchDiscriminator", "ImagePool", "build_generator", "build_discriminator",
           "save_generator", "load_generator", "nir_to_grey", "CrossModalEstimator", "lsgan_loss",
           "PAIR_MODALITIES", "match_colour_histograms", "same_modality_pair"]

ARCHITECTURE = "cyclegan-resnet-generator/v1"
DIRECTIONS = ("nir-to-rgb", "rgb-to-nir")
OUTPUT_KIND = "image"
SIZE_MULTIPLE = 4      # two stride-2 convolutions
MIN_SIZE = 16          # smallest padded side: the residual blocks' reflection pads need >= 2 pixels at 1/4
DEFAULT_GENERATOR_CONFIG = {"in_channels": 3, "out_channels": 3, "base_channels": 24, "residual_blocks": 5,
                            "input_skip": False}
DEFAULT_DISCRIMINATOR_CONFIG = {"in_channels": 3, "base_channels": 16}
#: How a rectified NIR (left) + RGB (right) pair is brought into one modality before stereo matching
#: (:func:`same_modality_pair`).
PAIR_MODALITIES = ("pseudo-rgb", "pseudo-rgb-matched", "pseudo-nir")
# the output channels of each direction's generator (NIR is one channel, replicated to 3)
DIRECTION_OUT_CHANNELS = {"nir-to-rgb": 3, "rgb-to-nir": 1}


class ResidualBlock(nn.Module):
    """x + [reflect pad 1, 3x3 conv, instance norm, ReLU, reflect pad 1, 3x3 conv, instance norm](x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (module docstring), scaled by ``base_channels`` and ``residual_blocks``.

    Args:
        in_channels: input channels (3: RGB, or NIR as 3-channel grey).
        out_channels: 3 (RGB) or 1 (NIR, replicated to 3 channels at the output).
        base_channels: channels of the 7x7 stem (> 0); 2x and 4x after the down-sampling steps.
        residual_blocks: number of residual blocks at 1/4 resolution (>= 0).
        input_skip: add the network's output to the input (its channel mean for a 1-channel output) and clip to
            [0, 1], with the last convolution starting at zero, so that an untrained generator returns its input
            (NIR -> RGB: the replicated NIR; RGB -> NIR: the grey of the RGB). Not in CycleGAN; a variant that
            keeps the input's detail from the first step (docs/cross_modal.md says what it changes).

    ``forward(x)``: (B, in_channels, H, W) float RGB in [0, 1], H and W multiples of 4 and at least 8 ->
    (B, 3, H, W) float in [0, 1].

    Raises:
        ValueError: for channel counts or block numbers out of range.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base_channels: int = 24,
                 residual_blocks: int = 5, input_skip: bool = False) -> None:
        super().__init__()
        for label, value, low in (("in_channels", in_channels, 1), ("base_channels", base_channels, 1),
                                  ("residual_blocks", residual_blocks, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"generator {label} must be an integer >= {low}, got {value!r}")
        if out_channels not in (1, 3):
            raise ValueError(f"generator out_channels must be 1 (NIR) or 3 (RGB), got {out_channels!r}")
        if not isinstance(input_skip, bool):
            raise ValueError(f"generator input_skip must be true or false, got {input_skip!r}")
        if input_skip and in_channels != 3:
            raise ValueError("generator input_skip needs 3 input channels")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "base_channels": base_channels,
                       "residual_blocks": residual_blocks}
        if input_skip:
            self.config["input_skip"] = True  # absent = False, so the files of the plain generator stay as they are
        b = base_channels
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, b, 7), nn.InstanceNorm2d(b),
                                   nn.ReLU(True)]
        for factor in (1, 2):
            layers += [nn.Conv2d(b * factor, b * factor * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(b * factor * 2), nn.ReLU(True)]
        layers += [ResidualBlock(b * 4) for _ in range(residual_blocks)]
        for factor in (4, 2):
            layers += [nn.ConvTranspose2d(b * factor, b * factor // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(b * factor // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(b, out_channels, 7), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.out_channels = out_channels
        self.input_skip = input_skip
        if input_skip:
            last = layers[-2]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_skip:
            base = x if self.out_channels == 3 else x.mean(dim=1, keepdim=True)
            y = torch.clamp(base + self.body(x * 2.0 - 1.0), 0.0, 1.0)
        else:
            y = (self.body(x * 2.0 - 1.0) + 1.0) * 0.5
        if self.out_channels == 1:
            y = y.expand(-1, 3, -1, -1)
        return y


class PatchDiscriminator(nn.Module):
    """The 70x70 PatchGAN discriminator (module docstring), least-squares (no sigmoid).

    Args:
        in_channels: input channels (3).
        base_channels: channels of the first layer (> 0).

    ``forward(x)``: (B, in_channels, H, W) float in [0, 1] -> (B, 1, h, w) raw scores (about H/8 - 2 per side; at
    least 1 for H, W >= 32; each score sees a 70x70 patch), 1 = real, 0 = fake under the LSGAN loss.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 16) -> None:
        super().__init__()
        for label, value in (("in_channels", in_channels), ("base_channels", base_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"discriminator {label} must be a positive integer, got {value!r}")
        self.config = {"in_channels": in_channels, "base_channels": base_channels}
        b = base_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = b
        for factor, stride in ((2, 2), (4, 2), (8, 1)):
            layers += [nn.Conv2d(channels, b * factor, 4, stride=stride, padding=1), nn.InstanceNorm2d(b * factor),
                       nn.LeakyReLU(0.2, True)]
            channels = b * factor
        layers += [nn.Conv2d(channels, 1, 4, stride=1, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2.0 - 1.0)


def _merged(config: dict | None, defaults: dict, what: str) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} configuration keys {unknown}; known: {sorted(defaults)}")
    return {**defaults, **config}


def build_generator(config: dict | None = None) -> ResnetGenerator:
    """Build a CycleGAN generator from a config (keys of :data:`DEFAULT_GENERATOR_CONFIG`; missing keys take the
    defaults: 3 -> 3 channels, 24 base channels, 5 residual blocks, about 1.0 M parameters).

    Raises:
        ValueError: for unknown keys or values out of range.

    Example:
        >>> generator = build_generator({"base_channels": 8, "residual_blocks": 1})
        >>> tuple(generator(torch.rand(1, 3, 20, 28)).shape)
        (1, 3, 20, 28)
    """
    return ResnetGenerator(**_merged(config, DEFAULT_GENERATOR_CONFIG, "generator"))


def build_discriminator(config: dict | None = None) -> PatchDiscriminator:
    """Build a PatchGAN discriminator from a config (keys of :data:`DEFAULT_DISCRIMINATOR_CONFIG`).

    Raises:
        ValueError: for unknown keys or values out of range.

    Example:
        >>> tuple(build_discriminator()(torch.rand(2, 3, 128, 128)).shape)
        (2, 1, 14, 14)
    """
    return PatchDiscriminator(**_merged(config, DEFAULT_DISCRIMINATOR_CONFIG, "discriminator"))


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al., LSGAN, ICCV 2017; CycleGAN section 4): mean of (scores - 1)^2 for
    ``real`` targets, mean of scores^2 for fake ones.

    Example:
        >>> lsgan_loss(torch.tensor([1.0, 0.0]), real=True).item(), lsgan_loss(torch.tensor([1.0, 0.0]), False).item()
        (0.5, 0.5)
    """
    target = 1.0 if real else 0.0
    return ((scores - target) ** 2).mean()


class ImagePool:
    """CycleGAN's history buffer of generated images (Zhu et al. section 4; Shrivastava et al., CVPR 2017).

    :meth:`query` takes a batch (B, C, H, W); for each image: while fewer than ``size`` are stored, it is stored and
    returned; once full, with probability 0.5 a randomly chosen stored image is returned and the new one takes its
    place, otherwise the new image is returned (and not stored). ``size=0`` returns the batch unchanged.

    Args:
        size: the number of images kept (>= 0; CycleGAN: 50).
        seed: seed of the pool's own random generator (None: unseeded).

    Raises:
        ValueError: for a negative or non-integer size.
    """

    def __init__(self, size: int = 50, seed: int | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"image pool size must be an integer >= 0, got {size!r}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.random = random.Random(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The batch to show the discriminator: (B, C, H, W) in, (B, C, H, W) out (detached from the graph).

        Raises:
            ValueError: if ``images`` is not a 4-D tensor.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"image pool takes a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        images = images.detach()
        if self.size == 0:
            return images
        returned = []
        for image in images:
            image = image.clone()
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif self.random.random() < 0.5:
                index = self.random.randrange(self.size)
                returned.append(self.images[index])
                self.images[index] = image
            else:
                returned.append(image)
        return torch.stack(returned)


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is ``"nir-to-rgb"`` or ``"rgb-to-nir"``, else raise ValueError."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def save_generator(generator: ResnetGenerator, path: str | Path, direction: str,
                   extra_metadata: dict | None = None) -> None:
    """Write a generator in the platform's weights format (:func:`stereo_depth_ros.models.weights.save_weights`):
    architecture :data:`ARCHITECTURE`, its config, and ``direction`` in the metadata.

    Raises:
        ValueError: for an unknown direction, a generator whose output channels do not fit it (NIR is 1 channel,
            RGB 3), or a reserved metadata key.
    """
    from stereo_depth_ros.models.weights import save_weights

    check_direction(direction)
    if generator.config["out_channels"] != DIRECTION_OUT_CHANNELS[direction]:
        raise ValueError(f"a {direction} generator has {DIRECTION_OUT_CHANNELS[direction]} output channel(s), this "
                         f"one has {generator.config['out_channels']}")
    extra = dict(extra_metadata or {})
    if "direction" in extra:
        raise ValueError("extra_metadata may not set 'direction': it is written from the argument")
    save_weights(generator, path, ARCHITECTURE, dict(generator.config), {"direction": direction, **extra})


def load_generator(path: str | Path, direction: str) -> tuple[ResnetGenerator, dict]:
    """Load a generator written by :func:`save_generator`, checking its architecture and direction.

    Returns:
        ``(generator in eval mode, metadata)``.

    Raises:
        stereo_depth_ros.models.weights.WeightsError: for a missing, corrupt or wrong file, or one of the other
            direction (naming the file).
    """
    from stereo_depth_ros.models.weights import WeightsError, load_weights

    check_direction(direction)
    generator, metadata = load_weights(path, ARCHITECTURE, build_generator)
    if metadata.get("direction") != direction:
        raise WeightsError(f"weights file {path} is a {metadata.get('direction')!r} generator, expected {direction!r}")
    return generator, metadata


def nir_to_grey(image: np.ndarray, what: str = "NIR image") -> np.ndarray:
    """A NIR image as (H, W) uint8 grey.

    Args:
        image: (H, W) uint8, (H, W) uint16 (mono16; divided by 257 and rounded, so 65535 -> 255), (H, W, 1) uint8,
            or (H, W, 3) uint8 grey stored in three channels (their mean is taken).
        what: the name used in error messages.

    Raises:
        ValueError: for anything else (not an array, empty, other dtype or channel count), naming it.

    Example:
        >>> nir_to_grey(np.full((1, 2), 65535, np.uint16)).tolist()
        [[255, 255]]
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] in (1, 3):
        if image.dtype != np.uint8:
            raise ValueError(f"{what} with channels must be uint8, got {image.dtype}")
    elif image.ndim != 2:
        raise ValueError(f"{what} must be (H, W) uint8/uint16 or (H, W, 1 or 3) uint8, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {image.shape})")
    if image.ndim == 2:
        if image.dtype == np.uint16:
            return np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
        if image.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8 (mono8) or uint16 (mono16), got {image.dtype}")
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return np.round(image.astype(np.float32).mean(axis=2)).astype(np.uint8)


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) the generator runs at: each side rounded up to a multiple of 4, at least 16 pixels.

    Example:
        >>> padded_size(5, 33)
        (16, 36)
    """
    check_image_size(height, width)
    return (max(MIN_SIZE, -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE),
            max(MIN_SIZE, -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE))


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H', W') float in [0, 1], reflection-padded to :func:`padded_size`."""
    height, width = rgb.shape[:2]
    padded_h, padded_w = padded_size(height, width)
    # numpy's symmetric padding repeats the reflection when the pad exceeds the image, so tiny images work too
    rgb = np.pad(rgb, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="symmetric")
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0)[None]


class CrossModalEstimator(Estimator):
    """A CycleGAN generator behind the estimator interface: ``predict(image) -> {"image": (H, W, 3) uint8 BGR}``.

    ``"nir-to-rgb"``: a NIR image ((H, W) uint8 mono8, (H, W) uint16 mono16 divided by 257, or (H, W, 3) uint8 grey
    stored in 3 channels) -> pseudo-RGB, (H, W, 3) uint8 BGR. ``"rgb-to-nir"``: (H, W, 3) uint8 BGR -> NIR
    replicated to 3 channels, (H, W, 3) uint8 BGR. Any H, W: padded by reflection to a multiple of 4 (at least 16)
    and cropped back.

    Args:
        direction: ``"nir-to-rgb"`` or ``"rgb-to-nir"``.
        name: the registered name (``"cyclegan-nir-to-rgb"``, ``"cyclegan-rgb-to-nir"``).
        weights: a ``.safetensors`` file from :func:`save_generator` (None: the registry's packaged file; if it is
            absent, an untrained generator with a warning).
        backend: "auto", "torch" or "onnx" (:class:`~stereo_depth_ros.models.inference.NetworkRunner`).
        device: "auto", "cpu" or "cuda".
        cache_dir: ONNX cache folder (None: the default).

    Raises:
        ValueError: for an unknown direction, backend or device.
        stereo_depth_ros.models.weights.WeightsError: for a missing or wrong weights file, or a generator of the
            other direction (naming the file).
    """

    def __init__(self, direction: str = "nir-to-rgb", name: str | None = None, weights: str | Path | None = None,
                 backend: str = "auto", device: str = "cpu", cache_dir: str | Path | None = None) -> None:
        import warnings

        from stereo_depth_ros.models.inference import NetworkRunner
        from stereo_depth_ros.models.weights import sha256_file

        self.direction = check_direction(direction)
        self.name = name or f"cyclegan-{direction}"
        if weights is None:
            from stereo_depth_ros.models.registry import model_spec

            default = model_spec(self.name).default_weights
            weights = default if default is not None and Path(default).is_file() else None
            if weights is None:
                warnings.warn(f"no packaged weights for {self.name}; running an untrained generator", stacklevel=2)
        digest = None
        if weights is None:
            module = build_generator({"out_channels": DIRECTION_OUT_CHANNELS[direction]})
            self.metadata: dict = {}
        else:
            module, self.metadata = load_generator(weights, direction)
            digest = sha256_file(weights)
        self.weights = None if weights is None else Path(weights)
        self.config = dict(module.config)
        self.runner = NetworkRunner(module, ["image"], ["translated"], backend=backend, device=device,
                                    weights_sha256=digest, config={**self.config, "direction": direction},
                                    cache_dir=cache_dir)
        self.backend = self.runner.backend

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` inputs (ONNX export or cache load at the padded size).

        Raises:
            ValueError: for a size that is not positive.
        """
        padded_h, padded_w = padded_size(height, width)
        self.runner.prepare((1, 3, padded_h, padded_w))

    def _input_rgb(self, image: np.ndarray) -> np.ndarray:
        if self.direction == "nir-to-rgb":
            grey = nir_to_grey(image)
            return np.repeat(grey[..., None], 3, axis=2)
        check_image(image, "RGB image")
        return image[..., ::-1]

    def predict(self, image: np.ndarray) -> dict:
        """Translate one image (see the class docstring for the inputs of each direction).

        Returns:
            ``{"image": (H, W, 3) uint8 BGR}``: pseudo-RGB, or the NIR replicated to 3 channels.

        Raises:
            ValueError: for an input of the wrong type, dtype, channel count, or an empty one (naming it).
        """
        rgb = self._input_rgb(image)
        height, width = rgb.shape[:2]
        output = self.runner.run(_to_tensor(rgb))[0][0, :, :height, :width]
        bgr = output.transpose(1, 2, 0)[..., ::-1]
        return {OUTPUT_KIND: np.clip(np.round(bgr * 255.0), 0, 255).astype(np.uint8)}

    def translate(self, image: np.ndarray) -> np.ndarray:
        """``predict(image)["image"]``."""
        return self.predict(image)[OUTPUT_KIND]

    def describe(self) -> str:
        """One line of JSON: name, direction, backend, weights."""
        return json.dumps({"model": self.name, "direction": self.direction, "backend": self.backend,
                           "weights": None if self.weights is None else str(self.weights)})


def create_estimator(direction: str, name: str, **options) -> CrossModalEstimator:
    """Build a :class:`CrossModalEstimator` (the registry's build function)."""
    return CrossModalEstimator(direction=direction, name=name, **options)


def match_colour_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give each colour channel of ``image`` the histogram of the same channel of ``reference``
    (``skimage.exposure.match_histograms(..., channel_axis=-1)``: classical histogram specification, Gonzalez and
    Woods, "Digital Image Processing", section 3.3.2).

    A grey image (three equal channels) comes out coloured: each channel gets its own monotonic tone curve, so a
    pixel's colour follows the reference's colour at the same intensity rank. Used on the NIR view of a NIR/RGB
    stereo pair with the RGB view as the reference (:func:`same_modality_pair`); the two views see the same scene, so
    their global colour distributions agree up to occlusions and the image borders.

    Args:
        image: (H, W, 3) uint8 (BGR).
        reference: (H2, W2, 3) uint8 in the same channel order; any size.

    Returns:
        (H, W, 3) uint8: ``image`` with the reference's per-channel histograms.

    Raises:
        ValueError: for an image or reference that is not a non-empty (H, W, 3) uint8 array (naming it).

    Example:
        >>> grey = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
        >>> reddish = np.dstack([grey[..., 0] // 2, grey[..., 0] // 2, grey[..., 0]])  # BGR: red strongest
        >>> matched = match_colour_histograms(grey, reddish)
        >>> bool((matched[..., 2] >= matched[..., 0]).all()), int(matched[..., 0].max())
        (True, 127)
    """
    from skimage.exposure import match_histograms

    check_image(image, "image")
    check_image(reference, "reference image")
    matched = match_histograms(image, reference, channel_axis=-1)
    return np.clip(np.round(matched), 0, 255).astype(np.uint8)


def same_modality_pair(nir: np.ndarray, rgb: np.ndarray, modality: str, to_rgb=None, to_nir=None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Bring a rectified NIR (left) + RGB (right) stereo pair into one modality for a stereo network trained on
    colour pairs (paper 004 section 3.5: translate "both views into the same modality, then estimate depth").

    Modalities (:data:`PAIR_MODALITIES`):

    - ``"pseudo-rgb"``: (pseudo-RGB of the NIR view, RGB), the paper's NIR -> RGB direction;
    - ``"pseudo-rgb-matched"``: the same, the pseudo-RGB then given the RGB view's per-channel histograms
      (:func:`match_colour_histograms`; beyond the paper: it removes the generator's global colour cast, which a
      stereo network trained on colour pairs reads as a mismatch);
    - ``"pseudo-nir"``: (NIR, the RGB view translated to NIR), the other direction; both views grey.

    Args:
        nir: the NIR view, (H, W) uint8 or uint16 or (H, W, 3) uint8 grey (:func:`nir_to_grey`).
        rgb: the RGB view, (H, W, 3) uint8 BGR, the same size.
        modality: one of :data:`PAIR_MODALITIES`.
        to_rgb: NIR -> RGB estimator (``create_estimator("cyclegan-nir-to-rgb")``); needed for the two pseudo-RGB
            modalities.
        to_nir: RGB -> NIR estimator (``create_estimator("cyclegan-rgb-to-nir")``); needed for ``"pseudo-nir"``.

    Returns:
        ``(left, right)``: two (H, W, 3) uint8 BGR images for the stereo network.

    Raises:
        ValueError: for an unknown modality, a missing estimator, views of different sizes or bad images (naming
            them).
    """
    if modality not in PAIR_MODALITIES:
        raise ValueError(f"unknown NIR/RGB pair modality {modality!r}; expected one of {', '.join(PAIR_MODALITIES)}")
    grey = nir_to_grey(nir)
    check_image(rgb, "RGB image")
    if grey.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"the NIR and RGB views differ in size: {grey.shape[1]} x {grey.shape[0]} vs "
                         f"{rgb.shape[1]} x {rgb.shape[0]}")
    needed = to_nir if modality == "pseudo-nir" else to_rgb
    if needed is None:
        raise ValueError(f"modality {modality!r} needs the "
                         f"{'rgb-to-nir' if modality == 'pseudo-nir' else 'nir-to-rgb'} estimator")
    if modality == "pseudo-nir":
        return np.repeat(grey[..., None], 3, axis=2), needed.predict(rgb)[OUTPUT_KIND]
    pseudo = needed.predict(grey)[OUTPUT_KIND]
    if modality == "pseudo-rgb-matched":
        pseudo = match_colour_histograms(pseudo, rgb)
    return pseudo, rgb
