"""The ``slicelearn`` command."""

from __future__ import annotations

import re

import pytest

from slicelearn import __version__
from slicelearn.cli import main


def test_demo_fits_and_reports_held_out_metrics(capsys):
    code = main(["demo", "--n-subjects", "8", "--n-slices", "4", "--max-epochs", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "efficientnet_lite0 (weights=imagenet, frozen)" in out
    match = re.search(r"Held-out R2 = (-?\d+\.\d+), MAE = (\d+\.\d+) slices", out)
    assert match, out
    assert float(match.group(2)) >= 0


def test_demo_takes_other_encoders_and_options(capsys):
    code = main(
        [
            "demo",
            "--n-subjects",
            "6",
            "--n-slices",
            "3",
            "--max-epochs",
            "1",
            "--encoder",
            "cnn2d",
            "--pooling",
            "mean",
            "--position-embedding",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "cnn2d (weights=None" in out and "None position embedding" in out


def test_wrong_usage_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--pooling", "median"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["demo", "--n-subjects", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
