"""The ``slicelearn`` command: fit, predict, evaluate, demo, and its exit codes."""

from __future__ import annotations

import json
import pickle
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import write_scans

from slicelearn import __version__
from slicelearn.cli import _features, build_parser, main
from slicelearn.model_files import model_info

FAST = [
    "--grid",
    "none",
    "--cache-dir",
    "none",
    "--no-progress",
    "--skull-strip",
    "none",
    "--registration",
    "none",
]
#: Options of --readout network only (others refuse them).
NETWORK_FAST = ["--max-epochs", "2"]


def fast(readout: str | None) -> list[str]:
    """FAST, with the network's short schedule for the network (None: brain age's default)."""
    return [*FAST, *(NETWORK_FAST if readout in ("network", None) else [])]


@pytest.fixture
def cohort(tmp_path):
    paths = write_scans(tmp_path, n=20, shape=(6, 34, 33))
    ages = np.linspace(25, 75, 20)
    table = tmp_path / "cohort.csv"
    pd.DataFrame(
        {"path": [p.split("/")[-1] for p in paths], "age": ages, "sex": ["F", "M"] * 10}
    ).to_csv(table, index=False)
    return table


@pytest.mark.parametrize("readout", ["ridge", "network", None])
def test_fit_predict_and_report(cohort, tmp_path, capsys, readout):
    model = tmp_path / "model.slm"
    report = tmp_path / "report"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, "--report", report]
    chosen = ["--readout", readout] if readout else []  # None: the default for brain age
    assert main([str(a) for a in [*argv, *chosen, *fast(readout)]]) == 0
    out = capsys.readouterr().out
    assert model.is_file() and "Saved the model" in out and "for predicting the training" in out
    assert "{" not in out and "\x1b[" not in out  # a sentence, no JSON, no colour codes
    assert model.stat().st_mode & 0o777 == 0o644  # readable by the group, as other tools write
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 20 and metrics["mae"] >= 0
    assert metrics["baseline"]["mae"] == pytest.approx(
        np.mean(np.abs(np.linspace(25, 75, 20) - 50))
    )
    figures = ["predicted_vs_true.png", "slice_importance.png", "predictions.csv"]
    if readout in ("network", None):
        figures.append("learning_curves.png")
    for name in figures:
        assert (report / name).stat().st_size > 0, name
    importance = np.loadtxt(report / "slice_importance.csv", delimiter=",")
    assert importance.shape == (6,) and importance.sum() == pytest.approx(1.0)

    out = tmp_path / "predictions.csv"
    # Scans read as in training (the data home's cache would hand float16 volumes).
    predict = ["predict", "--model", model, "--data", cohort, "--out", out, "--cache-dir", "none"]
    assert main([str(a) for a in predict]) == 0
    err = capsys.readouterr().err
    if readout in ("network", None):  # the fine-tuned network reads every scan again
        assert re.search(r"^predicting 20/20 \(scans\): \d+ s$", err, re.M), err
    predictions = pd.read_csv(out)
    assert len(predictions) == 20 and np.isfinite(predictions["predicted_age"]).all()
    # The input's target stays beside the prediction, with the error.
    np.testing.assert_allclose(predictions["age"], np.linspace(25, 75, 20))
    np.testing.assert_allclose(
        predictions["error"], predictions["predicted_age"] - predictions["age"], atol=1e-9
    )
    # Rows keep the table's ids (its line numbers here: the table has no participant_id).
    assert predictions["participant_id"].tolist()[:2] == ["line 2", "line 3"]
    # The model file is a safe one (no pickle), and the model read back from it
    # predicts what the fitted model did.
    assert zipfile.is_zipfile(model)
    info = model_info(model)
    assert info["task"] == "regression" and info["metadata"]["target"] == "age"
    kinds = {"ridge": "readout.SliceLinearRegressor", "network": "estimators.SliceCNNRegressor"}
    # The default: the fine-tuned network and the ridge readout, averaged.
    assert info["class"] == f"slicelearn.{kinds.get(readout, 'ensemble.EnsembleRegressor')}"
    assert info["metadata"]["training_scans"]["voxel_mm"] == [[2.0, 2.0]] * 3
    np.testing.assert_allclose(
        predictions["predicted_age"],
        pd.read_csv(report / "predictions.csv")["predicted"],
        rtol=1e-5,
    )


