"""The accuracy-analysis script behind docs/stereo.md runs on a real pair and its table adds up."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stereo_error_by_disparity.py"


def _load():
    spec = importlib.util.spec_from_file_location("stereo_error_by_disparity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_by_disparity_table_on_the_motorcycle_pair(capsys):
    module = _load()
    assert module.main(["--set", "skimage-motorcycle", "--bins", "0", "40", "80", "400"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[3:-1] == [" stage 0 ", " stage 1 ", " stage 2 ", " stage 3 ", " sgbm "]
    rows = lines[1:]  # the separator row starts with "|-"
    assert [r.split("|")[1].strip() for r in rows] == ["0-40", "40-80", "80-400", "all"]
    shares = [float(r.split("|")[2]) for r in rows[:-1]]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)
    sgbm_epe, sgbm_signed = (float(x) for x in rows[-1].split("|")[-2].split("/"))
    assert 0 < sgbm_epe < 5 and abs(sgbm_signed) <= sgbm_epe  # SGBM is accurate on Motorcycle (EPE ~1 px)


def test_error_by_disparity_rejects_bad_options():
    module = _load()
    with pytest.raises(SystemExit):
        module.main(["--set", "skimage-motorcycle", "--input-scale", "0"])
    with pytest.raises(SystemExit):
        module.main(["--set", "skimage-motorcycle", "--bins", "10", "5"])
