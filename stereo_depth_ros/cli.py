"""The ``stereo-depth-ros`` command: training, evaluation, benchmarks, bags, replay and the demo.

Each group of sub-commands registers itself through an ``add_commands(sub)`` function: training and ROS commands
beside the code they drive, evaluation and benchmark commands (which build models through the registry) in the top
layer :mod:`stereo_depth_ros.commands`. This module only assembles them, so ``stereo-depth-ros --help`` lists
everything.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "stereo_depth_ros.training.commands",
    "stereo_depth_ros.commands.evaluation",
    "stereo_depth_ros.commands.stereo_proxy",
    "stereo_depth_ros.commands.confidence",
    "stereo_depth_ros.commands.mono",
    "stereo_depth_ros.commands.segmentation",
    "stereo_depth_ros.commands.sr",
    "stereo_depth_ros.commands.cross_modal",
    "stereo_depth_ros.ros.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="stereo-depth-ros",
                                     description="Stereo depth for endoscopes and robot cameras: training, evaluation, "
                                                 "benchmarks, bags, ROS 2 replay and the demo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 success, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"stereo-depth-ros {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
