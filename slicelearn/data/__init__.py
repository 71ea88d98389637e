"""Data: reading volumes from arrays, NIfTI paths and nibabel images."""

from .io import check_volume_array, load_image, load_volumes

__all__ = ["check_volume_array", "load_image", "load_volumes"]
