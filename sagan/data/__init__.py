"""Data: named data sets, image folders and tar shards as uint8 tensors, and an endless, resumable loader."""

from sagan.data.images import (
    DATASET_ALIASES,
    DATASETS,
    IMAGE_EXTENSIONS,
    ImageData,
    ImageStream,
    InfiniteBatches,
    fit_tensor,
    load_data,
    to_model_range,
    to_uint8,
    undo_fit,
)
from sagan.data.shards import batches_for

__all__ = ["DATASETS", "DATASET_ALIASES", "IMAGE_EXTENSIONS", "ImageData", "ImageStream", "InfiniteBatches",
           "batches_for", "fit_tensor", "load_data", "to_model_range", "to_uint8", "undo_fit"]
