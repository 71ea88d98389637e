"""Where a fitted slice model looks, as per-slice scores and NIfTI maps.

Three importance measures of a fitted network,
:class:`~slicelearn.SliceCNNRegressor` or :class:`~slicelearn.SliceCNNClassifier`:

- ``"attention"``: the attention pooling's weight on each slice (attention
  pooling only; weights of one subject sum to 1);
- ``"occlusion"``: leave-one-slice-out, the absolute change of the output when
  that slice is left out of the pooled set (any pooling; in the output's
  units, e.g. years). A set model is defined for any number of slices, so
  nothing has to be made up to fill the gap;
- ``"gradient"``: gradient x input, the absolute product of each voxel's
  intensity and the output's gradient with respect to it (any pooling;
  voxel-wise, summed over each slice for per-slice scores).

and one of a linear slice readout, :class:`~slicelearn.SliceLinearRegressor`
or :class:`~slicelearn.SliceLinearClassifier`:

- ``"contribution"``: each slice's term in the readout, in absolute value
  (:meth:`~slicelearn.SliceLinearRegressor.slice_contributions`).

:func:`slice_importance` returns the per-slice scores of either family
(:data:`DESCRIPTIONS` says what each method measures, in a sentence); :func:`importance_maps`
turns them into one 3D NIfTI image per subject (per-slice measures fill their
slice), in the space of the input scan or of the grid the model saw; and
:func:`mean_importance_map` averages a cohort on the model's grid. The images
go straight into ``nilearn.plotting``.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import torch

from .data.io import is_image_list
from .data.preprocessing import PreprocessedVolumes

__all__ = [
    "DESCRIPTIONS",
    "METHODS",
    "default_method",
    "importance_maps",
    "mean_importance_map",
    "slice_importance",
]

#: The networks' methods (:func:`slice_importance` and :func:`importance_maps`).
METHODS = ("attention", "occlusion", "gradient")
#: The linear slice readouts' method.
LINEAR_METHOD = "contribution"
#: What each method measures, in words a figure's caption can use.
DESCRIPTIONS = {
    "attention": "the attention pooling's weight of each slice",
    "occlusion": "how far the prediction moves when the slice is left out",
    "gradient": "gradient x input, summed over the slice",
    "contribution": (
        "each slice's term in the linear readout (its features' deviation from the "
        "training cohort's at that slice, times the weights), in absolute value"
    ),
}


def _is_linear(estimator: Any) -> bool:
    from .readout import _SliceLinearReadout

    return isinstance(estimator, _SliceLinearReadout)


def default_method(estimator: Any) -> str:
    """The method a report uses: the readout's terms, attention weights, or occlusion."""
    if _is_linear(estimator):
        return LINEAR_METHOD
    return "attention" if getattr(estimator, "pooling", None) == "attention" else "occlusion"


def _check(estimator: Any, method: str) -> None:
    if not hasattr(estimator, "module_") or not hasattr(estimator, "n_slices_"):
        raise ValueError(f"{type(estimator).__name__} is not fitted yet: call fit first.")
    if method not in METHODS:
        hint = (
            f" ({LINEAR_METHOD!r} is the linear slice readouts' method)"
            if method == LINEAR_METHOD
            else ""
        )
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}{hint}.")
    if method == "attention" and estimator.pooling != "attention":
        raise ValueError(
            f"method='attention' needs pooling='attention'; this model pools with "
            f"{estimator.pooling!r}. Use method='occlusion' or 'gradient'."
        )


def _volumes(estimator: Any, X: Any):
    """Yield ``(index, volume tensor (X, Y, Z))`` of X, read as the estimator reads them."""
    for index, volume in enumerate(estimator.iter_volumes(X)):
        yield index, torch.as_tensor(volume)


def _output_index(estimator: Any, outputs: torch.Tensor, output: int | None) -> int:
    n_outputs = outputs.shape[-1]
    if output is None:
        return 0 if n_outputs == 1 else int(outputs[0].argmax())
    if not 0 <= output < n_outputs:
        raise ValueError(
            f"output={output} is not an output index of this model (0..{n_outputs - 1})."
        )
    return output


