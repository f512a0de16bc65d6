"""Readers for ground-truth disparity and depth files of public stereo data sets.

Every reader returns a (H, W) float32 array with NaN where the value is unknown (never 0 or a negative number),
following the conventions of :mod:`stereo_depth_ros.geometry` (left disparity in pixels, ``d = x_left - x_right``).

Formats:

- ``.npy``: a (H, W) float array, pixels (NaN, inf and values <= 0 mean unknown).
- ``.pfm``: Portable Float Map (Middlebury 2014, SceneFlow). Rows are stored bottom to top; the sign of the scale
  field gives the byte order (negative = little-endian); its magnitude is not applied (as Middlebury's own reader
  does). OpenCV 5's PFM reader divides the values by that magnitude (Middlebury's ``disp0GT.pfm`` came out 255 times
  too large) and rejects SceneFlow's header, so the format is parsed here with NumPy.
- ``.png`` 16-bit: KITTI convention, disparity = value / 256, 0 = unknown.
- ``.tif``/``.tiff``/``.exr`` single-channel float: pixels.
- Middlebury 2003 8-bit disparity (``disp2.pgm``): value / 4, 0 = unknown (:func:`read_middlebury2003_disparity`).
- BDIS synthetic depth PNG (:func:`decode_bdis_depth`).

Ground-truth depth maps (:func:`read_depth`, metres) and the pairing of ground-truth files with images
(:func:`match_ground_truth`) are here too; ``stereo-depth-ros make-bag`` uses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

DISPARITY_SUFFIXES = (".npy", ".pfm", ".png", ".tif", ".tiff", ".exr")
DEPTH_ENCODINGS = ("auto", "bdis")
DEPTH_SUFFIXES = (".npy", ".pfm", ".png", ".tif", ".tiff", ".exr")
_PFM_HEADER = re.compile(rb"(P[fF])\s+(\d+)\s+(\d+)\s+(\S+)\s")


def read_disparity(path: str | Path) -> np.ndarray:
    """Read a ground-truth (or predicted) disparity map in pixels.

    Args:
        path: ``.npy``, ``.pfm``, 16-bit KITTI-style ``.png`` (value / 256, 0 = unknown) or single-channel float
            ``.tif``/``.tiff``/``.exr`` file.

    Returns:
        (H, W) float32 disparity in pixels, NaN where unknown (NaN, inf and values <= 0 in the file).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, for an unknown suffix, a file that cannot be decoded, an 8-bit PNG (not KITTI
            16-bit; use :func:`read_middlebury2003_disparity` for Middlebury 2003 maps) or a map that is not 2-D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"disparity file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:  # numpy raises several types for corrupt files
            raise ValueError(f"disparity file {path} is not a readable .npy array: {error}") from error
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"disparity file {path} holds {array.dtype} values, expected numbers")
        disparity = array.astype(np.float32)
    elif suffix == ".pfm":
        disparity = read_pfm(path)
    elif suffix == ".png":
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"disparity file {path} could not be decoded as PNG")
        if image.dtype != np.uint16:
            raise ValueError(f"disparity file {path} is a {image.dtype} PNG; a disparity PNG must be 16-bit "
                             f"(KITTI: value / 256). Middlebury 2003 8-bit maps: read_middlebury2003_disparity")
        if image.ndim == 3:
            raise ValueError(f"disparity file {path} has {image.shape[2]} channels, expected one")
        disparity = image.astype(np.float32) / 256.0
    elif suffix in (".tif", ".tiff", ".exr"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"disparity file {path} could not be decoded")
        if image.ndim == 3:
            raise ValueError(f"disparity file {path} has {image.shape[2]} channels, expected one")
        disparity = image.astype(np.float32)
    else:
        raise ValueError(f"disparity file {path} has an unsupported format {suffix!r}; supported: "
                         f"{', '.join(DISPARITY_SUFFIXES)}")
    if disparity.ndim != 2 or disparity.size == 0:
        raise ValueError(f"disparity file {path} holds an array of shape {disparity.shape}, expected (H, W)")
    return _unknown_to_nan(disparity)


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a Portable Float Map as stored on disk, flipped to top-to-bottom rows.

    Returns:
        (H, W) float32 for a grey ``Pf`` file, (H, W, 3) float32 for a colour ``PF`` file; values as stored (no
        unknown-value handling, the scale's magnitude is ignored).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, for a bad header or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PFM file {path} does not exist")
    data = path.read_bytes()
    match = _PFM_HEADER.match(data)
    if match is None:
        raise ValueError(f"{path} is not a PFM file (header must be 'Pf' or 'PF', width, height, scale)")
    kind, width, height, scale_text = match.groups()
    width, height = int(width), int(height)
    try:
        scale = float(scale_text)
    except ValueError as error:
        raise ValueError(f"{path} has an invalid PFM scale {scale_text!r}") from error
    channels = 3 if kind == b"PF" else 1
    count = width * height * channels
    if width == 0 or height == 0 or scale == 0 or len(data) - match.end() < 4 * count:
        raise ValueError(f"PFM file {path} is empty or truncated ({width}x{height}x{channels}, scale {scale})")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=match.end())
    shape = (height, width) if channels == 1 else (height, width, 3)
    return np.flipud(array.reshape(shape)).astype(np.float32)


