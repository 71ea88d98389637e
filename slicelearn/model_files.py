"""Safe model files: a fitted estimator as JSON plus safetensors weights, no pickle.

A pickle runs whatever code its author put in it when it is loaded. A
slicelearn model file (``.slm``) is a zip archive holding only data:

- ``config.json``: the estimator's class, its parameters, its fitted
  attributes (slice count, volume shape, target mean or classes, the
  preprocessing recipe), its training history, and the versions of
  slicelearn, torch, skorch, scikit-learn and numpy it was saved with;
- ``weights.safetensors``: the network's tensors, or a linear readout's
  fitted arrays (the safetensors format stores tensors and nothing else).

An ensemble (:class:`~slicelearn.ensemble.EnsembleRegressor`) is stored as
its combination weights plus each member described as above, its tensors
under ``members.<i>.``.

Parameters are stored as JSON values. Classes and functions (``optimizer=``,
``criterion=``) are stored by import name and loaded only from an allow-list
(torch optimisers, losses and data loaders, skorch's datasets, slicelearn's
own classes), or from the names a user passes in ``trusted``. Objects are
stored through their constructor arguments, for allow-listed classes only
(``ValidSplit``, ``VolumePreprocessor``, ``VolumeAugmenter``,
``CosineLRSchedule``). An encoder given as a module class
is stored by name like an optimiser. Anything else, such as an encoder given
as an ``nn.Module`` instance or custom callbacks, cannot be saved this way:
``save_model`` says so, and pickle (with its warning) remains available.
Plain ``metadata`` (the ``slicelearn`` command stores the target's name) is
kept alongside and read back by :func:`model_info`.

The file is written to a temporary name and renamed into place, so a crash
never leaves a complete-looking half-written file. The network's optimiser
state is not stored: a loaded model predicts, and ``partial_fit`` starts a
new optimiser.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._files import write_atomic

__all__ = ["FORMAT_VERSION", "UntrustedTypeError", "load_model", "model_info", "save_model"]

#: Version of the file layout; a file with a higher one needs a newer slicelearn.
FORMAT_VERSION = 1
_FORMAT = "slicelearn-model"

# Classes and functions that load without being trusted, by import-name prefix.
_SAFE_PREFIXES = (
    "torch.optim.",
    "torch.nn.modules.loss.",
    "torch.utils.data.",
    "skorch.dataset.",
    "slicelearn.",
)
# Objects rebuilt from their constructor arguments.
_SAFE_OBJECTS = (
    "skorch.dataset.ValidSplit",
    "slicelearn.data.preprocessing.VolumePreprocessor",
    "slicelearn.data.augment.VolumeAugmenter",
    "slicelearn.callbacks.CosineLRSchedule",
    "slicelearn.tissue.TissueFeatures",
)
_NETWORKS = (
    "slicelearn.estimators.SliceCNNRegressor",
    "slicelearn.estimators.SliceCNNClassifier",
)
# Linear readouts: their fitted arrays go in the tensor file; a slice readout's
# frozen encoder is rebuilt from its (ImageNet) weights and checked by digest.
_READOUT_ARRAYS = {
    "slicelearn.readout.SliceLinearRegressor": (
        "feature_mean_",
        "feature_scale_",
        "coef_",
        "intercept_",
        "slice_feature_mean_",
    ),
    "slicelearn.voxels.VoxelLinearRegressor": (
        "feature_mean_",
        "coef_",
        "intercept_",
        "voxel_mask_",
    ),
}
# Readouts of one standardised feature row per volume (brain encoder, tissue).
for _name in (
    "slicelearn.brain_encoder.BrainEncoderRegressor",
    "slicelearn.brain_encoder.BrainEncoderClassifier",
    "slicelearn.tissue.TissueRegressor",
    "slicelearn.tissue.TissueClassifier",
):
    _READOUT_ARRAYS[_name] = ("feature_mean_", "feature_scale_", "coef_", "intercept_")
_READOUT_ARRAYS["slicelearn.readout.SliceLinearClassifier"] = _READOUT_ARRAYS[
    "slicelearn.readout.SliceLinearRegressor"
]
_READOUT_ARRAYS["slicelearn.voxels.VoxelLinearClassifier"] = _READOUT_ARRAYS[
    "slicelearn.voxels.VoxelLinearRegressor"
]
_READOUTS = tuple(_READOUT_ARRAYS)
_READOUT_VALUES = (
    "volume_shape_",
    "encoder_digest_",
    "n_features_",
    "n_covariates_",
    "alpha_",
    "C_",
)
# Ensembles: their members are stored one by one, each like a model of its own.
_ENSEMBLES = (
    "slicelearn.ensemble.EnsembleRegressor",
    "slicelearn.ensemble.EnsembleClassifier",
)
_ENSEMBLE_ARRAYS = ("weights_", "intercept_", "stacker_coef_", "stacker_intercept_")
_ESTIMATORS = _NETWORKS + _READOUTS + _ENSEMBLES
# Fitted attributes stored in config.json (the network is in the weights).
_FITTED = (
    "n_slices_",
    "volume_shape_",
    "slice_range_",
    "content_box_",
    "n_outputs_",
    "target_ndim_",
    "target_mean_",
    "target_scale_",
)


class UntrustedTypeError(TypeError):
    """A model file names a class or function that is not trusted for loading."""


def _name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _encode(value: Any, where: str) -> Any:
    """A JSON value for ``value``, or TypeError naming the parameter."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if inspect.isclass(value) or inspect.isfunction(value):
        return {"__type__": _name(value)}
    if _name(type(value)) in _SAFE_OBJECTS:
        signature = inspect.signature(type(value).__init__)
        arguments = {
            name: _encode(getattr(value, name), f"{where}.{name}")
            for name in signature.parameters
            if name != "self"
        }
        return {"__object__": _name(type(value)), "arguments": arguments}
    raise TypeError(
        f"{where} = {value!r} ({type(value).__name__}) cannot be stored in a safe model "
        "file: only plain values, classes and functions by name, and slicelearn's own "
        "objects can. Give it by name (e.g. encoder='resnet18'), or save with pickle "
        "(see the 'Saving models' guide; load pickles only from sources you trust)."
    )