def _per_volume(
    estimator: Any, volume: torch.Tensor, method: str, output: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-slice scores over the kept slices, and for 'gradient' the voxel map too."""
    module = estimator.module_
    module.eval()
    batch = volume[None].to(estimator.device)
    if method == "gradient":
        batch.requires_grad_(True)
        with torch.enable_grad():
            outputs = module(batch)
            index = _output_index(estimator, outputs.detach(), output)
            (gradient,) = torch.autograd.grad(outputs[0, index], batch)
        voxels = (gradient * batch.detach()).abs()[0].float().cpu().numpy()
        return voxels, voxels
    with torch.inference_mode():
        outputs, tokens, attention = module(batch, return_details=True)
        index = _output_index(estimator, outputs, output)
        if method == "attention":
            return attention[0].float().cpu().numpy(), None
        reference = outputs[0, index]
        changes = []
        for position in range(tokens.shape[1]):
            kept = torch.cat([tokens[:, :position], tokens[:, position + 1 :]], dim=1)
            changes.append((module.predict_from_tokens(kept)[0][0, index] - reference).abs())
        return torch.stack(changes).float().cpu().numpy(), None


def _slice_scores(estimator: Any, scores: np.ndarray, voxels: np.ndarray | None) -> np.ndarray:
    """Scores of every slice index of the volume (zero for slices the model dropped)."""
    from .nn.slicenet import slice_axis_dim

    axis = slice_axis_dim(estimator.axis) - 1
    if voxels is not None:
        return voxels.sum(axis=tuple(d for d in range(3) if d != axis))
    full = np.zeros(estimator.n_slices_, dtype=np.float32)
    start = (getattr(estimator, "slice_range_", None) or (0, 0))[0]
    full[start : start + len(scores)] = scores
    return full


def slice_importance(
    estimator: Any, X: Any, method: str | None = None, *, output: int | None = None
) -> np.ndarray:
    """How much each slice index matters to each subject's prediction.

    Parameters
    ----------
    estimator : fitted network (SliceCNNRegressor, SliceCNNClassifier) or linear slice readout
        (SliceLinearRegressor, SliceLinearClassifier)
    X : array of shape (n_subjects, X, Y, Z), or list of NIfTI paths or images
        Volumes, given as to ``predict``.
    method : {"attention", "occlusion", "gradient", "contribution"}, optional
        See :mod:`slicelearn.inspection`. By default ``"occlusion"`` for a
        network and ``"contribution"`` (the only one) for a linear readout.
    output : int, optional
        Which output of a network to explain: by default the only one
        (regression, binary classification), or each subject's predicted
        class. A linear classifier's contributions are those of its first
        logit.

    Returns
    -------
    ndarray of shape (n_subjects, n_slices)
        Slices along the model's ``axis``; slices the model drops
        (``crop_empty_slices``) score 0.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.inspection import slice_importance
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(8, 10, 32, 32)).astype(np.float32)
    >>> est = SliceCNNRegressor(encoder="cnn2d", weights=None, pooling="attention",
    ...                         max_epochs=1, train_split=None, verbose=0).fit(X, np.arange(8.0))
    >>> slice_importance(est, X[:2], "attention").sum(axis=1).round(3)
    array([1., 1.], dtype=float32)
    """
    if _is_linear(estimator):
        if method not in (None, LINEAR_METHOD):
            raise ValueError(
                f"A linear slice readout has one method, {LINEAR_METHOD!r}; got {method!r}."
            )
        return estimator.slice_contributions(X).astype(np.float32)
    method = "occlusion" if method is None else method
    _check(estimator, method)
    rows = [
        _slice_scores(estimator, *_per_volume(estimator, volume, method, output))
        for _, volume in _volumes(estimator, X)
    ]
    return np.stack(rows).astype(np.float32)


def _volume_maps(estimator: Any, X: Any, method: str, output: int | None):
    """Yield ``(index, 3D importance array on the model's grid)``."""
    from .nn.slicenet import slice_axis_dim

    axis = slice_axis_dim(estimator.axis) - 1
    for index, volume in _volumes(estimator, X):
        scores, voxels = _per_volume(estimator, volume, method, output)
        if voxels is None:
            per_slice = _slice_scores(estimator, scores, None)
            shape = [1, 1, 1]
            shape[axis] = len(per_slice)
            voxels = np.broadcast_to(per_slice.reshape(shape), volume.shape).copy()
        yield index, voxels.astype(np.float32)


def _model_grid(estimator: Any, X: Any, index: int, affine: np.ndarray | None) -> np.ndarray:
    """The affine of the grid the model saw for ``X[index]``."""
    if isinstance(X, PreprocessedVolumes):
        return X.preprocessor.output_grid(X.items[index], index)
    if is_image_list(X):
        return estimator.preprocessor_.output_grid(X[index], index)
    if affine is None:
        raise ValueError(
            "X is an array, which carries no affine: pass affine= (the 4x4 voxel-to-world "
            "matrix of its grid, e.g. slicelearn.data.template_image('mni152').affine), "
            "or pass NIfTI paths or images."
        )
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 matrix; got shape {affine.shape}.")
    return affine


def importance_maps(
    estimator: Any,
    X: Any,
    method: str = "occlusion",
    *,
    output: int | None = None,
    space: str = "input",
    affine: np.ndarray | None = None,
) -> list[nib.Nifti1Image]:
    """One 3D importance image per subject, ready for ``nilearn.plotting``.

    Per-slice measures (``"attention"``, ``"occlusion"``) fill each slice
    with its score; ``"gradient"`` is voxel-wise.

    Parameters
    ----------
    estimator : fitted SliceCNNRegressor or SliceCNNClassifier
    X : array of shape (n_subjects, X, Y, Z), or list of NIfTI paths or images
    method : {"attention", "occlusion", "gradient"}, default="occlusion"
    output : int, optional
        See :func:`slice_importance`.
    space : {"input", "model"}, default="input"
        ``"input"``: each map has the shape and affine of its input scan (the
        model's grid is resampled back, linearly; for scans that were only
        reoriented this is exact). Scans registered to a template have no
        way back here: use ``"model"``, the grid the model saw (the
        template's, cropped if the preprocessing crops).
    affine : array of shape (4, 4), optional
        The voxel-to-world affine of array input (required for arrays).

    Returns
    -------
    list of nibabel.Nifti1Image
    """
    _check(estimator, method)
    if space not in ("input", "model"):
        raise ValueError(f"space must be 'input' or 'model'; got {space!r}.")
    from nilearn import image as nimage

    from .data.io import describe_item, load_nifti

    maps = []
    for index, values in _volume_maps(estimator, X, method, output):
        image = nib.Nifti1Image(values, _model_grid(estimator, X, index, affine))
        if space == "input" and (is_image_list(X) or isinstance(X, PreprocessedVolumes)):
            items = X.items if isinstance(X, PreprocessedVolumes) else X
            preprocessor = (
                X.preprocessor if isinstance(X, PreprocessedVolumes) else estimator.preprocessor_
            )
            if preprocessor.registration:
                raise ValueError(
                    f"{describe_item(items[index], index)} was registered to the template, and "
                    "the map cannot be taken back to the scan's space: use space='model'."
                )
            scan = load_nifti(items[index], index)
            image = nimage.resample_to_img(
                image, scan, interpolation="linear", force_resample=True, copy_header=True
            )
        maps.append(image)
    return maps


def mean_importance_map(
    estimator: Any,
    X: Any,
    method: str = "occlusion",
    *,
    output: int | None = None,
    affine: np.ndarray | None = None,
) -> nib.Nifti1Image:
    """The cohort's average importance map, on the grid the model saw.

    For scans on a template grid (registered or resampled to it) this is the
    template space; scans kept on their own grids are averaged voxel by voxel
    on the first scan's grid. Parameters are those of :func:`importance_maps`.

    Returns
    -------
    nibabel.Nifti1Image
    """
    _check(estimator, method)
    total, count = None, 0
    for _, values in _volume_maps(estimator, X, method, output):
        total = values.astype(np.float64) if total is None else total + values
        count += 1
    if total is None:
        raise ValueError("X holds no volumes.")
    grid = _model_grid(estimator, X, 0, affine)
    return nib.Nifti1Image((total / count).astype(np.float32), grid)