def write_pfm(path: str | Path, array: np.ndarray) -> None:
    """Write a (H, W) or (H, W, 3) float array as a little-endian PFM (rows bottom to top, scale -1).

    Raises:
        ValueError: if the array is not (H, W) or (H, W, 3).
    """
    array = np.asarray(array, dtype="<f4")
    if array.ndim == 2:
        kind = b"Pf"
    elif array.ndim == 3 and array.shape[2] == 3:
        kind = b"PF"
    else:
        raise ValueError(f"PFM needs an (H, W) or (H, W, 3) array, got shape {array.shape}")
    header = kind + b"\n%d %d\n-1.0\n" % (array.shape[1], array.shape[0])
    Path(path).write_bytes(header + np.ascontiguousarray(np.flipud(array)).tobytes())


def read_middlebury2003_disparity(path: str | Path) -> np.ndarray:
    """Read a Middlebury 2003 ground-truth disparity (``disp2.pgm``/``.png``, 8-bit, disparity = value / 4).

    Source: Scharstein & Szeliski, "High-Accuracy Stereo Depth Maps Using Structured Light", CVPR 2003 (the
    quarter-size cones/teddy maps scale disparities by 4; 0 = unknown).

    Returns:
        (H, W) float32 disparity in pixels, NaN where unknown.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, if it is not a one-channel 8-bit image.
    """
    image = _read_image_unchanged(path, "Middlebury 2003 disparity")
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"Middlebury 2003 disparity {path} must be a one-channel 8-bit image, got {image.dtype} "
                         f"{image.shape}")
    return _unknown_to_nan(image.astype(np.float32) / 4.0)


BDIS_DEPTH_FORMULAS = ("integer-fraction", "main-synthetic", "load-gt-depth")
"""How :func:`decode_bdis_depth` reads a BDIS depth PNG: ours (the default), and the BDIS repository's two MATLAB
formulas, kept so that the comparison in docs/evaluation.md can be rerun (``benchmarks/bdis_depth_decoding.py``)."""

BDIS_FAR_LIMIT_UNITS = 50.0
"""The renderer's far limit in depth units: 6.8 % of the pixels of set 32 and 11.7 % of set 33 lie at exactly 50
units (G = 125, R = 255) and none beyond, all of them dark background (mean grey value 12 and 5 of 255) where no
surface was rendered within range; :func:`decode_bdis_depth` makes them unknown."""