def test_several_readouts_make_one_ensemble_model(cohort, tmp_path, capsys):
    model, report = tmp_path / "model.slm", tmp_path / "report"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, "--report", report]
    assert main([str(a) for a in [*argv, "--readout", "ridge", "voxels", *FAST]]) == 0
    info = model_info(model)
    assert info["class"] == "slicelearn.ensemble.EnsembleRegressor"
    assert info["preprocessing_provenance"] is not None  # the members' preprocessing
    # The slice importance is the ridge member's: the voxel member has no slices.
    assert np.loadtxt(report / "slice_importance.csv", delimiter=",").shape == (6,)
    out = tmp_path / "predictions.csv"
    predict = ["predict", "--model", model, "--data", cohort, "--out", out, "--cache-dir", "none"]
    assert main([str(a) for a in predict]) == 0
    # Voxels are read as trained (no float16 cache): the loaded model predicts the same.
    np.testing.assert_allclose(
        pd.read_csv(out)["predicted_age"],
        pd.read_csv(report / "predictions.csv")["predicted"],
        rtol=1e-9,
    )
    capsys.readouterr()
    report = tmp_path / "voxels"
    cv = ["evaluate", "--data", cohort, "--target", "sex", "--cv", "2", "--report", report]
    assert main([str(a) for a in [*cv, "--readout", "voxels", "--json", *FAST]]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["roc_auc"] <= 1 and "refit_on_all_data" not in metrics
    assert (report / "roc.png").is_file() and not (report / "slice_importance.png").exists()
    stacked = ["--readout", "ridge", "voxels", "--combine", "stack", "--json", *FAST]
    assert main([str(a) for a in [*cv[:-1], tmp_path / "stack", *stacked]]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["roc_auc"] <= 1


def test_evaluate_classification_writes_roc(cohort, tmp_path, capsys):
    report = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(cohort),
                "--target",
                "sex",
                "--cv",
                "2",
                "--report",
                str(report),
                "--json",
                *FAST,  # the default for classes, the voxel logistic regression, trains no network
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    metrics = json.loads(out)  # with --json, stdout is the metrics and nothing else
    assert metrics == json.loads((report / "metrics.json").read_text())
    assert metrics["split"] == "2-fold cross-validation, grouped by subject"
    assert 0 <= metrics["roc_auc"] <= 1 and metrics["baseline"]["roc_auc"] == 0.5
    assert metrics["classes"] == ["F", "M"]
    assert (report / "roc.png").stat().st_size > 0


@pytest.mark.parametrize("readout", ["ridge", "network", "voxels"])
def test_three_class_models_fit_save_predict_and_evaluate(tmp_path, capsys, readout):
    paths = write_scans(tmp_path, n=18, shape=(6, 34, 33))
    diagnosis = ["AD", "CN", "MCI"] * 6
    table = tmp_path / "dx.csv"
    pd.DataFrame({"path": [p.split("/")[-1] for p in paths], "dx": diagnosis}).to_csv(
        table, index=False
    )
    model, report = tmp_path / "dx.slm", tmp_path / "report"
    argv = ["fit", "--data", table, "--target", "dx", "--out", model, "--report", report]
    assert main([str(a) for a in [*argv, "--readout", readout, *fast(readout)]]) == 0
    assert model_info(model)["classes"] == ["AD", "CN", "MCI"]
    out = tmp_path / "predicted.csv"
    # Scans read as in training (the data home's cache would hand float16 volumes).
    predict = ["predict", "--model", model, "--data", table, "--out", out, "--cache-dir", "none"]
    assert main([str(a) for a in predict]) == 0
    predictions = pd.read_csv(out)
    assert set(predictions["predicted_dx"]) <= {"AD", "CN", "MCI"}
    probabilities = predictions[[f"p_{c}" for c in ("AD", "CN", "MCI")]]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The model read back predicts what the fitted model did.
    fitted = pd.read_csv(report / "predictions.csv")
    assert (predictions["predicted_dx"] == fitted["predicted"]).all()
    cv = ["evaluate", "--data", table, "--target", "dx", "--cv", "3", "--report", tmp_path / "cv"]
    assert main([str(a) for a in [*cv, "--readout", readout, *fast(readout)]]) == 0
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert metrics["classes"] == ["AD", "CN", "MCI"] and 0 <= metrics["accuracy"] <= 1


def test_the_epoch_table_has_no_colour_codes_outside_a_terminal(cohort, tmp_path, capsys):
    argv = ["fit", "--data", cohort, "--target", "age", "--out", tmp_path / "m.slm"]
    argv += ["--readout", "network", "--verbose", *fast("network")]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert "train_loss" in out and "\x1b[" not in out  # the table, plain


def test_a_typo_in_a_numeric_target_is_refused_not_taken_for_classes(cohort, tmp_path, capsys):
    table = pd.read_csv(cohort)
    table["age"] = table["age"].astype(object)
    table.loc[3, "age"] = "forty"
    typo = tmp_path / "typo.csv"
    table.to_csv(typo, index=False)
    argv = ["fit", "--data", typo, "--target", "age", "--out", tmp_path / "m.slm", *FAST]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "numeric in 19 of 20 rows" in err and "line 5" in err and "'forty'" in err
    assert "--task classification" in err and not (tmp_path / "m.slm").exists()


def test_demo_fits_the_simulated_cohort_and_reports(capsys, tmp_path):
    report = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--n-subjects",
            "12",
            "--max-epochs",
            "2",
            "--report",
            str(report),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "simulated cohort of 12" in out and "efficientnet_lite0 (weights=imagenet" in out
    match = re.search(r"MAE = (\d+\.\d+) years", out)
    assert match, out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["mae"] == pytest.approx(float(match.group(1)), abs=0.01)
    assert (report / "slice_importance.png").stat().st_size > 0


def _exit_code_and_error(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_wrong_input_exits_with_code_2(cohort, tmp_path, capsys):
    model, table = tmp_path / "m.slm", tmp_path / "p.csv"
    cases = [
        (
            ("fit", "--data", tmp_path / "missing.csv", "--target", "age", "--out", model, *FAST),
            "does not exist",
        ),
        (
            ("fit", "--data", cohort, "--target", "height", "--out", model, *FAST),
            "no target column",
        ),
        (
            ("predict", "--model", tmp_path / "none.slm", "--data", cohort, "--out", table),
            "does not exist",
        ),
        (
            ("predict", "--model", tmp_path / "junk.slm", "--data", cohort, "--out", table),
            "not a slicelearn model",
        ),
        (
            ("predict", "--model", tmp_path / "old.pkl", "--data", cohort, "--out", table),
            "is a pickle",
        ),
        (("demo", "--n-subjects", "3"), "at least 4"),
        (
            ("evaluate", "--data", cohort, "--target", "age", "--cv", "1", *FAST),
            "--cv 1: cross-validation needs at least 2 folds",
        ),
        (
            (
                "fit",
                "--data",
                cohort,
                "--target",
                "age",
                "--out",
                model,
                "--feature-layer",
                "layer9",
                *FAST,
            ),
            "has no feature layer 'layer9'",
        ),
    ]
    (tmp_path / "junk.slm").write_bytes(b"not a model")
    # A model file of the command's earlier versions; never unpickled now.
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"estimator": None}))
    for argv, message in cases:
        code, error = _exit_code_and_error(capsys, *argv)
        assert code == 2 and message in error, (argv, error)
    code, error = _exit_code_and_error(
        capsys, "predict", "--model", tmp_path / "junk.slm", "--data", cohort, "--out", table
    )
    assert error.count("not a slicelearn model file") == 1, error


