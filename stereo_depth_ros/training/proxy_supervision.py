"""Training pairs with confident SGBM proxy disparities (issue 15, item 2; ``train-stereo --proxy-weight``).

:class:`ProxyStereoDataset` is the training dataset of ``train-stereo`` plus, per item, the confident SGBM
disparity of the crop's left view (:func:`stereo_depth_ros.evaluation.proxy_validation.confident_sgbm`) as
``proxy`` (pixels of the crop, 0 where not confident) and ``proxy_mask`` (1 = confident). The proxies are computed
once per pair at the pair's full resolution (the resolution the crops are cut from) and cached under
``runs/proxy_cache`` (gitignored) as ``.npz`` files read without pickle.

The crop (zoom, disparity shift) and the view-swapping flip are applied to the proxies exactly as to the images:
the proxy disparities and a column-coordinate channel travel through :func:`data.stereo_folder.random_crop` as extra
image channels, so the crop's horizontal zoom ``s`` and disparity shift ``t`` are read back from the coordinates
(``d' = (d + x_right - x_left) / step``; ``step = 1 / s`` source columns per crop column), and the flip swaps the
left proxy for the mirrored right one, as it swaps the views.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from stereo_depth_ros.data.stereo_folder import ScaredKeyframeDataset, augment_pair, random_crop
from stereo_depth_ros.evaluation.proxy_validation import ConfidentSGBMConfig, confident_sgbm

DEFAULT_CACHE = Path("runs") / "proxy_cache"
_CONFIDENT = 1.0 - 1e-3  # an interpolated proxy counts only if every pixel it was interpolated from was confident


def cached_confident_sgbm(left_path: str | Path, left_bgr: np.ndarray, right_bgr: np.ndarray,
                          config: ConfidentSGBMConfig, cache: str | Path | None = DEFAULT_CACHE
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Confident SGBM disparities of both views of a pair, computed once and cached on disk.

    The cache file name hashes the left image's absolute path, size and modification time and every SGBM setting,
    so a changed image or setting computes anew.

    Args:
        left_path: the left image's file (names the cache entry).
        left_bgr, right_bgr: (H, W, 3) uint8 BGR pair.
        config: the SGBM settings.
        cache: folder of the ``.npz`` files, or None for no cache.

    Returns:
        ``(left, right)``: (H, W) float32 disparities in pixels, NaN where not confident (right: right-image columns).
    """
    path = Path(left_path).resolve()
    file = None
    if cache is not None:
        stat = path.stat() if path.exists() else None
        key = f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}|{config.key()}"
        file = Path(cache) / f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        if file.is_file():
            with np.load(file, allow_pickle=False) as stored:
                if stored["left"].shape == left_bgr.shape[:2]:
                    return stored["left"], stored["right"]
    result = confident_sgbm(left_bgr, right_bgr, config)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_suffix(".tmp.npz")
        np.savez_compressed(temporary, left=result.left, right=result.right)
        temporary.replace(file)
    return result.left, result.right