def decode_bdis_depth(png_path: str | Path, formula: str = "integer-fraction") -> np.ndarray:
    """Decode a BDIS synthetic ground-truth depth PNG.

    ``depth = round(100 G / 255) + R / 255`` (formula ``"integer-fraction"``, the default), with G and R the
    8-bit green and red channels, in the renderer's unit, which this package takes as centimetres (depths of
    about 1-28 units fit a colon seen by an endoscope in cm). The files store the depth's integer part ``n`` in green as
    ``round(255 n / 100)`` (MATLAB's conversion of ``n / 100`` in [0, 1] to 8 bits: the green values of the 78
    files are exactly 0, 3, 5, 8, 10, 13, ... = ``round(2.55 n)``) and its fractional part in red as
    ``round(255 f)``; blue is 0 everywhere. Evidence (docs/evaluation.md, "Depth decoding"): across a step of
    green, red wraps from 255 to 0 and this decoding stays continuous (median step 0.012-0.020 units between
    neighbouring pixels across a green step against 0.20 for the MATLAB sum), and the GT disparity reconstructs
    the left image from the right one better on every set. Pixels at the far limit
    (:data:`BDIS_FAR_LIMIT_UNITS`) are unknown.

    The BDIS repository (github.com/JingweiSong/BDIS-v2) decodes ``(B + 1) / 256 + 100 (G + 1) / 256 +
    (R + 1) / 256`` (``matlab/load_GT_depth.m``, formula ``"load-gt-depth"``), and its evaluation script
    ``matlab/Main_synthetic.m`` subtracts 0.5 from that (formula ``"main-synthetic"``, this package's decoding
    until 2026-12-08). Against this decoding the first is off by +0.2 to +0.6 units and the second by -0.3 to
    +0.1 units, an error that jumps at every integer depth.

    Args:
        png_path: ``depth_NNNNNNN.png``.
        formula: one of :data:`BDIS_DEPTH_FORMULAS`.

    Returns:
        (H, W) float32 depth in the renderer's unit (centimetres); NaN where the result is not positive or, for
        ``"integer-fraction"``, at the far limit.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, if it is not an 8-bit three-channel image, or (``"integer-fraction"``) if
            its blue channel is not 0 (not the encoding of BDIS sets 30-33); for an unknown formula.
    """
    if formula not in BDIS_DEPTH_FORMULAS:
        raise ValueError(f"BDIS depth formula must be one of {BDIS_DEPTH_FORMULAS}, got {formula!r}")
    image = _read_image_unchanged(png_path, "BDIS depth")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"BDIS depth {png_path} must be an 8-bit colour PNG, got {image.dtype} {image.shape}")
    blue, green, red = (image[..., i].astype(np.float32) for i in range(3))  # OpenCV order is BGR
    if formula == "integer-fraction":
        if np.any(image[..., 0]):
            raise ValueError(f"BDIS depth {png_path} has a non-zero blue channel: not the encoding of BDIS sets "
                             f"30-33 (integer part in green, fraction in red); formula='load-gt-depth' reads it "
                             f"with the BDIS repository's MATLAB sum")
        depth = np.round(green * 100.0 / 255.0) + red / 255.0
        depth[depth >= BDIS_FAR_LIMIT_UNITS] = np.nan
    else:
        depth = ((blue + 1.0) + 100.0 * (green + 1.0) + (red + 1.0)) / 256.0
        if formula == "main-synthetic":
            depth -= np.float32(0.5)
    depth[depth <= 0] = np.nan
    return depth.astype(np.float32)


def read_mask(path: str | Path, threshold: int = 255) -> np.ndarray:
    """Read a one-channel mask image as bool: True where the value is >= ``threshold``.

    Middlebury 2014 ``mask0nocc.png`` uses 255 = not occluded, 128 = occluded, 0 = unknown.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, if it cannot be decoded.
    """
    image = _read_image_unchanged(path, "mask")
    if image.ndim == 3:
        image = image[..., 0]
    return image >= threshold


def _read_image_unchanged(path: str | Path, what: str) -> np.ndarray:
    from stereo_depth_ros.images import read_image

    return read_image(path, cv2.IMREAD_UNCHANGED, what)


