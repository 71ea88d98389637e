"""scikit-learn's estimator tags for estimators whose samples are volumes."""

from __future__ import annotations

from typing import Any

__all__ = ["volume_input_tags"]


def volume_input_tags(tags: Any) -> Any:
    """``tags`` (from ``super().__sklearn_tags__()``) for X of volumes and a required y.

    X is a batch of volumes ``(n_subjects, X, Y, Z)`` or a list of scans.
    scikit-learn has no tag for that; like its image-patch estimators, this
    says "not a 2D table, image-like samples".
    """
    tags.input_tags.two_d_array = False
    tags.input_tags.three_d_array = True
    tags.target_tags.required = True
    return tags
