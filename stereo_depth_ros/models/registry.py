"""The model registry: one name per model, with what it takes, what it gives and how to build it.

Every caller (the ROS node, the command line, benchmarks, the GPU check) builds models through
:func:`create_estimator`, so a new family (monocular depth, stereo super-resolution, instrument segmentation,
NIR-to-RGB) becomes available everywhere by registering one :class:`ModelSpec`.

Registered here: ``"coarse-to-fine"`` (the package's stereo network, stereo pair -> disparity per stage),
``"sgbm"`` (OpenCV's semi-global block matching, the classical baseline: one stage, no weights), the monocular depth
networks, SPP-LinkNet segmentation, stereo and single-image super-resolution, and the CycleGAN NIR <-> RGB
generators (docs/platform.md lists them).

Example:
    >>> [name for name in model_names("stereo-pair") if model_spec(name).family == "stereo"]
    ['coarse-to-fine', 'sgbm']
    >>> create_estimator("sgbm", max_disparity=64).disparity_range()
    (0.0, 63.0)
    >>> create_estimator("sgbm", weights="w.safetensors")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: model 'sgbm' has no option 'weights'; its options: max_disparity, min_disparity, block_size, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stereo_depth_ros.models.base import Estimator

INPUT_KINDS = ("stereo-pair", "image", "nir-image")
OUTPUT_KINDS = ("disparity-stages", "depth", "mask", "image", "image-pair")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: the registered name ("coarse-to-fine"), also the estimator's ``name``.
        family: the kind of task ("stereo", "monocular-depth", "super-resolution", "segmentation",
            "cross-modal").
        input_kind: one of :data:`INPUT_KINDS` (what ``predict`` takes).
        output_kinds: kinds from :data:`OUTPUT_KINDS` (the keys of ``predict``'s dict).
        build: ``build(**options) -> Estimator``, called by :func:`create_estimator` with the options given.
        architecture: the architecture name stored in the weights' metadata (None for classical methods).
        default_weights: the packaged weights file (None when the model needs none).
        description: one line for help texts and tables.
        options: the option names ``build`` accepts; :func:`create_estimator` refuses any other.
    """

    name: str
    family: str
    input_kind: str
    output_kinds: tuple[str, ...]
    build: Callable[..., Estimator]
    architecture: str | None = None
    default_weights: Path | None = None
    description: str = ""
    options: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a model needs a non-empty name, got {self.name!r}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"model {self.name!r}: input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        unknown = [kind for kind in self.output_kinds if kind not in OUTPUT_KINDS]
        if not self.output_kinds or unknown:
            raise ValueError(f"model {self.name!r}: output_kinds must be a non-empty selection of {OUTPUT_KINDS}, "
                             f"got {self.output_kinds!r}")
        if not callable(self.build):
            raise ValueError(f"model {self.name!r}: build must be callable, got {self.build!r}")


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Register ``spec`` under ``spec.name`` and return it.

    Raises:
        ValueError: if the name is taken (unless ``replace``) or ``spec`` is not a :class:`ModelSpec`.
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"register_model takes a ModelSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(model_names())}") from None


def model_names(input_kind: str | None = None) -> list[str]:
    """Registered model names, in registration order; only those taking ``input_kind`` when given.

    Raises:
        ValueError: for an ``input_kind`` not in :data:`INPUT_KINDS`.
    """
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    return [name for name, spec in _REGISTRY.items() if input_kind is None or spec.input_kind == input_kind]


def create_estimator(name: str, **options) -> Estimator:
    """Build the model registered under ``name`` with ``options``.

    Options of ``"coarse-to-fine"``: ``weights`` (path, None = packaged), ``device`` ("auto", "cpu", "cuda"),
    ``max_disparity`` (pixels, None = the weights'), ``input_scale`` (None = auto), ``backend`` ("auto", "torch",
    "onnx"), ``max_stage`` (0..3), ``half`` (float16 on CUDA). Options of ``"sgbm"``: ``max_disparity`` (the search
    range in pixels, None = 192, a multiple of 16) and OpenCV's ``min_disparity``, ``block_size``, ``p1``, ``p2``,
    ``uniqueness_ratio``, ``speckle_window_size``, ``speckle_range``, ``disp12_max_diff``, ``pre_filter_cap``,
    ``mode``.

    Raises:
        ValueError: for an unknown name or option (naming it), or an invalid option value.
        stereo_depth_ros.models.weights.WeightsError: for a missing or wrong weights file (naming it).
    """
    spec = model_spec(name)
    unknown = [option for option in options if option not in spec.options]
    if unknown:
        raise ValueError(f"model {name!r} has no option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(o) for o in unknown)}; its options: {', '.join(spec.options)}")
    return spec.build(**options)