@pytest.mark.parametrize("grid", ["none", "mni152"])
def test_a_broken_scan_is_named_by_its_table_line_and_participant(tmp_path, capsys, grid):
    paths = write_scans(tmp_path, n=6, shape=(6, 34, 33))
    with open(paths[4], "wb") as handle:
        handle.write(b"\x1f\x8b truncated")
    table = tmp_path / "cohort.csv"
    ids = [f"sub-{i}" for i in range(6)]
    pd.DataFrame({"participant_id": ids, "path": paths, "age": np.arange(6) * 10.0}).to_csv(
        table, index=False
    )
    argv = ["fit", "--data", table, "--target", "age", "--out", tmp_path / "m.slm", *FAST]
    argv += ["--grid", grid]  # the last --grid wins: scans read as they are, or resampled
    code, error = _exit_code_and_error(capsys, *argv)
    assert code == 2 and "line 6 (sub-4)" in error and paths[4] in error, error
    assert "X[" not in error
    for argv in (["demo", "--pooling", "median"], ["demo", "--feature-grid", "0"], []):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


@pytest.mark.parametrize("command", ["fit", "evaluate", "predict", "preprocess", "demo"])
def test_help_shows_defaults_only_where_they_exist(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "(default: None)" not in text and "(default: False)" not in text
    assert text.count("(default: when writing to a terminal)") <= 1
    assert "(default: when writing to a terminal) (default:" not in text
    if command == "demo":
        assert "--readout" not in text  # demo has no such option
    if command in ("fit", "evaluate", "preprocess"):
        assert "~/slicelearn_data/cache when SLICELEARN_DATA is unset" in text
        assert "a bare --registration means affine" in text


def test_readout_network_is_full_fine_tuning_with_its_recipe(cohort, tmp_path):
    from slicelearn.cli import NETWORK_DEFAULTS, _estimator
    from slicelearn.presets import FULL_FINE_TUNING

    base = ["fit", "--data", "x", "--target", "age", "--out", "m", "--readout", "network"]
    for written in ([], ["--no-freeze-encoder"]):  # the default, and said
        estimator = _estimator(build_parser().parse_args([*base, *written]), True, None, 9)
        for name in ("lr", "max_epochs", "batch_size", "train_slices", "crop_to_content"):
            assert getattr(estimator, name) == FULL_FINE_TUNING[name], name
        assert estimator.freeze_encoder is False and estimator.feature_layer is None
        assert estimator.position_embedding == "sinusoidal" and estimator.train_split is None
        assert type(dict(estimator.callbacks)["lr_schedule"]).__name__ == "CosineLRSchedule"
    # Options the user gives win over the recipe; the frozen route keeps its own settings.
    given = [*base, "--lr", "0.01", "--train-slices", "3"]
    estimator = _estimator(build_parser().parse_args(given), True, None, 9)
    assert estimator.lr == 0.01 and estimator.train_slices == 3
    frozen = _estimator(build_parser().parse_args([*base, "--freeze-encoder"]), True, None, 9)
    assert frozen.freeze_encoder is True and frozen.train_slices is None
    assert frozen.lr == NETWORK_DEFAULTS["lr"] and not frozen.crop_to_content
    # And it trains and saves from the command line.
    model = tmp_path / "ft.slm"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, "--readout", "network"]
    tiny = ["--encoder", "cnn2d", "--weights", "none", "--train-slices", "2"]
    assert main([str(a) for a in [*argv, *tiny, *fast("network")]]) == 0
    assert model_info(model)["task"] == "regression"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "options, expected",
    [
        ([], {"feature_layer": "blocks.3", "feature_grid": 2}),
        (["--encoder", "resnet18"], {"feature_layer": None, "feature_grid": 1}),
        (["--feature-layer", "last"], {"feature_layer": None, "feature_grid": 2}),
        (
            ["--feature-layer", "blocks.5", "--feature-grid", "1"],
            {"feature_layer": "blocks.5", "feature_grid": 1},
        ),
        (
            ["--encoder", "resnet18", "--feature-layer", "layer3"],
            {"feature_layer": "layer3", "feature_grid": 1},
        ),
    ],
)
def test_feature_options_default_to_the_recommendation_for_the_encoder(options, expected):
    args = build_parser().parse_args(
        ["fit", "--data", "t.csv", "--target", "age", "--out", "m", *options]
    )
    assert _features(args) == expected


