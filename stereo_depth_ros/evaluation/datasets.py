"""Stereo data sets with ground-truth disparity, for evaluation.

Each set is opened by name from :data:`DATASETS` (``open_dataset("bdis-synthetic")``) below a data root (default
``../shared/data`` relative to the repository root), or from a user's folder holding ``left/``, ``right/`` and
``disparity/`` with matching file names. Iterating a :class:`GroundTruthDataset` reads one
:class:`StereoSample` at a time.

Sets and their units (see docs/evaluation.md):

- ``bdis-synthetic`` (and ``bdis-synthetic-30`` .. ``-33``): 78 rendered colon pairs, 640x480, GT depth PNGs
  (:func:`~stereo_depth_ros.evaluation.readers.decode_bdis_depth`: integer part in green, fraction in red; the
  renderer's far limit unknown; renderer unit taken as cm);
  ``K = [[520, 0, 320], [0, 520, 240], [0, 0, 1]]``, baseline 0.5 depth units, so GT disparity ``= 520 * 0.5 / depth``
  and depth errors use f = 520 px, B = 0.005 m. Set 32 is 0-based (``k.png`` <-> ``depth_{k-1:07d}.png``).
- ``middlebury2003-cones``, ``middlebury2003-teddy``: im2 (left), im6 (right), ``disp2.pgm`` / 4; no calibration.
- ``middlebury2014-motorcycle-q``: im0, im1, ``disp0GT.pfm``, non-occluded mask ``mask0nocc.png`` (255), and
  ``calib.txt`` (f in px, baseline in mm, doffs in px: ``Z = f B / (d + doffs)``).
- ``sceneflow-sample``: one FlyingThings3D pair, left disparity PFM; pixels marked occluded (255) in
  ``occlusion/left`` are excluded; no calibration.
- ``skimage-motorcycle``: ``skimage.data.stereo_motorcycle()`` (Middlebury 2014 Motorcycle, 741x500), no calibration
  in the set (so its accuracy rows have no depth errors); :func:`load_skimage_motorcycle` is the package's one loader
  of this pair and :data:`SKIMAGE_MOTORCYCLE_CAMERA` its calibration, used by the demo and the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from stereo_depth_ros.geometry import StereoCameraModel
from stereo_depth_ros.images import IMAGE_SUFFIXES, natural_key, read_image_bgr
from stereo_depth_ros.evaluation.readers import (DISPARITY_SUFFIXES, decode_bdis_depth, read_disparity,
                                                 read_mask, read_middlebury2003_disparity)
from stereo_depth_ros.resources import default_data_root  # noqa: F401 (re-exported: commands import it here)

BDIS_FOCAL_PX = 520.0
BDIS_BASELINE_DEPTH_UNITS = 0.5
BDIS_DEPTH_UNIT_M = 0.01  # the renderer's unit, taken as centimetres
BDIS_SETS = (30, 31, 32, 33)
BDIS_ZERO_BASED_SETS = (32,)
#: The rectified BDIS synthetic cameras: K = [[520, 0, 320], [0, 520, 240], [0, 0, 1]], baseline 0.5 depth units.
BDIS_CAMERA = StereoCameraModel(fx=BDIS_FOCAL_PX, cx=320.0, cy=240.0,
                                baseline_m=BDIS_BASELINE_DEPTH_UNITS * BDIS_DEPTH_UNIT_M)
#: Calibration of scikit-image's Middlebury 2014 Motorcycle pair (741x500, a quarter of the full size), as the
#: docstring of ``skimage.data.stereo_motorcycle`` gives it: focal length 994.978 px, principal point
#: (311.193, 254.877) px, principal point dx 31.086 px (Middlebury's ``doffs = cx_right - cx_left``, so the right
#: camera's cx is 342.279 px), baseline 193.001 mm. Depth is ``Z = f B / (d + doffs)``.
SKIMAGE_MOTORCYCLE_CAMERA = StereoCameraModel(fx=994.978, cx=311.193, cy=254.877, baseline_m=0.193001,
                                              cx_right=311.193 + 31.086)


@dataclass
class StereoSample:
    """One rectified pair with ground truth.

    Attributes:
        name: identifier, e.g. ``"bdis-synthetic-30/1"``.
        left_bgr, right_bgr: (H, W, 3) uint8 BGR.
        gt_disparity: (H, W) float32 left disparity in pixels, NaN where unknown.
        focal_px: focal length in pixels, or None when the set has no calibration.
        baseline_m: baseline in metres, or None.
        valid: optional (H, W) bool of pixels to evaluate (e.g. not occluded), or None for all GT-valid pixels.
        disparity_offset_px: ``doffs`` for depth (``Z = f B / (d + doffs)``), Middlebury 2014 only, else 0.
        camera: the :class:`~stereo_depth_ros.geometry.StereoCameraModel` of the pair, or None. When given and
            ``focal_px`` is None, ``focal_px``, ``baseline_m`` and ``disparity_offset_px`` are taken from it.

    Iterating a sample gives the first seven fields in this order, so
    ``name, left, right, gt, focal_px, baseline_m, valid = sample`` works.
    """

    name: str
    left_bgr: np.ndarray
    right_bgr: np.ndarray
    gt_disparity: np.ndarray
    focal_px: float | None = None
    baseline_m: float | None = None
    valid: np.ndarray | None = None
    disparity_offset_px: float = 0.0
    camera: StereoCameraModel | None = None

    def __post_init__(self) -> None:
        if self.camera is not None and self.focal_px is None:
            self.focal_px, self.baseline_m = self.camera.fx, self.camera.baseline_m
            self.disparity_offset_px = self.camera.disparity_offset_px

    def __iter__(self):
        return iter((self.name, self.left_bgr, self.right_bgr, self.gt_disparity, self.focal_px, self.baseline_m,
                     self.valid))


class GroundTruthDataset:
    """A named, sized sequence of lazily read :class:`StereoSample` objects.

    Args:
        name: set name used in tables.
        readers: one callable per pair that reads and returns its sample.
    """

    def __init__(self, name: str, readers: list[Callable[[], StereoSample]]) -> None:
        self.name = name
        self._readers = readers

    def __len__(self) -> int:
        return len(self._readers)

    def __iter__(self) -> Iterator[StereoSample]:
        for read in self._readers:
            yield read()

    def limit(self, count: int | None) -> "GroundTruthDataset":
        """The first ``count`` pairs (all when None)."""
        return self if count is None else GroundTruthDataset(self.name, self._readers[:max(count, 0)])


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist (set --data-root to the folder holding the "
                                f"project's data)")
    return path


def _bdis_sample(left_path: Path, right_path: Path, depth_path: Path, set_id: int) -> StereoSample:
    left, right = read_image_bgr(left_path), read_image_bgr(right_path)
    depth = decode_bdis_depth(depth_path)
    gt = np.full(depth.shape, np.nan, dtype=np.float32)
    positive = np.isfinite(depth) & (depth > 0)
    gt[positive] = BDIS_FOCAL_PX * BDIS_BASELINE_DEPTH_UNITS / depth[positive]
    return StereoSample(name=f"bdis-synthetic-{set_id}/{left_path.stem}", left_bgr=left, right_bgr=right,
                        gt_disparity=gt, camera=BDIS_CAMERA)


def bdis_synthetic_files(data_root: Path, set_id: int) -> list[tuple[Path, Path, Path]]:
    """The (left image, right image, depth PNG) paths of one BDIS synthetic set, in natural order of the images.

    Image ``k.png`` goes with ``depth_{k:07d}.png``, in set 32 (0-based) with ``depth_{k-1:07d}.png``.

    Raises:
        FileNotFoundError: if the set folder, or the depth file of an image, is missing.
    """
    root = _require_dir(Path(data_root) / "endoscopic_stereo" / "bdis_synthetic", "BDIS synthetic data")
    set_dir = _require_dir(root / str(set_id), f"BDIS synthetic set {set_id}")
    left_dir = _require_dir(set_dir / "images_rectified" / "left", f"BDIS synthetic set {set_id} left images")
    offset = 1 if set_id in BDIS_ZERO_BASED_SETS else 0
    files = []
    for image in sorted((p for p in left_dir.iterdir() if p.suffix == ".png"), key=natural_key):
        if not image.stem.isdigit():
            continue
        depth_path = set_dir / f"depth_{int(image.stem) - offset:07d}.png"
        if not depth_path.is_file():
            raise FileNotFoundError(f"BDIS synthetic image {image} has no depth file {depth_path}")
        files.append((image, set_dir / "images_rectified" / "right" / image.name, depth_path))
    return files


def bdis_synthetic(data_root: Path, sets: tuple[int, ...] = BDIS_SETS) -> GroundTruthDataset:
    """BDIS synthetic sets (rendered colon, 640x480) with GT depth decoded and converted to disparity.

    Raises:
        FileNotFoundError: if a set folder, or the depth file of an image, is missing.
    """
    readers = [lambda paths=paths, i=set_id: _bdis_sample(*paths, i)
               for set_id in sets for paths in bdis_synthetic_files(data_root, set_id)]
    name = "bdis-synthetic" if len(sets) > 1 else f"bdis-synthetic-{sets[0]}"
    return GroundTruthDataset(name, readers)


def middlebury2003(data_root: Path, scene: str) -> GroundTruthDataset:
    """Middlebury 2003 ``cones`` or ``teddy``: im2 = left, im6 = right, GT ``disp2.pgm`` (value / 4, 0 unknown).

    Raises:
        FileNotFoundError: if the scene folder is missing.
    """
    folder = _require_dir(Path(data_root) / "general_stereo" / "middlebury2003" / scene, f"Middlebury 2003 {scene}")

    def read() -> StereoSample:
        gt_path = folder / "disp2.pgm"
        if not gt_path.is_file():
            gt_path = folder / "disp2.png"
        return StereoSample(name=f"middlebury2003-{scene}", left_bgr=read_image_bgr(folder / "im2.png"),
                            right_bgr=read_image_bgr(folder / "im6.png"),
                            gt_disparity=read_middlebury2003_disparity(gt_path))
    return GroundTruthDataset(f"middlebury2003-{scene}", [read])


def read_middlebury2014_calib(path: Path) -> dict[str, float]:
    """Parse a Middlebury 2014 ``calib.txt``: focal length (px), baseline (mm), doffs (px) and the sizes.

    Returns:
        ``{"focal_px", "baseline_mm", "doffs_px", "cx0_px", "cy0_px", "cx1_px", ...}`` with every other
        ``key=value`` number as well (``cx1_px`` is ``cx0_px + doffs`` when ``cam1`` is absent).

    Raises:
        FileNotFoundError: if the file is missing. ValueError: naming it, if ``cam0`` or ``baseline`` is missing.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"Middlebury calibration {path} does not exist")
    values: dict[str, float] = {}
    cameras: dict[str, list[float]] = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key in ("cam0", "cam1"):
            cameras[key] = [float(v) for v in re.split(r"[\s;\[\]]+", value) if v]
        elif key:
            try:
                values[key] = float(value)
            except ValueError:
                continue
    cam0 = cameras.get("cam0")
    if cam0 is None or len(cam0) != 9 or "baseline" not in values:
        raise ValueError(f"Middlebury calibration {path} lacks cam0=[3x3] or baseline=")
    doffs = values.get("doffs", 0.0)
    cam1 = cameras.get("cam1")
    cx1 = cam1[2] if cam1 is not None and len(cam1) == 9 else cam0[2] + doffs
    return dict(values, focal_px=cam0[0], baseline_mm=values["baseline"], doffs_px=doffs, cx0_px=cam0[2],
                cy0_px=cam0[5], cx1_px=cx1)