def _build_coarse_to_fine(**options) -> Estimator:
    from stereo_depth_ros.models.estimator import CoarseToFineEstimator

    return CoarseToFineEstimator(**options)


def _build_sgbm(max_disparity: int | None = None, **options) -> Estimator:
    from stereo_depth_ros.models.sgbm import DEFAULT_NUM_DISPARITIES, SGBMEstimator

    return SGBMEstimator(num_disparities=DEFAULT_NUM_DISPARITIES if max_disparity is None else max_disparity,
                         **options)


register_model(ModelSpec(
    name="coarse-to-fine", family="stereo", input_kind="stereo-pair", output_kinds=("disparity-stages",),
    build=_build_coarse_to_fine, architecture="coarse-to-fine-stereo/v2",
    default_weights=WEIGHTS_DIR / "coarse_to_fine_stereo.safetensors",
    description="coarse-to-fine stereo network (AnyNet-style, 4 stages, self-supervised)",
    options=("weights", "device", "max_disparity", "input_scale", "backend", "max_stage", "half")))
register_model(ModelSpec(
    name="sgbm", family="stereo", input_kind="stereo-pair", output_kinds=("disparity-stages",), build=_build_sgbm,
    description="OpenCV semi-global block matching, 3-way (classical baseline, one stage)",
    options=("max_disparity", "min_disparity", "block_size", "p1", "p2", "uniqueness_ratio", "speckle_window_size",
             "speckle_range", "disp12_max_diff", "pre_filter_cap", "mode")))


def _build_dispnet_subpixel(**options) -> Estimator:
    from stereo_depth_ros.models.mono_dispnet import create_estimator as create_dispnet

    return create_dispnet(**options)


register_model(ModelSpec(
    name="dispnet-subpixel", family="monocular-depth", input_kind="image", output_kinds=("depth",),
    build=_build_dispnet_subpixel, architecture="mono-dispnet-subpixel/v1",
    default_weights=WEIGHTS_DIR / "dispnet_subpixel.safetensors",
    description="self-supervised sub-pixel DispNet (paper 004): metric depth on the rig it was trained on "
                "(BDIS synthetic), optional flip post-processing",
    options=("weights", "post_process", "backend", "device", "input_size", "half", "cache_dir")))



# Monocular depth, supervised on stereo pseudo ground truth (issue 11): the light U-Net and its original U-Net
# baseline (paper 001), the refinement CNNs C, SC, SCRX, SCRXU, SCRDU (paper 002). Relative depth (metric=False).
MONO_SUPERVISED_OPTIONS = ("weights", "backend", "device", "working_width", "input_size", "cache_dir")


def _build_mono_unet(original: bool):
    def build(**options) -> Estimator:
        from stereo_depth_ros.models import mono_unet
        from stereo_depth_ros.models.mono_estimator import build_supervised_estimator

        if original:
            return build_supervised_estimator("unet-original", mono_unet.ORIGINAL_ARCHITECTURE,
                                              mono_unet.build_original_unet, mono_unet.SIZE_MULTIPLE, None,
                                              untrained_config={"width": 64}, **options)
        return build_supervised_estimator("unet", mono_unet.LIGHT_ARCHITECTURE, mono_unet.build_light_unet,
                                          mono_unet.SIZE_MULTIPLE, model_spec("unet").default_weights, **options)
    return build


def _build_refinement_cnn(variant: str):
    def build(**options) -> Estimator:
        from stereo_depth_ros.models import refinement_cnn
        from stereo_depth_ros.models.mono_estimator import build_supervised_estimator

        return build_supervised_estimator(variant, refinement_cnn.ARCHITECTURE, refinement_cnn.build_refinement_cnn,
                                          refinement_cnn.SIZE_MULTIPLE, model_spec(variant).default_weights,
                                          **options)
    return build


register_model(ModelSpec(
    name="unet", family="monocular-depth", input_kind="image", output_kinds=("depth",),
    build=_build_mono_unet(False), architecture="mono-light-unet/v1",
    default_weights=WEIGHTS_DIR / "mono_unet.safetensors",
    description="light U-Net, 1.22M parameters (paper 001), relative depth",
    options=MONO_SUPERVISED_OPTIONS))