def test_missing_extra_exits_2_in_one_line(cohort, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_deepbet(name, *args, **kwargs):
        if name == "deepbet" or name.startswith("deepbet."):
            raise ImportError("No module named 'deepbet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_deepbet)
    argv = ["fit", "--data", cohort, "--target", "age", "--out", tmp_path / "m.slm"]
    code, error = _exit_code_and_error(capsys, *argv, "--grid", "none", "--registration", "none")
    assert code == 2
    assert error.count("\n") == 1 and "pip install 'slicelearn[skullstrip]'" in error


def test_evaluate_keeps_each_subject_on_one_side_and_compares_with_the_mean(
    tmp_path, capsys, monkeypatch
):
    import slicelearn.cli as cli

    paths = write_scans(tmp_path, n=12, shape=(6, 34, 33))
    subjects = [f"s{i // 2}" for i in range(12)]  # two sessions per subject
    table = tmp_path / "sessions.csv"
    pd.DataFrame({"path": paths, "age": np.linspace(30, 70, 12), "subject": subjects}).to_csv(
        table, index=False
    )
    seen = []
    original = cli._folds

    def recording(*args):
        folds = original(*args)
        seen.extend(folds)
        return folds

    monkeypatch.setattr(cli, "_folds", recording)
    argv = ["evaluate", "--data", table, "--target", "age", "--cv", "3", "--json"]
    argv += ["--readout", "ridge"]  # any model: the folds are the point
    code = main([str(a) for a in [*argv, "--group-column", "subject", *FAST]])
    captured = capsys.readouterr()
    assert code == 0 and len(seen) == 3
    for train, test in seen:
        assert not {subjects[i] for i in train} & {subjects[i] for i in test}
    metrics = json.loads(captured.out)
    assert metrics["subjects"] == 6 and "baseline" in metrics
    # Random noise volumes carry no age: the command says the model learned nothing.
    assert "not better than the baseline" in captured.err


def test_the_readme_sequence_preprocesses_each_scan_once(
    tmp_path, capsys, monkeypatch, count_preprocess
):
    # No --cache-dir anywhere: every command uses the data home's one cache.
    monkeypatch.setenv("SLICELEARN_DATA", str(tmp_path / "home"))
    paths = write_scans(tmp_path, n=8, shape=(40, 48, 40), affine=np.diag([4.0, 4.0, 4.0, 1.0]))
    table = tmp_path / "cohort.csv"
    pd.DataFrame({"path": paths, "age": np.linspace(30, 70, 8)}).to_csv(table, index=False)
    prep = ["--grid", "mni152", "--skull-strip", "none", "--registration", "none"]
    assert (
        main([str(a) for a in ["preprocess", "--data", table, "--out", tmp_path / "prep", *prep]])
        == 0
    )
    assert len(count_preprocess) == 8
    capsys.readouterr()
    model = ["--readout", "ridge", "--encoder", "cnn2d", "--weights", "none", "--no-progress"]
    argv = ["evaluate", "--data", table, "--target", "age", "--cv", "2", *prep, *model]
    assert main([str(a) for a in argv]) == 0
    assert len(count_preprocess) == 8  # evaluate found every scan in the cache
    assert "8 of 8 scans cached" in capsys.readouterr().err
    assert (tmp_path / "home" / "cache").is_dir()
    # preprocess wrote what preprocessed the scans, as a model file records it.
    provenance = json.loads((tmp_path / "prep" / "provenance.json").read_text())
    assert provenance["software"]["nilearn"] and provenance["template"]["name"] == "mni152"
    assert len(provenance["template"]["sha256"]) == 64 and provenance["scans"] == 8
    assert provenance["parameters"]["registration"] is None


def test_model_files_record_provenance_and_predict_warns_when_software_differs(
    cohort, tmp_path, capsys, monkeypatch
):
    import slicelearn.provenance as provenance

    model = tmp_path / "m.slm"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, *FAST]
    # Any model records the same provenance: the ridge readout is the quick one to fit.
    assert main([str(a) for a in [*argv, "--grid", "mni152", "--readout", "ridge"]]) == 0
    info = model_info(model)
    assert {"slicelearn", "torch", "deepbet", "antspyx", "nilearn"} <= set(info["versions"])
    recorded = info["preprocessing_provenance"]
    assert recorded["template"]["name"] == "mni152" and recorded["parameters"]["target"] == "mni152"
    out = tmp_path / "p.csv"
    predict = ["predict", "--model", str(model), "--data", str(cohort), "--out", str(out)]
    capsys.readouterr()
    assert main(predict) == 0
    assert "other software" not in capsys.readouterr().err  # same machine, same software
    real = provenance.software_versions
    monkeypatch.setattr(
        provenance,
        "software_versions",
        lambda packages=provenance.PACKAGES: {**real(packages), "nilearn": "0.0.1"},
    )
    assert main(predict) == 0
    err = capsys.readouterr().err
    assert f"nilearn {info['versions']['nilearn']} there, 0.0.1 here" in err
    # Volumes of another preprocessing recipe (the same parameters computed
    # another way by another slicelearn) are named too.
    import slicelearn.data.preprocessing as preprocessing

    assert recorded["recipe"] == preprocessing.PREPROCESSING_RECIPE
    monkeypatch.setattr(preprocessing, "PREPROCESSING_RECIPE", recorded["recipe"] + 1)
    assert main(predict) == 0
    here = recorded["recipe"] + 1
    assert f"preprocessing recipe {recorded['recipe']} there, {here} here" in (
        capsys.readouterr().err
    )


def test_preprocess_writes_qc_pictures_measures_and_page(tmp_path, capsys):
    import nibabel as nib

    from slicelearn.data import template_image

    # Scans on the template grid: the template itself, and one shifted far off.
    template = template_image("mni152")
    data = np.asarray(template.get_fdata(), dtype=np.float32)
    paths = []
    for index, shift in enumerate([0, 0, 0, 0, 30]):
        path = tmp_path / f"sub-{index}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(np.roll(data, shift, axis=1) + index, template.affine), path)
        paths.append(str(path))
    table = tmp_path / "scans.csv"
    pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(5)], "path": paths}).to_csv(
        table, index=False
    )
    argv = ["preprocess", "--data", table, "--out", tmp_path / "prep", "--qc"]
    code = main([str(a) for a in [*argv, "--skull-strip", "none", "--registration", "none"]])
    assert code == 0
    qc = pd.read_csv(tmp_path / "prep" / "qc" / "qc.csv")
    assert qc["id"].tolist() == [f"sub-{i}" for i in range(5)]
    assert qc["flagged"].tolist() == [False, False, False, False, True]
    assert qc.loc[0, "correlation_template"] > 0.99
    # Without a brain mask there is no brain volume in the scan's own space.
    assert qc["brain_ml_native"].isna().all() and (qc["brain_ml_template_grid"] > 0).all()
    for picture in qc["picture"]:
        assert (tmp_path / "prep" / "qc" / picture).stat().st_size > 0
    page = (tmp_path / "prep" / "qc" / "index.html").read_text()
    assert "5 scans, 1 flagged" in page and page.index("sub-4") < page.index("sub-0")
    assert "1 of 5 scans flagged (sub-4)" in capsys.readouterr().err