def _resolve(name: str, trusted: frozenset[str]) -> Any:
    if not (name.startswith(_SAFE_PREFIXES) or name in trusted):
        raise UntrustedTypeError(
            f"The model file names {name!r}, which is not on slicelearn's list of safe "
            f"types. If you trust this file, load it with trusted=[{name!r}]."
        )
    module_name, _, attribute = name.rpartition(".")
    while module_name:
        try:
            target: Any = importlib.import_module(module_name)
            break
        except ModuleNotFoundError:
            module_name, _, parent = module_name.rpartition(".")
            attribute = f"{parent}.{attribute}"
    else:
        raise UntrustedTypeError(f"Cannot import {name!r}.")
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _decode(value: Any, trusted: frozenset[str]) -> Any:
    if isinstance(value, list):
        return [_decode(v, trusted) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(_decode(v, trusted) for v in value["__tuple__"])
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if "__dict__" in value:
        return {k: _decode(v, trusted) for k, v in value["__dict__"].items()}
    if "__type__" in value:
        return _resolve(value["__type__"], trusted)
    if "__object__" in value:
        if value["__object__"] not in _SAFE_OBJECTS and value["__object__"] not in trusted:
            raise UntrustedTypeError(
                f"The model file builds a {value['__object__']!r} object, which is not on "
                "slicelearn's list of safe types; pass trusted=[...] to allow it."
            )
        cls = _resolve(value["__object__"], trusted | {value["__object__"]})
        return cls(**{k: _decode(v, trusted) for k, v in value["arguments"].items()})
    raise ValueError(f"Unknown value in the model file: {value!r}")


def _versions() -> dict[str, str]:
    from .provenance import software_versions

    return software_versions()


def save_model(
    estimator: Any, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a fitted slice estimator (network or linear readout) to ``path``.

    Parameters
    ----------
    estimator : fitted slicelearn estimator
        A slice network (``SliceCNN*``), a linear readout (``SliceLinear*``,
        ``VoxelLinear*``) or an ensemble of them (``Ensemble*``).
    path : path
        The file to write (``.slm`` by convention), atomically.
    metadata : dict, optional
        Plain values to keep with the model, such as the name of the target
        (the ``slicelearn`` command stores ``{"target": ...}``); read back by
        :func:`model_info`.

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        A parameter cannot be stored safely (it names the parameter).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.model_files import load_model, save_model
    >>> X = np.random.default_rng(0).normal(size=(6, 8, 32, 32)).astype(np.float32)
    >>> est = SliceCNNRegressor(encoder="cnn2d", weights=None, max_epochs=1,
    ...                         train_split=None, verbose=0).fit(X, np.arange(6.0))
    >>> path = save_model(est, os.path.join(tempfile.mkdtemp(), "age.slm"))
    >>> bool(np.allclose(load_model(path).predict(X), est.predict(X)))
    True
    """
    from safetensors.torch import save as save_tensors

    part, state = _pack(estimator, "")
    config = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        **part,
        "versions": _versions(),
        "metadata": _encode(dict(metadata or {}), "metadata"),
    }

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("config.json", json.dumps(config, indent=1))
            archive.writestr("weights.safetensors", save_tensors(state))

    return write_atomic(path, write)


def _is_fitted(estimator: Any, class_name: str) -> bool:
    if class_name in _READOUTS:
        return hasattr(estimator, "coef_")
    if class_name in _ENSEMBLES:
        return hasattr(estimator, "estimators_")
    return getattr(estimator, "initialized_", False) and hasattr(estimator, "n_slices_")


def _arrays(estimator: Any, names: tuple[str, ...], prefix: str) -> dict[str, torch.Tensor]:
    # Fitted arrays may be views (a multi-class coef_ is one); safetensors
    # stores contiguous memory only.
    return {
        prefix + name: torch.from_numpy(
            np.ascontiguousarray(getattr(estimator, name), dtype=np.float64)
        )
        for name in names
        if hasattr(estimator, name)
    }


def _pack(
    estimator: Any, prefix: str, member: str = ""
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json``'s part for one estimator, and its tensors under ``prefix``."""
    class_name = _name(type(estimator))
    where = f" (the ensemble's member {member!r})" if member else ""
    if class_name not in _ESTIMATORS:
        raise TypeError(f"save_model stores slicelearn's estimators, not {class_name}{where}.")
    if not _is_fitted(estimator, class_name):
        raise ValueError(f"{type(estimator).__name__}{where} is not fitted yet: call fit first.")
    ensemble = class_name in _ENSEMBLES
    params = {
        name: _encode(value, name)
        for name, value in estimator.get_params(deep=False).items()
        if not name.startswith("_") and not (ensemble and name == "estimators")
    }
    fitted_names = () if ensemble else _READOUT_VALUES if class_name in _READOUTS else _FITTED
    fitted = {
        name: _encode(getattr(estimator, name), name)
        for name in fitted_names
        if hasattr(estimator, name)
    }
    if hasattr(estimator, "label_encoder_"):
        fitted["classes_"] = _encode(estimator.label_encoder_.classes_, "classes_")
    preprocessor = getattr(estimator, "preprocessor_", None)
    if preprocessor is not None:
        fitted["preprocessor_"] = _encode(preprocessor, "preprocessor_")
        fitted["preprocessor_output_shape_"] = _encode(
            preprocessor.output_shape_, "preprocessor_.output_shape_"
        )
    provenance = None
    if preprocessor is not None:
        from .provenance import preprocessing_provenance

        provenance = preprocessing_provenance(preprocessor)
    part: dict[str, Any] = {
        "class": class_name,
        "params": params,
        "fitted": fitted,
        "history": [],
        "preprocessing_provenance": provenance,
    }
    if ensemble:
        part["members"] = []
        state = _arrays(estimator, _ENSEMBLE_ARRAYS, prefix)
        for index, ((name, _), member) in enumerate(
            zip(estimator.estimators, estimator.estimators_)
        ):
            member_part, member_state = _pack(member, f"{prefix}members.{index}.", name)
            part["members"].append({"name": name, **member_part})
            state.update(member_state)
        # What a user of the file needs to know is what preprocessed the scans.
        part["preprocessing_provenance"] = next(
            (
                m["preprocessing_provenance"]
                for m in part["members"]
                if m["preprocessing_provenance"]
            ),
            None,
        )
    elif class_name in _READOUTS:
        state = _arrays(estimator, _READOUT_ARRAYS[class_name], prefix)
    else:
        part["history"] = _encode(list(estimator.history), "history")
        state = {
            prefix + name: tensor.detach().cpu().contiguous().clone()
            for name, tensor in estimator.module_.state_dict().items()
        }
    return part, state


def _read_config(path: Path) -> dict[str, Any]:
    """The checked ``config.json`` of a model file: ValueError for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            archive.getinfo("weights.safetensors")
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ValueError(f"{path} is not a slicelearn model file ({exc}).") from exc
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a slicelearn model file.")
    if config.get("format_version", 0) > FORMAT_VERSION:
        saved = config.get("versions", {}).get("slicelearn", "unknown")
        raise ValueError(
            f"{path} was saved by slicelearn {saved} in model-file format "
            f"{config['format_version']}; slicelearn {_versions()['slicelearn']} reads "
            f"format {FORMAT_VERSION} and older. Upgrade slicelearn to load it."
        )
    if config.get("class") not in _ESTIMATORS:
        raise ValueError(f"{path} holds a {config.get('class')!r}, not a slicelearn estimator.")
    return config


def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a model file holds, read without building the model.

    Returns
    -------
    dict
        ``"class"`` (the estimator's import name), ``"task"``
        (``"regression"`` or ``"classification"``), ``"classes"`` (a
        classifier's labels, else ``None``), ``"versions"`` (of the libraries
        that saved it), ``"preprocessing_provenance"`` (the software, template
        and parameters that preprocessed the training scans, see
        :func:`slicelearn.provenance.preprocessing_provenance`; ``None``
        without preprocessing) and ``"metadata"`` (as given to :func:`save_model`).

    Raises
    ------
    ValueError
        The file is not a slicelearn model file, or is in a newer format.
    """
    config = _read_config(Path(path))
    regression = config["class"].endswith("Regressor")
    classes = config.get("fitted", {}).get("classes_")
    return {
        "class": config["class"],
        "task": "regression" if regression else "classification",
        "classes": None if classes is None else _decode(classes, frozenset()).tolist(),
        "versions": dict(config.get("versions", {})),
        "preprocessing_provenance": config.get("preprocessing_provenance"),
        "metadata": _decode(config.get("metadata", {"__dict__": {}}), frozenset()),
    }


def load_model(path: str | os.PathLike, trusted: list[str] | tuple[str, ...] = ()) -> Any:
    """Load a model file written by :func:`save_model`, without running code from it.

    Parameters
    ----------
    path : path
    trusted : list of str, default=()
        Import names of classes or functions beyond slicelearn's safe list
        that the file may name (e.g. a custom optimiser); the error for an
        untrusted name says which.

    Returns
    -------
    estimator
        The fitted slicelearn estimator that was saved, ready to predict.

    Raises
    ------
    UntrustedTypeError
        The file names a type that is neither on the safe list nor trusted.
    ValueError
        The file is not a slicelearn model file, is damaged, or was written
        by a newer slicelearn (the message names both versions).
    """
    from safetensors.torch import load as load_tensors

    path = Path(path)
    config = _read_config(path)
    with zipfile.ZipFile(path) as archive:
        weights = archive.read("weights.safetensors")
    try:
        tensors = load_tensors(weights)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path} is damaged: its weights do not load ({exc}).") from exc
    saved = config.get("versions", {}).get("slicelearn", "unknown")
    return _unpack(config, tensors, "", frozenset(trusted), path, saved)


def _unpack(
    part: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    prefix: str,
    trusted: frozenset[str],
    path: Path,
    saved: str,
) -> Any:
    """The fitted estimator that :func:`_pack` described as ``part``."""
    class_name = part["class"]
    if class_name not in _ESTIMATORS:
        raise ValueError(f"{path} holds a {class_name!r}, not a slicelearn estimator.")
    cls = _resolve(class_name, trusted)
    params = {k: _decode(v, trusted) for k, v in part["params"].items()}
    if class_name in _ENSEMBLES:
        members = [
            (
                member["name"],
                _unpack(member, tensors, f"{prefix}members.{i}.", trusted, path, saved),
            )
            for i, member in enumerate(part.get("members", []))
        ]
        from sklearn.base import clone

        estimator = cls([(name, clone(member)) for name, member in members], **params)
        estimator.estimators_ = [member for _, member in members]
        estimator.named_estimators_ = dict(members)
    else:
        estimator = cls(**params)
    fitted = {k: _decode(v, trusted) for k, v in part["fitted"].items()}
    classes = fitted.pop("classes_", None)
    if classes is not None:
        from sklearn.preprocessing import LabelEncoder

        estimator.label_encoder_ = LabelEncoder()
        estimator.label_encoder_.classes_ = np.asarray(classes)
    preprocessor = fitted.pop("preprocessor_", None)
    output_shape = fitted.pop("preprocessor_output_shape_", None)
    for name, value in fitted.items():
        setattr(estimator, name, value)
    if class_name in _ENSEMBLES:
        _set_arrays(estimator, _ENSEMBLE_ARRAYS, tensors, prefix, required=False)
        if "intercept_" in vars(estimator) and np.ndim(estimator.intercept_) == 0:
            estimator.intercept_ = float(estimator.intercept_)
        return estimator
    if preprocessor is not None:
        preprocessor.fit(None)
        preprocessor.output_shape_ = output_shape
    estimator.preprocessor_ = preprocessor
    if class_name in _READOUTS:
        _set_arrays(estimator, _READOUT_ARRAYS[class_name], tensors, prefix, path=path)
        if "voxel_mask_" in vars(estimator):
            estimator.voxel_mask_ = estimator.voxel_mask_.astype(bool)
        if "volume_shape_" in fitted:
            estimator.volume_shape_ = tuple(estimator.volume_shape_)
        return estimator
    # The stored tensors replace every weight: build the network without
    # fetching pretrained ones (which may be unreachable where it is loaded).
    requested_weights = estimator.weights
    estimator.weights = None
    try:
        estimator.initialize()
    finally:
        estimator.weights = requested_weights
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        estimator.module_.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{path} was saved by slicelearn {saved}; its weights do not fit the network "
            f"that slicelearn {_versions()['slicelearn']} builds from its parameters: {exc}"
        ) from exc
    estimator.module_.eval()
    from skorch.history import History

    estimator.history = History(_decode(part.get("history", []), trusted))
    return estimator


def _set_arrays(
    estimator: Any,
    names: tuple[str, ...],
    tensors: dict[str, torch.Tensor],
    prefix: str,
    required: bool = True,
    path: Path | None = None,
) -> None:
    for name in names:
        key = prefix + name
        if key in tensors:
            setattr(estimator, name, tensors[key].numpy())
        elif required:
            raise ValueError(f"{path} is damaged: its readout arrays lack {key!r}.")