register_model(ModelSpec(
    name="unet-original", family="monocular-depth", input_kind="image", output_kinds=("depth",),
    build=_build_mono_unet(True), architecture="mono-original-unet/v1",
    description="original U-Net, 17.26M parameters (paper 001's baseline; untrained unless weights are given)",
    options=MONO_SUPERVISED_OPTIONS))
for _variant in ("c", "sc", "scrx", "scrxu", "scrdu"):
    register_model(ModelSpec(
        name=_variant, family="monocular-depth", input_kind="image", output_kinds=("depth",),
        build=_build_refinement_cnn(_variant), architecture="mono-refinement-cnn/v1",
        default_weights=WEIGHTS_DIR / f"refinement_{_variant}.safetensors",
        description=f"single-stage refinement CNN {_variant.upper()} (paper 002), relative depth",
        options=MONO_SUPERVISED_OPTIONS))


def _build_segmentation(task: str):
    def build(**options) -> Estimator:
        from stereo_depth_ros.models.segmentation import SegmentationEstimator

        name = {"binary": "spp-linknet", "parts": "spp-linknet-parts", "type": "spp-linknet-type"}[task]
        return SegmentationEstimator(task=task, name=name, **options)

    return build


for _task, _name, _text in (
        ("binary", "spp-linknet", "binary instrument vs background"),
        ("parts", "spp-linknet-parts", "instrument parts: background, shaft, wrist, claspers"),
        ("type", "spp-linknet-type", "instrument types: background + 7 EndoVis 2018 classes")):
    register_model(ModelSpec(
        name=_name, family="segmentation", input_kind="image", output_kinds=("mask",),
        build=_build_segmentation(_task), architecture="spp-linknet-34/v1",
        default_weights=WEIGHTS_DIR / "spp_linknet_binary.safetensors",
        description=f"SPP-LinkNet-34 instrument segmentation, {_text} (scaled ResNet-18 encoder, from scratch)",
        options=("weights", "working_height", "threshold", "backend", "device", "cache_dir")))


# Stereo super-resolution with parallax attention (issue 12, paper 003 section II-A) and its single-image baseline.
def _build_super_resolution(name: str, scale: int, stereo: bool):
    def build(**options) -> Estimator:
        from stereo_depth_ros.models.stereo_sr import create_estimator as create_sr

        return create_sr(name, scale, stereo, **options)
    return build


for _scale in (2, 4):
    register_model(ModelSpec(
        name=f"stereo-sr-x{_scale}", family="super-resolution", input_kind="stereo-pair",
        output_kinds=("image-pair",), build=_build_super_resolution(f"stereo-sr-x{_scale}", _scale, True),
        architecture="stereo-sr-parallax-attention/v1", default_weights=WEIGHTS_DIR / f"stereo_sr_x{_scale}.safetensors",
        description=f"stereo super-resolution x{_scale} with bidirectional parallax attention (paper 003, scaled down)",
        options=("weights", "backend", "device", "cache_dir")))
    register_model(ModelSpec(
        name=f"single-image-sr-x{_scale}", family="super-resolution", input_kind="stereo-pair",
        output_kinds=("image-pair",), build=_build_super_resolution(f"single-image-sr-x{_scale}", _scale, False),
        architecture="single-image-sr/v1", default_weights=WEIGHTS_DIR / f"single_image_sr_x{_scale}.safetensors",
        description=f"single-image super-resolution x{_scale} (same extractor, no cross-view module; baseline)",
        options=("weights", "backend", "device", "cache_dir")))


# NIR-to-RGB cross-modal translation with CycleGAN (issue 14, paper 004 section 3.5).
def _build_cross_modal(direction: str, name: str):
    def build(**options) -> Estimator:
        from stereo_depth_ros.models.cross_modal import create_estimator as create_cross_modal

        return create_cross_modal(direction, name, **options)
    return build


for _direction, _input_kind in (("nir-to-rgb", "nir-image"), ("rgb-to-nir", "image")):
    register_model(ModelSpec(
        name=f"cyclegan-{_direction}", family="cross-modal", input_kind=_input_kind, output_kinds=("image",),
        build=_build_cross_modal(_direction, f"cyclegan-{_direction}"), architecture="cyclegan-resnet-generator/v1",
        default_weights=WEIGHTS_DIR / f"cyclegan_{_direction.replace('-', '_')}.safetensors",
        description=f"CycleGAN ResNet generator {_direction.replace('-', ' ')} (scaled down; unpaired training)",
        options=("weights", "backend", "device", "cache_dir")))
