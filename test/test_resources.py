"""The package finds its own files (held-out pair lists, parameters files) whatever the working directory, and no
trainer reads test or evaluation data."""

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


@pytest.mark.parametrize("relative", sorted(resources.EVALUATION_ONLY_FOLDERS))
def test_every_evaluation_only_folder_is_refused_wherever_the_data_lives(relative, tmp_path):
    for folder in (tmp_path / "data" / relative, f"{tmp_path}/data/{relative}/", tmp_path / relative / "left"):
        with pytest.raises(ValueError, match="does not train on") as error:
            resources.check_training_folders(["/somewhere/else/endoscopic_stereo/bdis_invivo/6", folder], "train-x")
        assert relative in str(error.value) and resources.EVALUATION_ONLY_FOLDERS[relative] in str(error.value)


def test_training_folders_pass_and_the_match_is_on_whole_path_components(tmp_path):
    data = tmp_path / "shared" / "data"
    resources.check_training_folders([
        data / "endoscopic_stereo" / "bdis_invivo" / "6", data / "endoscopic_stereo" / "hamlyn_invivo_tpsnet",
        data / "endoscopic_stereo" / "bdis_synthetic" / "30", data / "nir_rgb" / "country",
        data / "segmentation" / "endovis2015_robotic", data / "endoscopic_stereo" / "bdis_synthetic" / "32" / ".." / "31",
        tmp_path / "my_nir_rgb" / "indoor", tmp_path / "indoor", None, ""], "train-x")
    with pytest.raises(ValueError, match="bdis_synthetic is the stereo network's"):
        resources.check_training_folders([data / "endoscopic_stereo" / "bdis_synthetic" / "30"], "train-x",
                                         also={"endoscopic_stereo/bdis_synthetic": "the stereo network's test data"})


def _refuses(call, folder: str):
    with pytest.raises(ValueError, match=f"does not train on .*{folder}"):
        call()


def test_every_trainer_refuses_test_data_before_reading_anything(tmp_path):
    """Each trainer checks its folders first: none of these folders exists, so any other step would fail with
    FileNotFoundError instead, and nothing is written under ``out``."""
    from stereo_depth_ros.training.cross_modal_trainer import TrainCrossModalOptions, train_cross_modal
    from stereo_depth_ros.training.mono_self_supervised import TrainDispNetOptions, train_dispnet
    from stereo_depth_ros.training.mono_supervised import TrainMonoOptions, train_mono
    from stereo_depth_ros.training.segmentation_trainer import TrainSegmentationOptions, train_segmentation
    from stereo_depth_ros.training.sr_trainer import TrainSuperResolutionOptions, train_super_resolution
    from stereo_depth_ros.training.stereo_trainer import TrainStereoOptions, train_stereo

    data, out = tmp_path / "data", tmp_path / "out"
    keyframe = str(data / "endoscopic_stereo" / "scared_keyframe_rectified")
    _refuses(lambda: train_stereo(TrainStereoOptions(data=[keyframe], out=str(out / "s.safetensors"))),
             "scared_keyframe_rectified")
    # every BDIS synthetic set is the stereo network's GT test data; for the DispNet only 32 and 33 are
    synthetic_30 = str(data / "endoscopic_stereo" / "bdis_synthetic" / "30")
    _refuses(lambda: train_stereo(TrainStereoOptions(data=[synthetic_30], out=str(out / "s.safetensors"))),
             "bdis_synthetic")
    TrainDispNetOptions(data=[synthetic_30], out=str(out / "d.safetensors")).check()
    _refuses(lambda: train_dispnet(TrainDispNetOptions(
        data=[synthetic_30, str(data / "endoscopic_stereo" / "bdis_synthetic" / "33")],
        out=str(out / "d.safetensors"))), "bdis_synthetic/33")
    _refuses(lambda: train_super_resolution(TrainSuperResolutionOptions(
        scale=2, out=str(out / "sr.safetensors"), data=[keyframe])), "scared_keyframe_rectified")
    _refuses(lambda: train_cross_modal(TrainCrossModalOptions(out=out / "cyclegan", data=[str(data / "nir_rgb" /
                                                                                              "indoor")])),
             "nir_rgb/indoor")
    _refuses(lambda: train_segmentation(TrainSegmentationOptions(
        data=[str(data / "segmentation" / "endoscapes_seg50")], out=str(out / "seg.safetensors"),
        validation=[str(data / "segmentation" / "dvrk_phantom")])), "dvrk_phantom")
    _refuses(lambda: train_mono(TrainMonoOptions(model="unet", out=out / "u.safetensors", data=[keyframe])),
             "scared_keyframe_rectified")
    assert not out.exists()
    from stereo_depth_ros.commands.cross_modal import evaluate_cross_modal

    # eval-cross-modal fits its linear colour baseline on --train-data: the held-out pairs may not be that
    indoor = data / "nir_rgb" / "indoor"
    _refuses(lambda: evaluate_cross_modal(indoor, indoor), "nir_rgb/indoor")


def test_train_stereo_leaves_out_the_held_out_pairs_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train-stereo", "--data", "pairs", "--out", "w.safetensors"]
    assert Path(_default(argv, "exclude")) == resources.split_file()
    assert _default([*argv, "--exclude", ""], "exclude") == ""
