"""Command-line sub-commands that build models through the registry and hand them to ``evaluation``.

This is the top layer beside :mod:`stereo_depth_ros.cli` (docs/platform.md): ``evaluation`` never imports
``models``, so the commands that need both live here.
"""
