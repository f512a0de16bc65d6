"""Command-line sub-commands that build models through the registry and hand them to ``evaluation``.

This is the top layer beside :mod:`stereo_depth_ros.cli` (docs/platform.md): ``evaluation`` never imports
``models``, so the commands that need both live here.
"""


def parse_weights_overrides(entries: list[str] | None) -> dict[str, str]:
    """``--weights NAME=PATH`` entries (repeatable) as ``{name: path}``.

    Raises:
        ValueError: for an entry without ``=`` or with an empty name or path.

    Example:
        >>> parse_weights_overrides(["unet=run/unet.safetensors"])
        {'unet': 'run/unet.safetensors'}
    """
    weights = {}
    for entry in entries or []:
        name, separator, path = entry.partition("=")
        if not separator or not name or not path:
            raise ValueError(f"--weights takes NAME=PATH, got {entry!r}")
        weights[name] = path
    return weights