def test_predict_warns_about_scans_unlike_the_training_scans(cohort, tmp_path, capsys):
    import nibabel as nib

    model = tmp_path / "model.slm"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, "--readout", "ridge"]
    assert main([str(a) for a in [*argv, *FAST]]) == 0
    odd = tmp_path / "odd_T1w.nii.gz"
    scan = nib.load(pd.read_csv(cohort)["path"].map(lambda p: str(cohort.parent / p))[0])
    nib.save(nib.Nifti1Image(np.asarray(scan.dataobj) * 10, scan.affine), odd)
    table = tmp_path / "new.csv"
    pd.DataFrame({"participant_id": ["odd-01"], "path": [str(odd)]}).to_csv(table, index=False)
    capsys.readouterr()
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--data", str(table), "--out", str(out)]) == 0
    error = capsys.readouterr().err
    assert "odd-01 is far from the training scans: p99" in error and "voxel_mm" not in error


def test_predict_caches_on_this_machine_not_where_the_model_was_trained(tmp_path, monkeypatch):
    paths = write_scans(tmp_path, n=6, shape=(40, 48, 40), affine=np.diag([4.0, 4.0, 4.0, 1.0]))
    table = tmp_path / "cohort.csv"
    pd.DataFrame({"path": paths, "age": np.linspace(30, 70, 6)}).to_csv(table, index=False)
    prep = ["--grid", "mni152", "--skull-strip", "none", "--registration", "none"]
    trained_on = tmp_path / "training_machine_cache"
    model = tmp_path / "m.slm"
    fit = ["fit", "--data", table, "--target", "age", "--out", model, "--no-progress"]
    fit += ["--readout", "ridge"]  # any model: where scans are cached is the point
    assert main([str(a) for a in [*fit, *prep, "--cache-dir", trained_on]]) == 0
    trained_entries = sorted(trained_on.rglob("*.npy"))
    assert len(trained_entries) == 6
    here = tmp_path / "this_machine_cache"
    out = tmp_path / "predicted.csv"
    predict = ["predict", "--model", model, "--data", table, "--out", out, "--cache-dir", here]
    assert main([str(a) for a in predict]) == 0
    assert len(list(here.rglob("*.npy"))) == 6  # preprocessed into the cache given here
    assert sorted(trained_on.rglob("*.npy")) == trained_entries
    # Without the option: the data home's cache.
    monkeypatch.setenv("SLICELEARN_DATA", str(tmp_path / "home"))
    assert main([str(a) for a in predict[:-2]]) == 0
    assert len(list((tmp_path / "home" / "cache").rglob("*.npy"))) == 6
    assert sorted(trained_on.rglob("*.npy")) == trained_entries


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--readout", "voxels", "--encoder", "resnet18"],
            "--encoder applies to --readout ridge or network, and this command trains "
            "--readout voxels",
        ),
        (["--readout", "ridge", "--pool", "attention"], "--pooling applies to"),  # a prefix
        (["--readout", "ridge", "--no-freeze-encoder"], "--no-freeze-encoder applies to"),
        (["--readout", "network", "--input-smoothing=2"], "--input-smoothing applies to"),
        (["--readout", "ridge", "--combine", "stack"], "--combine says how several --readout"),
        (["--readout", "ridge", "--comb=mean"], "--combine says how several --readout models"),
        # Without --readout, the task's default model: known before the table
        # is read when --task says the task.
        (
            ["--task", "classification", "--input-smoothing", "2"],
            "--input-smoothing applies to --readout ridge, and this command trains --readout "
            "voxels (the default for classification)",
        ),
        (
            ["--task", "regression", "--readout", "ridge", "--pooling", "attention"],
            "trains --readout ridge: leave it out",
        ),
        (["--task", "regression", "--feature-grid", "2", "--comb", "stack"], None),
        (
            ["--task", "regression", "--axis", "sagittal", "coronal"],
            "--readout network slices along one --axis, and this command trains --readout "
            "network ridge (the default for regression): give one --axis, or --readout ridge",
        ),
        (
            ["--task", "classification", "--readout", "ridge", "network", "--pool", "max"],
            None,
        ),
        (
            ["--task", "classification", "--encoder", "cnn2d", "--readout", "voxels"],
            "trains --readout voxels: leave it out, or add the readout",
        ),
        (
            ["--task", "classification", "--input-smoothing", "1"],
            "(the default for classification): leave it out, or name the readouts to train",
        ),
        (
            ["--task", "classification", "--lr", "0.1"],
            "--lr applies to --readout network, and this command trains --readout voxels (the "
            "default for classification)",
        ),
        (["--task", "classification", "--readout", "network", "--pooling", "max"], None),
    ],
)
def test_an_option_the_chosen_readout_does_not_read_is_refused(options, message, capsys):
    # Refused before the table is read: the data file need not exist.
    argv = ["fit", "--data", "missing.csv", "--target", "age", "--out", "m.slm", *options]
    code, error = _exit_code_and_error(capsys, *argv)
    assert code == 2, error
    if message is None:  # the options apply to the default model: the next error is the table's
        assert "missing.csv" in error, error
    else:
        assert message in error and "missing.csv" not in error, error