def middlebury2014_camera(calib: dict[str, float]) -> StereoCameraModel:
    """The stereo camera model of a parsed Middlebury 2014 ``calib.txt`` (:func:`read_middlebury2014_calib`):
    ``fx = cam0[0]``, ``cx = cam0[2]``, ``cy = cam0[5]``, ``cx_right = cam1[2]`` (so ``doffs = cx_right - cx``),
    baseline in metres (the file's millimetres / 1000).
    """
    return StereoCameraModel(fx=calib["focal_px"], cx=calib["cx0_px"], cy=calib["cy0_px"],
                             baseline_m=calib["baseline_mm"] / 1000.0, cx_right=calib["cx1_px"])


def middlebury2014_motorcycle_q(data_root: Path) -> GroundTruthDataset:
    """Middlebury 2014 Motorcycle, quarter size: im0/im1, ``disp0GT.pfm``, non-occluded mask, ``calib.txt``.

    Raises:
        FileNotFoundError: if the folder is missing.
    """
    folder = _require_dir(Path(data_root) / "general_stereo" / "middlebury2014_motorcycle_q",
                          "Middlebury 2014 Motorcycle (quarter size)")

    def read() -> StereoSample:
        calib = read_middlebury2014_calib(folder / "calib.txt")
        mask_path = folder / "mask0nocc.png"
        return StereoSample(name="middlebury2014-motorcycle-q", left_bgr=read_image_bgr(folder / "im0.png"),
                            right_bgr=read_image_bgr(folder / "im1.png"),
                            gt_disparity=read_disparity(folder / "disp0GT.pfm"), focal_px=calib["focal_px"],
                            baseline_m=calib["baseline_mm"] / 1000.0,
                            valid=read_mask(mask_path) if mask_path.is_file() else None,
                            disparity_offset_px=calib["doffs_px"], camera=middlebury2014_camera(calib))
    return GroundTruthDataset("middlebury2014-motorcycle-q", [read])