def _unknown_to_nan(disparity: np.ndarray) -> np.ndarray:
    disparity = disparity.astype(np.float32, copy=True)
    disparity[~np.isfinite(disparity) | (disparity <= 0)] = np.nan
    return disparity


def match_ground_truth(images: Sequence[Path], gt_dir: str | Path, suffixes: Sequence[str], what: str
                       ) -> list[Path]:
    """Ground-truth files for the left images: by file stem when every image has a file of the same stem,
    otherwise by position in natural order (which needs as many files as images; this pairs BDIS set 32, whose
    ``depth_0000000.png`` belongs to ``1.png``).

    Args:
        images: the left image paths, in order.
        gt_dir: folder of ground-truth files.
        suffixes: accepted lower-case file suffixes, e.g. :data:`DISPARITY_SUFFIXES`.
        what: what the files are, for error messages ("ground-truth depth").

    Returns:
        one path per image, in the order of ``images``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no file of the suffixes, or neither stems nor counts match.
    """
    from stereo_depth_ros.images import natural_key

    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{what} folder {gt_dir} does not exist")
    files = sorted((p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() in suffixes), key=natural_key)
    if not files:
        raise ValueError(f"{what} folder {gt_dir} holds no {'/'.join(suffixes)} file")
    by_stem = {p.stem: p for p in files}
    if all(image.stem in by_stem for image in images):
        return [by_stem[image.stem] for image in images]
    if len(files) != len(images):
        raise ValueError(f"{what} folder {gt_dir} has {len(files)} files for {len(images)} images and their names "
                         f"do not match the images' (e.g. no {images[0].stem}.*): cannot pair them")
    return files


def read_depth(path: str | Path, depth_scale: float = 1.0, encoding: str = "auto") -> np.ndarray:
    """Read a ground-truth depth map and convert it to metres.

    Args:
        path: ``.npy``, ``.pfm``, float ``.tif``/``.tiff``/``.exr`` or 16-bit ``.png`` (encoding "auto"), or a
            BDIS synthetic colour-coded PNG (encoding "bdis", see :func:`decode_bdis_depth`).
        depth_scale: metres per stored unit (e.g. 0.001 for millimetre PNGs, 0.01 for BDIS centimetres), > 0.
        encoding: "auto" or "bdis".

    Returns:
        (H, W) float32 depth in metres, NaN where unknown (0, negative, NaN or inf in the file).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for a bad scale or encoding, an unsupported suffix, an undecodable file, or a map that is
            not (H, W).
    """
    path = Path(path)
    if not np.isfinite(depth_scale) or depth_scale <= 0:
        raise ValueError(f"depth scale must be a positive number of metres per unit, got {depth_scale}")
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    if not path.is_file():
        raise FileNotFoundError(f"depth file {path} does not exist")
    suffix = path.suffix.lower()
    if encoding == "bdis":
        depth = decode_bdis_depth(path)
    elif suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except Exception as error:  # numpy raises several types for corrupt files
            raise ValueError(f"depth file {path} is not a readable .npy array: {error}") from error
        if not np.issubdtype(depth.dtype, np.number):
            raise ValueError(f"depth file {path} holds {depth.dtype} values, expected numbers")
    elif suffix == ".pfm":
        depth = read_pfm(path)
    elif suffix in (".png", ".tif", ".tiff", ".exr"):
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise ValueError(f"depth file {path} could not be decoded")
        if suffix == ".png" and depth.dtype != np.uint16:
            raise ValueError(f"depth file {path} is a {depth.dtype} PNG; a depth PNG must be 16-bit (value * "
                             f"depth scale = metres), or pass encoding 'bdis' for BDIS colour-coded depth")
    else:
        raise ValueError(f"depth file {path} has an unsupported format {suffix!r}; supported: "
                         f"{', '.join(DEPTH_SUFFIXES)}")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth file {path} holds an array of shape {depth.shape}, expected (H, W)")
    depth = depth.astype(np.float64) * depth_scale
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth.astype(np.float32)