class ProxyStereoDataset(ScaredKeyframeDataset):
    """:class:`ScaredKeyframeDataset` items plus the confident SGBM disparity of each crop's left view.

    Args:
        roots, crop, augment, samples_per_epoch, seed, scale_range, exclude, shift_range: as
            :class:`~stereo_depth_ros.data.stereo_folder.StereoFolderDataset`.
        sgbm: the confident-SGBM settings (default :class:`ConfidentSGBMConfig`).
        cache: folder of the cached proxies (default ``runs/proxy_cache``), None = no disk cache.

    Items: those of :class:`ScaredKeyframeDataset` plus ``proxy``: (1, h, w) float32 left disparity of the crop in
    pixels (0 where not confident) and ``proxy_mask``: (1, h, w) float32 0/1 (1 = confident and the match
    ``x - d`` lies inside the crop's right view; a proxy from the full image may point outside the crop).
    """

    def __init__(self, roots, crop=None, augment=False, samples_per_epoch=None, seed=0, scale_range=(1.0, 1.0),
                 exclude=None, shift_range=(0, 0), sgbm: ConfidentSGBMConfig | None = None,
                 cache: str | Path | None = DEFAULT_CACHE) -> None:
        self.sgbm = sgbm or ConfidentSGBMConfig()
        self.proxy_cache = cache
        super().__init__(roots, crop=crop, augment=augment, samples_per_epoch=samples_per_epoch, seed=seed,
                         scale_range=scale_range, exclude=exclude, shift_range=shift_range)

    def read_sample(self, index: int) -> dict:
        """The pair of :class:`ScaredKeyframeDataset` plus ``proxy_left``, ``proxy_right``: (H, W) float32, NaN =
        not confident."""
        sample = super().read_sample(index)
        left, right = cached_confident_sgbm(self.pairs[index][0], sample["left"], sample["right"], self.sgbm,
                                            self.proxy_cache)
        return dict(sample, proxy_left=left, proxy_right=right)

    def crop_sample(self, sample: dict, rng: np.random.Generator) -> dict:
        """:func:`random_crop` of the images with the proxies and the column coordinates as extra channels."""
        height, width = sample["left"].shape[:2]
        columns = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width))

        def stack(image: np.ndarray, proxy: np.ndarray) -> np.ndarray:
            known = np.isfinite(proxy)
            return np.dstack([image.astype(np.float32), np.where(known, proxy, 0.0).astype(np.float32),
                              known.astype(np.float32), columns])

        left, right, valid = random_crop(stack(sample["left"], sample["proxy_left"]),
                                         stack(sample["right"], sample["proxy_right"]), sample["valid"], self.crop,
                                         rng, self.scale_range, self.shift_range)
        left_columns, right_columns = left[..., 5], right[..., 5]
        crop_width = left.shape[1]
        step = float((left_columns[:, -1] - left_columns[:, 0]).mean()) / (crop_width - 1) if crop_width > 1 else 1.0
        offset = right_columns - left_columns  # the disparity shift, in source columns

        def proxy(stacked: np.ndarray) -> np.ndarray:
            return np.where(stacked[..., 4] >= _CONFIDENT, (stacked[..., 3] + offset) / step, np.nan
                            ).astype(np.float32)

        def image(stacked: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(stacked[..., :3]), 0, 255).astype(np.uint8)

        return {"left": image(left), "right": image(right), "valid": valid, "proxy_left": proxy(left),
                "proxy_right": proxy(right)}

    def augment_sample(self, sample: dict, rng: np.random.Generator) -> dict:
        """:func:`augment_pair` (colour jitter, view-swapping flip); on a flip the proxies swap with the views."""
        width = sample["left"].shape[1]
        marker = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], sample["valid"].shape)
        extras = np.dstack([sample["valid"], sample["proxy_left"], sample["proxy_right"], marker])
        left, right, extras = augment_pair(sample["left"], sample["right"], extras, rng)
        flipped = width > 1 and extras[0, 0, 3] > extras[0, -1, 3]
        proxy_left, proxy_right = (extras[..., 2], extras[..., 1]) if flipped else (extras[..., 1], extras[..., 2])
        return {"left": left, "right": right, "valid": np.ascontiguousarray(extras[..., 0]),
                "proxy_left": np.ascontiguousarray(proxy_left), "proxy_right": np.ascontiguousarray(proxy_right)}

    def to_item(self, sample: dict, index: int) -> dict:
        """The tensors of :class:`ScaredKeyframeDataset` plus ``proxy`` and ``proxy_mask`` of the left view."""
        proxy = sample.pop("proxy_left")
        sample.pop("proxy_right", None)
        columns = np.arange(proxy.shape[1], dtype=np.float32)[None, :]
        with np.errstate(invalid="ignore"):  # a match outside the crop's right view cannot be learnt from the crop
            known = np.isfinite(proxy) & (columns - proxy >= 0)
        sample["proxy"] = np.where(known, proxy, 0.0).astype(np.float32)
        sample["proxy_mask"] = known.astype(np.float32)
        return super().to_item(sample, index)