def test_with_task_auto_the_default_model_is_checked_once_the_target_is_read(
    cohort, tmp_path, capsys
):
    # "sex" holds two classes: the default is the voxel logistic regression,
    # which reads no --input-smoothing (its smoothing is its own). The refusal
    # comes before any scan is read or preprocessed.
    argv = ["fit", "--data", cohort, "--target", "sex", "--out", tmp_path / "m.slm"]
    code, error = _exit_code_and_error(capsys, *argv, "--input-smoothing", "2", *FAST)
    assert code == 2 and "(the default for classification)" in error, error
    assert "preprocess" not in error and not (tmp_path / "m.slm").exists()
    # For brain age the default model holds the ridge readout, which smooths its input.
    from slicelearn.cli import UsageError, _check_options_apply

    age = ["fit", "--data", "t.csv", "--target", "age", "--out", "m", "--input-smoothing", "1"]
    _check_options_apply(build_parser().parse_args(age), age, regression=True)  # no error
    with pytest.raises(UsageError, match="the default for classification"):
        _check_options_apply(build_parser().parse_args(age), age, regression=False)


def test_options_of_any_chosen_readout_are_taken(tmp_path):
    from slicelearn.cli import _check_options_apply

    argv = ["evaluate", "--data", "t.csv", "--target", "age", "--readout", "ridge", "network"]
    argv += ["--pooling", "attention", "--input-smoothing", "2", "--combine", "stack"]
    _check_options_apply(build_parser().parse_args(argv), argv)  # no error


