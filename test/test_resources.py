"""The package finds its own files (held-out pair lists, parameters files) whatever the working directory."""

import runpy
import sys
from pathlib import Path

import pytest

from stereo_depth_ros import resources
from stereo_depth_ros.cli import build_parser
from stereo_depth_ros.data.folder_dataset import read_pair_list

REPO = Path(__file__).resolve().parents[1]


def _default(argv: list[str], dest: str):
    return getattr(build_parser().parse_args(argv), dest)


def test_every_command_excludes_the_same_held_out_pairs_from_any_working_directory(tmp_path, monkeypatch):
    # A default relative to the working directory would point nowhere here (train-mono's did until 2026-12-07).
    monkeypatch.chdir(tmp_path)
    held_out = resources.split_file()
    assert held_out.is_absolute() and held_out.is_file()
    assert len(read_pair_list(held_out)) == 14
    defaults = {
        "train-mono --exclude": _default(["train-mono", "--model", "unet", "--out", "w.safetensors"], "exclude"),
        "train-sr --exclude": _default(["train-sr", "--scale", "2", "--out", "w.safetensors"], "exclude"),
        "eval-stereo-proxy --pair-list": _default(["eval-stereo-proxy"], "pair_list"),
        "eval-sr-dataset --pairs": _default(["eval-sr-dataset", "--scale", "2"], "pairs"),
    }
    for option, value in defaults.items():
        assert Path(value) == held_out, option
    data_root = Path(_default(["train-mono", "--model", "unet", "--out", "w.safetensors"], "data_root"))
    assert data_root == resources.default_data_root() / "endoscopic_stereo"
    assert data_root.is_absolute()


def test_share_file_falls_back_to_the_pip_prefix_and_names_every_place_it_looked(tmp_path, monkeypatch):
    source_tree, prefix = tmp_path / "source", tmp_path / "prefix"
    source_tree.mkdir()
    monkeypatch.setattr(resources, "package_root", lambda: source_tree)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="config/splits/bdis_invivo_test.txt"):
        resources.share_file("config/splits", resources.HELD_OUT_PAIR_LIST)
    # split_file never raises (it is a command-line default): the source-tree path, whose reading then fails
    assert resources.split_file() == source_tree / "config" / "splits" / resources.HELD_OUT_PAIR_LIST
    installed = prefix / "share" / "stereo_depth_ros" / "config" / "splits" / resources.HELD_OUT_PAIR_LIST
    installed.parent.mkdir(parents=True)
    installed.write_text("bdis_invivo/6/images_rectified/left/201.png\n")
    assert resources.split_file() == installed


def test_setup_installs_every_pair_list_and_parameters_file(monkeypatch):
    captured = {}
    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    installed = {(Path(folder) / Path(f).name).as_posix() for folder, files in captured["data_files"] for f in files}
    for path in sorted((REPO / "config").rglob("*")):
        if path.is_file():
            relative = path.relative_to(REPO).as_posix()
            assert f"share/stereo_depth_ros/{relative}" in installed, relative