def sceneflow_sample(data_root: Path) -> GroundTruthDataset:
    """The SceneFlow (FlyingThings3D) sample: ``RGB_cleanpass/{left,right}``, ``disparity/left/*.pfm``, pixels
    marked occluded (255) in ``occlusion/left`` excluded.

    Raises:
        FileNotFoundError: if the folder or a pair's disparity is missing.
    """
    folder = _require_dir(Path(data_root) / "general_stereo" / "sceneflow_sample", "SceneFlow sample")
    left_dir = _require_dir(folder / "RGB_cleanpass" / "left", "SceneFlow sample left images")
    readers = []
    for left_path in sorted((p for p in left_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key):
        def read(left_path: Path = left_path) -> StereoSample:
            stem = left_path.stem
            occlusion = folder / "occlusion" / "left" / f"{stem}.png"
            return StereoSample(name=f"sceneflow-sample/{stem}", left_bgr=read_image_bgr(left_path),
                                right_bgr=read_image_bgr(folder / "RGB_cleanpass" / "right" / left_path.name),
                                gt_disparity=read_disparity(folder / "disparity" / "left" / f"{stem}.pfm"),
                                valid=~read_mask(occlusion) if occlusion.is_file() else None)
        readers.append(read)
    return GroundTruthDataset("sceneflow-sample", readers)


def skimage_motorcycle(data_root: Path | None = None) -> GroundTruthDataset:
    """scikit-image's Middlebury 2014 Motorcycle pair (741x500, RGB converted to BGR, NaN/inf GT = unknown)."""

    def read() -> StereoSample:
        left, right, disparity = load_skimage_motorcycle()
        return StereoSample(name="skimage-motorcycle", left_bgr=left, right_bgr=right, gt_disparity=disparity)
    return GroundTruthDataset("skimage-motorcycle", [read])


def load_skimage_motorcycle(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's real Middlebury 2014 Motorcycle pair (``skimage.data.stereo_motorcycle()``) with its
    ground truth, optionally downscaled: the package's one loader of this pair (tests, demo, benchmarks).

    Its calibration is :data:`SKIMAGE_MOTORCYCLE_CAMERA` (``.scaled(scale)`` for a downscaled pair).

    Args:
        scale: resize factor in (0, 1]; the images are resized with area interpolation to
            ``round(741 * scale) x round(500 * scale)``, the disparity with nearest neighbours (so unknown pixels
            do not bleed into their neighbours) and multiplied by ``scale``.

    Returns:
        ``(left_bgr, right_bgr, disparity)``: (H, W, 3) uint8 BGR images (500x741 at scale 1) and the (H, W)
        float32 left image disparity ``x_l - x_r`` in pixels, NaN where unknown (scikit-image marks unknown pixels
        with NaN and inf).

    Raises:
        ValueError: if ``scale`` is not in (0, 1].
    """
    from skimage import data

    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    left, right, disparity = data.stereo_motorcycle()
    left, right = np.ascontiguousarray(left[..., ::-1]), np.ascontiguousarray(right[..., ::-1])
    disparity = np.asarray(disparity, dtype=np.float32).copy()
    disparity[~np.isfinite(disparity) | (disparity <= 0)] = np.nan
    if scale != 1:
        size = (max(1, round(left.shape[1] * scale)), max(1, round(left.shape[0] * scale)))
        left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
        disparity = cv2.resize(disparity, size, interpolation=cv2.INTER_NEAREST) * np.float32(scale)
    return left, right, disparity.astype(np.float32)


def folder_dataset(folder: str | Path, focal_px: float | None = None, baseline_m: float | None = None
                   ) -> GroundTruthDataset:
    """A user's folder with ``left/``, ``right/`` and ``disparity/`` (GT in any format
    :func:`~stereo_depth_ros.evaluation.readers.read_disparity` reads) with matching file names (stems).

    Args:
        focal_px, baseline_m: optional calibration for depth errors (pixels, metres).

    Raises:
        FileNotFoundError: if a sub-folder is missing, a left image lacks its right image or GT, or there are no
            pairs.
    """
    folder = Path(folder)
    for sub in ("left", "right", "disparity"):
        _require_dir(folder / sub, f"stereo folder {folder} needs left/, right/ and disparity/; {sub}/")
    disparities = {p.stem: p for p in (folder / "disparity").iterdir() if p.suffix.lower() in DISPARITY_SUFFIXES}
    readers = []
    for left_path in sorted((p for p in (folder / "left").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=natural_key):
        right_path = folder / "right" / left_path.name
        if not right_path.is_file():
            raise FileNotFoundError(f"left image {left_path} has no right image {right_path}")
        if left_path.stem not in disparities:
            raise FileNotFoundError(f"left image {left_path} has no ground-truth disparity "
                                    f"{folder / 'disparity' / left_path.stem}.* ({', '.join(DISPARITY_SUFFIXES)})")
        readers.append(lambda lp=left_path, rp=right_path, dp=disparities[left_path.stem]: StereoSample(
            name=f"{folder.name}/{lp.stem}", left_bgr=read_image_bgr(lp), right_bgr=read_image_bgr(rp),
            gt_disparity=read_disparity(dp), focal_px=focal_px, baseline_m=baseline_m))
    if not readers:
        raise FileNotFoundError(f"stereo folder {folder} has no images in left/")
    return GroundTruthDataset(folder.name, readers)


DATASETS: dict[str, Callable[[Path], GroundTruthDataset]] = {
    "bdis-synthetic": bdis_synthetic,
    **{f"bdis-synthetic-{s}": (lambda root, s=s: bdis_synthetic(root, (s,))) for s in BDIS_SETS},
    "middlebury2003-cones": lambda root: middlebury2003(root, "cones"),
    "middlebury2003-teddy": lambda root: middlebury2003(root, "teddy"),
    "middlebury2014-motorcycle-q": middlebury2014_motorcycle_q,
    "sceneflow-sample": sceneflow_sample,
    "skimage-motorcycle": skimage_motorcycle,
}
"""Registry: set name -> loader ``(data_root) -> GroundTruthDataset``."""


def open_dataset(name_or_dir: str | Path, data_root: str | Path | None = None, focal_px: float | None = None,
                 baseline_m: float | None = None) -> GroundTruthDataset:
    """Open a registered set by name, or a user's folder (``left/``, ``right/``, ``disparity/``).

    Args:
        name_or_dir: a key of :data:`DATASETS` or a folder path.
        data_root: root of the registered sets (default :func:`default_data_root`).
        focal_px, baseline_m: calibration for a user's folder (ignored for registered sets, which carry theirs).

    Raises:
        FileNotFoundError: if the set's folder is missing.
        ValueError: for a name that is neither registered nor an existing folder.
    """
    key = str(name_or_dir)
    if key in DATASETS:
        return DATASETS[key](Path(data_root) if data_root is not None else default_data_root())
    if Path(key).is_dir():
        return folder_dataset(key, focal_px, baseline_m)
    raise ValueError(f"{key!r} is neither a known data set ({', '.join(DATASETS)}) nor an existing folder")


def resize_sample(sample: StereoSample, height: int, width: int) -> StereoSample:
    """Resize a sample's images (area) and GT (nearest, disparities scaled by ``width / W``); focal length scaled
    too. Used to keep tests and quick checks small.

    Raises:
        ValueError: for a non-positive size.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {height}x{width}")
    h, w = sample.gt_disparity.shape
    scale = width / w
    gt = cv2.resize(sample.gt_disparity, (width, height), interpolation=cv2.INTER_NEAREST) * scale
    valid = None if sample.valid is None else cv2.resize(sample.valid.astype(np.uint8), (width, height),
                                                          interpolation=cv2.INTER_NEAREST).astype(bool)
    return StereoSample(name=sample.name, left_bgr=cv2.resize(sample.left_bgr, (width, height),
                                                              interpolation=cv2.INTER_AREA),
                        right_bgr=cv2.resize(sample.right_bgr, (width, height), interpolation=cv2.INTER_AREA),
                        gt_disparity=gt.astype(np.float32),
                        focal_px=None if sample.focal_px is None else sample.focal_px * scale,
                        baseline_m=sample.baseline_m, valid=valid,
                        disparity_offset_px=sample.disparity_offset_px * scale,
                        camera=None if sample.camera is None else sample.camera.scaled(scale))
