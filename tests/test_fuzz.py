"""Fuzzed inputs: every call ends in a clear ValueError or TypeError, or a valid result.

Never a crash, a hang, or NaN predictions returned silently.
"""

import numpy as np
import pytest
from conftest import fast_params, write_scans
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from slicelearn import SliceCNNClassifier, SliceCNNRegressor
from slicelearn.data import check_volume_array, load_volumes

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DTYPES = st.sampled_from(
    ["float16", "float32", "float64", "int8", "uint16", "int64", "bool", "complex64"]
)
SPECIAL = st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30, 3e38])


@FUZZ
@given(
    hnp.arrays(
        dtype=DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=5),
        elements=None,
    )
)
def test_volume_arrays_are_checked_or_rejected(array):
    try:
        volumes = check_volume_array(array)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert volumes.ndim == 4 and volumes.dtype == np.float32
    assert np.isfinite(volumes).all() and len(volumes) > 0


@FUZZ
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e6, 1e20, 1e30]),
    special=st.one_of(st.none(), SPECIAL),
    y_special=st.one_of(st.none(), st.sampled_from([np.nan, np.inf, 1e30])),
    seed=st.integers(0, 2**16),
)
def test_fit_and_predict_end_in_a_clear_error_or_finite_predictions(
    shape, scale, special, y_special, seed
):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=shape) * scale).astype(np.float32)
    if special is not None:
        X.flat[rng.integers(X.size)] = special
    y = rng.uniform(20, 80, size=shape[0])
    if y_special is not None:
        y[rng.integers(len(y))] = y_special
    est = SliceCNNRegressor(**fast_params(max_epochs=1, train_split=None, batch_size=2))
    try:
        prediction = est.fit(X, y).predict(X)
    except (ValueError, TypeError, FloatingPointError) as exc:
        assert str(exc)
        event(f"rejected: {type(exc).__name__}")
        return
    event("fitted")
    assert prediction.shape == (shape[0],) and np.isfinite(prediction).all()


@FUZZ
@given(
    labels=st.lists(
        st.one_of(st.sampled_from(["AD", "CN", "MCI"]), st.none(), st.just(np.nan)),
        min_size=1,
        max_size=6,
    )
)
def test_classifier_labels_are_checked(labels):
    X = np.random.default_rng(0).normal(size=(len(labels), 4, 6, 5)).astype(np.float32)
    est = SliceCNNClassifier(**fast_params(max_epochs=1, train_split=None, batch_size=2))
    try:
        proba = est.fit(X, np.array(labels, dtype=object)).predict_proba(X)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


@FUZZ
@given(data=st.data())
def test_corrupted_nifti_files_name_the_file(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("scans")
    (path,) = write_scans(folder, n=1, shape=(6, 7, 5))
    raw = bytearray(open(path, "rb").read())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            position = data.draw(st.integers(0, len(raw) - 1), label="position")
            raw[position] = data.draw(st.integers(0, 255), label="byte")
    with open(path, "wb") as handle:
        handle.write(bytes(raw))
    try:
        volumes = load_volumes([path])
    except (ValueError, TypeError, FileNotFoundError) as exc:
        assert "sub-00_T1w" in str(exc)  # the message names the file
        return
    assert volumes.shape[0] == 1 and np.isfinite(volumes).all()


def test_a_diverging_loss_stops_with_the_epoch_named(small_volumes):
    X, y = small_volumes
    est = SliceCNNRegressor(**fast_params(max_epochs=3, train_split=None, lr=1e30))
    with pytest.raises(FloatingPointError, match=r"in epoch \d+, batch \d+"):
        est.fit(X, y * 1e18)
