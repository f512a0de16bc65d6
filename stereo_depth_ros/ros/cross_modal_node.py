"""The NIR-to-RGB cross-modal node (``cross_modal_node``, issue 14; paper 004, sections 3.5 and 4.5): a near-infrared
(NIR) image, or a calibrated NIR + RGB pair, in; pseudo-RGB and depth out.

The CycleGAN NIR -> RGB generator (registry name ``"cyclegan-nir-to-rgb"``,
:mod:`stereo_depth_ros.models.cross_modal`) turns the NIR image into a pseudo-RGB image, on which the depth networks
trained on RGB run. Two input modes (parameter ``input_mode``, read-only after start):

- ``"nir"``: in ``image_nir`` (sensor_msgs/Image, ``mono8`` or ``mono16``; with ``with_camera_info`` true also
  ``camera_info``, synchronised, whose size must match). Out ``pseudo_rgb`` (``rgb8``) and ``depth`` (32FC1 metres,
  REP-117) from the monocular network ``depth_model`` (default ``"dispnet-subpixel"``) on the pseudo-RGB image. The
  depth scale follows the monocular node's rules (:mod:`stereo_depth_ros.ros.mono_node`), first that applies:
  ``depth_scale`` > 0 (metres per model unit), a metric model as it is; otherwise the frame is skipped as problem
  ``"scale"`` (this node has no stereo depth to align to). Depth limits: the monocular node's
  :func:`~stereo_depth_ros.ros.mono_node.apply_depth_limits` (``min_depth``, ``max_depth``).
- ``"nir-rgb-pair"``: the paper's rig, one NIR and one RGB camera as a rectified stereo pair: in
  ``left/image_rect`` (NIR, ``mono8``/``mono16``), ``right/image_rect`` (RGB, ``rgb8``/``bgr8``),
  ``left/camera_info``, ``right/camera_info``. The pair is brought into one modality
  (:func:`stereo_depth_ros.models.cross_modal.same_modality_pair`, parameter ``pair_modality``): by default the NIR
  view is translated to pseudo-RGB and given the RGB view's per-channel histograms (``"pseudo-rgb-matched"``), and
  the stereo network runs on (pseudo-RGB, RGB); ``"pseudo-rgb"`` skips the histogram step, ``"pseudo-nir"``
  translates the RGB view to NIR instead (``pseudo_rgb`` is then the plain translation of the NIR view, made only
  while it has a subscriber). Out ``pseudo_rgb`` (the left view the stereo network saw, in the pseudo-RGB
  modalities) and ``disparity``, ``disparity/image``, ``depth`` and ``points2``
  exactly as :class:`~stereo_depth_ros.ros.stereo_node.StereoDepthNode` publishes them: this node *is* a stereo
  node (a subclass) whose input conversion translates the NIR view first, so the stereo parameters (``method``,
  ``weights``, ``min_disparity``, ``min_depth``, ``max_depth``, ...) and any output the stereo node gains apply
  here too; an empty ``weights`` means the packaged cross-spectral fine-tune (:data:`CROSS_SPECTRAL_WEIGHTS`) in
  this mode.

On the node base (:mod:`stereo_depth_ros.ros.node_base`): lazy (no input subscription and no inference while no
output has a subscriber; in pair mode the stereo network runs only while a stereo output has a subscriber), the
newest input set only, bad input reported as counted, throttled problems naming the field (an RGB image on
``image_nir``: kind ``"encoding"``; a NIR/RGB pair of different sizes: ``"image_size"``; a camera_info of another
size: ``"camera_info_size"``), never a crash. Topics and parameters: docs/ros_interface.md.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES
from stereo_depth_ros.models.cross_modal import PAIR_MODALITIES, same_modality_pair
from stereo_depth_ros.models.registry import WEIGHTS_DIR, create_estimator
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.conversions import InputError
from stereo_depth_ros.ros.mono_node import apply_depth_limits, create_monocular_estimator, fixed_depth_scale
from stereo_depth_ros.ros.node_base import COMMON_PARAMETERS, SkipSet, run_node
from stereo_depth_ros.ros.parameters import ParameterSpec, parameter_table
from stereo_depth_ros.ros.stereo_node import PARAMETERS as STEREO_PARAMETERS
from stereo_depth_ros.ros.stereo_node import StereoDepthNode

DEFAULT_NODE_NAME = "cross_modal_node"
INPUT_MODES = ("nir", "nir-rgb-pair")
TRANSLATION_MODEL = "cyclegan-nir-to-rgb"
NIR_TRANSLATION_MODEL = "cyclegan-rgb-to-nir"
DEFAULT_PAIR_MODALITY = "pseudo-rgb-matched"
#: The stereo weights of the nir-rgb-pair mode when parameter ``weights`` is empty: the packaged network fine-tuned
#: with ``train-stereo --cross-spectral`` (docs/cross_modal.md, "Cross-spectral fine-tuning").
CROSS_SPECTRAL_WEIGHTS = WEIGHTS_DIR / "coarse_to_fine_cross_spectral.safetensors"
DEFAULT_DEPTH_MODEL = "dispnet-subpixel"
NIR_ENCODINGS = ("mono8", "mono16")
RGB_ENCODINGS = ("rgb8", "bgr8")
PSEUDO_RGB_TOPIC = "pseudo_rgb"
#: Inputs of the "nir" mode, without and with the optional camera_info.
NIR_INPUT_TOPICS = {"image_nir": Image}
NIR_INPUT_TOPICS_WITH_INFO = {"image_nir": Image, "camera_info": CameraInfo}
#: Inputs of the "nir-rgb-pair" mode: the stereo node's (left = NIR, right = RGB).
PAIR_INPUT_TOPICS = dict(StereoDepthNode.INPUT_TOPICS)

CROSS_MODAL_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("input_mode", "nir", "nir: a NIR image alone on 'image_nir' -> pseudo_rgb and monocular depth; "
                  "nir-rgb-pair: a rectified NIR (left) + RGB (right) pair -> pseudo_rgb and the stereo network's "
                  "disparity, depth and points2 on (pseudo-RGB, RGB).", read_only=True, choices=INPUT_MODES),
    ParameterSpec("translation_weights", "", "NIR -> RGB generator weights (safetensors, "
                  "cross_modal.save_generator); empty = the packaged cyclegan-nir-to-rgb weights.", read_only=True),
    ParameterSpec("pair_modality", DEFAULT_PAIR_MODALITY, "nir-rgb-pair mode: how the pair is brought into one "
                  "modality for the stereo network: pseudo-rgb (pseudo-RGB of the NIR view, RGB), pseudo-rgb-matched "
                  "(the same, the pseudo-RGB given the RGB view's per-channel histograms; default) or pseudo-nir "
                  "(NIR, the RGB view translated to NIR). docs/cross_modal.md compares them.", read_only=True,
                  choices=PAIR_MODALITIES),
    ParameterSpec("nir_translation_weights", "", "pair_modality pseudo-nir: RGB -> NIR generator weights "
                  "(safetensors); empty = the packaged cyclegan-rgb-to-nir weights.", read_only=True),
    ParameterSpec("backend", "auto", "Inference backend of the translation and monocular networks: auto "
                  "(onnxruntime on the CPU), torch or onnx.", read_only=True, choices=("auto", "torch", "onnx")),
    ParameterSpec("depth_model", DEFAULT_DEPTH_MODEL, "nir mode: registered monocular depth model run on the "
                  "pseudo-RGB image (dispnet-subpixel, unet, ...; stereo-depth-ros eval-mono lists them).",
                  read_only=True),
    ParameterSpec("depth_weights", "", "nir mode: weights of depth_model (safetensors); empty = its packaged "
                  "weights.", read_only=True),
    ParameterSpec("depth_scale", 0.0, "nir mode: metres per monocular model unit; 0 = the model's own metres "
                  "(metric models; a scale-free model without it skips frames as problem 'scale').",
                  float_range=(0.0, 1.0e6)),
    ParameterSpec("with_camera_info", False, "nir mode: also subscribe 'camera_info' synchronised with 'image_nir' "
                  "(its size must match the image).", read_only=True),
)
#: The node's own parameters: the stereo node's (pair mode; min_depth, max_depth also limit the monocular depth)
#: and the cross-modal ones.
#: nir-rgb-pair mode publishes stage 3 by default, unlike the stereo node: with the cross-spectral weights the
#: validation sets prefer it (eval-cross-spectral --stage 2|3 on BDIS synthetic 30 + 31 and the country pairs,
#: pseudo-RGB matched: 35.52 / 45.42 px at stage 3 against 35.73 / 45.54 px at stage 2; docs/cross_modal.md).
PAIR_OUTPUT_STAGE = NUM_STAGES - 1
PARAMETERS: tuple[ParameterSpec, ...] = tuple(
    replace(spec, default=PAIR_OUTPUT_STAGE, description="nir-rgb-pair mode: network stage published on "
            "'disparity' (0 coarsest, 3 finest); earlier stages are cheaper. Default 3: the stage the validation "
            "sets select for the cross-spectral weights (docs/cross_modal.md). sgbm ignores it.")
    if spec.name == "output_stage" else spec for spec in STEREO_PARAMETERS) + CROSS_MODAL_PARAMETERS
#: Every parameter of the node (common ones first) by name.
PARAMETER_SPECS = parameter_table(COMMON_PARAMETERS, PARAMETERS)


def nir_to_array(msg: Image, name: str) -> np.ndarray:
    """Decode a NIR image: (H, W) uint8 for ``mono8``, (H, W) uint16 for ``mono16`` (what the translation network
    takes).

    Raises:
        InputError: kind "encoding" for any other encoding (e.g. an RGB image on the NIR input), naming the topic;
            other kinds: :func:`stereo_depth_ros.ros.conversions.check_image`.
    """
    if msg.encoding not in NIR_ENCODINGS:
        raise InputError("encoding", f"{name}: a NIR image must be {' or '.join(NIR_ENCODINGS)} (field 'encoding'), "
                                     f"got {msg.encoding!r}")
    return conversions.image_to_numpy(msg, name)


def rgb_to_bgr8(msg: Image, name: str) -> np.ndarray:
    """Decode the RGB camera's image of a NIR/RGB pair into (H, W, 3) uint8 BGR.

    Raises:
        InputError: kind "encoding" for an encoding other than rgb8/bgr8 (a NIR image on the RGB input, ...).
    """
    if msg.encoding not in RGB_ENCODINGS:
        raise InputError("encoding", f"{name}: the RGB camera's image must be {' or '.join(RGB_ENCODINGS)} "
                                     f"(field 'encoding'), got {msg.encoding!r}")
    return conversions.image_to_bgr8(msg, name)


class CrossModalNode(StereoDepthNode):
    """NIR-to-RGB node (module docstring): a :class:`~stereo_depth_ros.ros.stereo_node.StereoDepthNode` whose left
    view is a NIR image translated to pseudo-RGB, or, in ``"nir"`` mode, a NIR image alone with monocular depth.

    Attributes:
        translator: the NIR -> RGB estimator (``create_estimator("cyclegan-nir-to-rgb", ...)``).
        pair_modality: the ``pair_modality`` parameter (``"nir-rgb-pair"`` mode).
        nir_translator: the RGB -> NIR estimator (``"cyclegan-rgb-to-nir"``) for ``pair_modality`` ``"pseudo-nir"``,
            else None.
        depth_estimator: the monocular estimator (``"nir"`` mode) or None.
        estimator: the stereo estimator (``"nir-rgb-pair"`` mode; the stereo node's).
        counters, problems, last_problem, last_timing: see the base class. Problem kinds: the stereo node's plus
            "translation" (the generator failed) and "scale" (nir mode, no way to metres). Timing steps:
            "convert_in", "translation", "inference", "depth", "build_pseudo_rgb", "build_depth", the stereo
            node's "build_*", "publish", "total".

    Raises:
        ValueError: at start-up, for invalid parameters or a ``depth_model`` that is not a monocular depth model
            (listing the registered ones).
        stereo_depth_ros.models.weights.WeightsError: at start-up, for a missing or wrong weights file (naming it).
    """

    DEFAULT_NODE_NAME = DEFAULT_NODE_NAME
    #: Every input of either mode (what bringup's remap arguments cover); :meth:`setup` sets the instance's
    #: ``INPUT_TOPICS`` to its mode's, the only ones it subscribes and synchronises.
    INPUT_TOPICS = {**NIR_INPUT_TOPICS_WITH_INFO, **PAIR_INPUT_TOPICS}
    #: Outputs of both modes; "nir-rgb-pair" adds the stereo node's other outputs in :meth:`setup`.
    OUTPUT_TOPICS = {PSEUDO_RGB_TOPIC: Image, "depth": Image}
    PARAMETERS = PARAMETERS

    def setup(self) -> None:
        """Build the translation network and, per ``input_mode``, the monocular network or the stereo node's
        estimator and outputs."""
        settings = self.settings
        self.mode = settings["input_mode"]
        self._pseudo_rgb: np.ndarray | None = None
        self._buffers: dict[str, Any] = {}
        self.translator = create_estimator(TRANSLATION_MODEL, weights=settings["translation_weights"] or None,
                                           backend=settings["backend"], device=settings["device"])
        self.pair_modality = settings["pair_modality"]
        self.nir_translator = None
        self.depth_estimator = None
        if self.mode == "nir":
            self.INPUT_TOPICS = NIR_INPUT_TOPICS_WITH_INFO if settings["with_camera_info"] else NIR_INPUT_TOPICS
            self._stage_count = 0  # no disparity stages in this mode
            self.depth_estimator = create_monocular_estimator(
                settings["depth_model"], "depth_model", settings["depth_weights"], device=settings["device"],
                backend=settings["backend"])
            self.metric = bool(getattr(self.depth_estimator, "metric", False))
            described = f"monocular depth {self.depth_estimator.name} ({'metric' if self.metric else 'scale-free'})"
        else:
            self.INPUT_TOPICS = PAIR_INPUT_TOPICS
            if self.pair_modality == "pseudo-nir":
                self.nir_translator = create_estimator(
                    NIR_TRANSLATION_MODEL, weights=settings["nir_translation_weights"] or None,
                    backend=settings["backend"], device=settings["device"])
            super().setup()
            for topic, msg_type in StereoDepthNode.OUTPUT_TOPICS.items():
                self.add_output(topic, msg_type)
            described = f"stereo {self.estimator.name} on the pair in modality {self.pair_modality}"
        self.get_logger().info(f"{self.mode} mode: {TRANSLATION_MODEL} (backend {self.translator.backend}) and "
                               f"{described} ready; inputs {', '.join(self.INPUT_TOPICS)}")

    def default_weights(self) -> str | None:
        """The stereo weights while ``weights`` is empty: the packaged cross-spectral fine-tune
        (:data:`CROSS_SPECTRAL_WEIGHTS`) when it is installed, else the stereo node's default."""
        return str(CROSS_SPECTRAL_WEIGHTS) if CROSS_SPECTRAL_WEIGHTS.is_file() else super().default_weights()

    def prepare(self, height: int, width: int) -> None:
        """Build the backends for this input size on the worker thread: the translation, then the monocular network
        ("nir") or the stereo node's preparation (its estimator and, when wanted, its confidence graph)."""
        self.translator.prepare(height, width)
        if self.nir_translator is not None:
            self.nir_translator.prepare(height, width)
        if self.depth_estimator is not None:
            self.depth_estimator.prepare(height, width)
        else:
            super().prepare(height, width)

    def diagnostic_values(self) -> dict[str, str]:
        """Mode, translation model and backend, and the depth network."""
        values = {"input mode": self.mode, "translation": f"{self.translator.name} ({self.translator.backend})"}
        if self.depth_estimator is not None:
            values["depth"] = f"{self.depth_estimator.name} ({self.depth_estimator.backend})"
        else:
            values["pair modality"] = self.pair_modality
            values.update(super().diagnostic_values())
        return values

    # ------------------------------------------------------------------------------------------------ processing

    def _translation(self, what: str, function, *images: np.ndarray) -> Any:
        """Run one translation step, timed as "translation"; a failure skips the set as problem "translation"."""
        with self.timed("translation"):
            try:
                return function(*images)
            except Exception as error:
                height, width = images[0].shape[:2]
                raise SkipSet("translation", f"{what} failed on a {width} x {height} NIR image: "
                                             f"{type(error).__name__}: {error}") from error

    def translate(self, nir: np.ndarray) -> np.ndarray:
        """Pseudo-RGB (H, W, 3) uint8 BGR of a NIR image ((H, W) uint8 or uint16).

        Raises:
            SkipSet: kind "translation" when the generator fails.
        """
        return self._translation(self.translator.name, lambda image: self.translator.predict(image)["image"], nir)

    def translate_pair(self, nir: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The NIR (left) + RGB (right) pair in the modality ``pair_modality``
        (:func:`~stereo_depth_ros.models.cross_modal.same_modality_pair`): two (H, W, 3) uint8 BGR images.

        Raises:
            SkipSet: kind "translation" when a generator fails.
        """
        return self._translation(f"pair modality {self.pair_modality}", lambda left, right: same_modality_pair(
            left, right, self.pair_modality, self.translator, self.nir_translator), nir, rgb)

    def _pseudo_rgb_message(self, pseudo_bgr: np.ndarray, header: Header) -> Image:
        with self.timed("build_pseudo_rgb"):
            rgb = pseudo_bgr[..., ::-1]
            return conversions.numpy_to_image(rgb, "rgb8", header,
                                              conversions.reusable_buffer(self._buffers, PSEUDO_RGB_TOPIC, rgb.nbytes))

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """One input set -> the wanted outputs (worker thread).

        Raises:
            InputError: for messages the node cannot use (the kind names the problem).
            SkipSet: kinds "translation", "estimator", "scale".
        """
        if self.mode == "nir":
            return self._process_nir(inputs)
        self._pseudo_rgb = None
        stereo_outputs = [t for t in self.output_topics() if t != PSEUDO_RGB_TOPIC]
        if any(self.wanted(topic) for topic in stereo_outputs):
            outgoing = super().process(inputs)  # calls _convert_inputs, which translates the pair
        else:  # only pseudo_rgb is wanted: no stereo network, and no RGB -> NIR translation
            outgoing = []
            with self.timed("convert_in"):
                nir, rgb = self._decode_pair(*inputs)
                self._pseudo_rgb = (self.translate(nir) if self.pair_modality == "pseudo-nir"
                                    else self.translate_pair(nir, rgb)[0])
        if self.wanted(PSEUDO_RGB_TOPIC) and self._pseudo_rgb is not None:
            left_image, left_info = inputs[0], inputs[2]
            header = Header(stamp=left_image.header.stamp,
                            frame_id=left_image.header.frame_id or left_info.header.frame_id)
            outgoing.append((PSEUDO_RGB_TOPIC, self._pseudo_rgb_message(self._pseudo_rgb, header)))
        return outgoing

    def _decode_pair(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                     right_info: CameraInfo) -> tuple[np.ndarray, np.ndarray]:
        """Decode and check a NIR (left) + RGB (right) pair: ``(NIR (H, W) uint8/uint16, RGB (H, W, 3) uint8 BGR)``.

        Raises:
            InputError: "encoding" (NIR not mono8/mono16, RGB not rgb8/bgr8), "image_size" (the views differ),
                "camera_info_size".
        """
        topics = list(PAIR_INPUT_TOPICS)
        nir = nir_to_array(left_image, f"{topics[0]} (NIR)")
        rgb = rgb_to_bgr8(right_image, f"{topics[1]} (RGB)")
        if nir.shape[:2] != rgb.shape[:2]:
            raise InputError("image_size", f"the NIR (left) and RGB (right) images differ in size (fields 'width' x "
                                           f"'height'): {left_image.width} x {left_image.height} vs "
                                           f"{right_image.width} x {right_image.height}")
        conversions.check_camera_info_size(left_info, left_image, "left")
        conversions.check_camera_info_size(right_info, right_image, "right")
        return nir, rgb

    def _convert_inputs(self, left_image: Image, right_image: Image, left_info: CameraInfo,
                        right_info: CameraInfo):
        """The stereo node's input conversion for a NIR (left) + RGB (right) pair: decode and check both
        (:meth:`_decode_pair`), bring them into one modality (:meth:`translate_pair`); returns ``(left BGR, right
        BGR, calibration)`` for the stereo network.

        Raises:
            InputError: see :meth:`_decode_pair`.
        """
        nir, rgb = self._decode_pair(left_image, right_image, left_info, right_info)
        left, right = self.translate_pair(nir, rgb)
        if self.pair_modality != "pseudo-nir":
            self._pseudo_rgb = left
        elif self.wanted(PSEUDO_RGB_TOPIC):
            self._pseudo_rgb = self.translate(nir)
        return left, right, conversions.camera_info_calibration(left_info, right_info)

    def _depth_scale(self) -> float:
        """Metres per monocular model unit: the monocular node's rules without stereo alignment."""
        fixed = fixed_depth_scale(self.settings["depth_scale"], self.metric)
        if fixed is not None:
            return fixed[0]
        raise SkipSet("scale", f"model {self.depth_estimator.name!r} gives depth up to a scale and this node has no "
                               f"stereo depth to align to: set parameter 'depth_scale' (metres per unit)")

    def _process_nir(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        nir_msg = inputs[0]
        info = inputs[1] if len(inputs) > 1 else None
        with self.timed("convert_in"):
            nir = nir_to_array(nir_msg, "image_nir")
            if info is not None:
                conversions.check_camera_info_size(info, nir_msg, "NIR")
        pseudo = self.translate(nir)
        header = Header(stamp=nir_msg.header.stamp,
                        frame_id=nir_msg.header.frame_id or (info.header.frame_id if info is not None else ""))
        outgoing: list[tuple[str, Any]] = []
        if self.wanted(PSEUDO_RGB_TOPIC):
            outgoing.append((PSEUDO_RGB_TOPIC, self._pseudo_rgb_message(pseudo, header)))
        if not self.wanted("depth"):
            return outgoing
        scale = self._depth_scale()
        with self.timed("inference"):
            try:
                relative = self.depth_estimator.predict(pseudo)["depth"]
            except Exception as error:
                raise SkipSet("estimator", f"model {self.depth_estimator.name} failed on a {pseudo.shape[1]} x "
                                           f"{pseudo.shape[0]} pseudo-RGB image: {type(error).__name__}: {error}"
                              ) from error
        with self.timed("depth"):
            depth = apply_depth_limits(relative * np.float32(scale), self.settings["min_depth"],
                                       self.settings["max_depth"])
        with self.timed("build_depth"):
            outgoing.append(("depth", conversions.numpy_to_image(
                depth, "32FC1", header, conversions.reusable_buffer(self._buffers, "depth", depth.nbytes))))
        return outgoing


def main(args: list[str] | None = None) -> int:
    """Console entry point ``cross_modal_node``: run the node until Ctrl-C.

    Returns:
        0 after a clean shutdown, 1 when the node fails to start (the reason is logged).
    """
    return run_node(CrossModalNode, DEFAULT_NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