def test_the_command_line_defaults_are_the_recommended_preset():
    from slicelearn.cli import DEFAULTS, _estimator, _preprocessing
    from slicelearn.data.cohort import Cohort
    from slicelearn.nn import get_encoder_spec
    from slicelearn.presets import RECOMMENDED_PREPROCESSING, RECOMMENDED_READOUT

    args = build_parser().parse_args(["fit", "--data", "t.csv", "--target", "age", "--out", "m"])
    cohort = Cohort(paths=["a.nii.gz"], y=None, ids=["a"], groups=["a"], masks=None, where=["a"])
    prep = _preprocessing(args, cohort)
    for name, value in RECOMMENDED_PREPROCESSING.items():
        assert getattr(prep, name) == value, name
    # Each task's default model is the preset's, member by member.
    from slicelearn.presets import FULL_FINE_TUNING, RECOMMENDED_MODEL, recommended_model

    for regression, task in ((True, "regression"), (False, "classification")):
        model = _estimator(args, regression, prep, 200)
        preset = recommended_model(task, preprocessing=prep)
        assert type(model) is type(preset), task
        alone = [(RECOMMENDED_MODEL[task][0], model)]  # a default of one model
        members = dict(getattr(model, "estimators", alone))
        assert tuple(members) == RECOMMENDED_MODEL[task]
        if regression:  # the two members' predictions averaged, equal weights
            assert model.combine == preset.combine == "mean"
        for name, member in members.items():
            expected = dict(getattr(preset, "estimators", [(name, preset)]))[name]
            assert type(member) is type(expected)
            params, preset_params = member.get_params(), expected.get_params()
            recipe = {"ridge": RECOMMENDED_READOUT, "network": FULL_FINE_TUNING}.get(name, {})
            for param in [*recipe, "axis", "preprocessing", "random_state", "train_split"]:
                if param in preset_params:
                    assert params[param] == preset_params[param], (task, name, param)
            if name == "ridge":
                for param, value in RECOMMENDED_READOUT.items():
                    assert params[param] == value, param
    assert DEFAULTS["encoder"] == RECOMMENDED_READOUT["encoder"]
    layer_and_grid = (RECOMMENDED_READOUT["feature_layer"], RECOMMENDED_READOUT["feature_grid"])
    assert get_encoder_spec(RECOMMENDED_READOUT["encoder"]).recommended_features == layer_and_grid


def test_a_model_fitted_on_the_3mm_grid_preprocesses_new_scans_onto_it(cohort, tmp_path):
    from slicelearn.model_files import load_model

    model = tmp_path / "m.slm"
    argv = ["fit", "--data", cohort, "--target", "age", "--out", model, "--readout", "voxels"]
    assert main([str(a) for a in [*argv, *FAST, "--grid", "mni152_3mm"]]) == 0
    preprocessing = load_model(model).preprocessing
    assert preprocessing.target == "mni152_3mm"
    assert preprocessing.fit().output_shape_ == (67, 79, 64)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--data", str(cohort), "--out", str(out)]) == 0
    predictions = pd.read_csv(out)
    assert len(predictions) == 20 and np.isfinite(predictions["predicted_age"]).all()
