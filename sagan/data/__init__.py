"""Data: named data sets, image folders and tar shards as uint8 tensors, and an endless, resumable loader.

Imports go one way, bottom to top:
- images.py: the container (`ImageData`, `ImageStream`), pixel ranges, fitting to a resolution;
- files.py: decoding image files into memory, or streaming them from disk; labels.py: a folder's classes from a CSV;
- the sources, each on the two above: folders.py (a folder of images), named.py (fashion-mnist, mnist, cifar10,
  celeba), shards.py (tar shards, webdataset layout);
- batches.py: the endless, resumable loader (`InfiniteBatches`, `batches_for`);
- load.py: `load_data`, choosing the source for a --data value.
"""

from sagan.data.batches import InfiniteBatches, batches_for
from sagan.data.images import IMAGE_EXTENSIONS, ImageData, ImageStream, fit_tensor, to_model_range, to_uint8, undo_fit
from sagan.data.load import load_data
from sagan.data.named import DATASET_ALIASES, DATASETS

__all__ = ["DATASETS", "DATASET_ALIASES", "IMAGE_EXTENSIONS", "ImageData", "ImageStream", "InfiniteBatches",
           "batches_for", "fit_tensor", "load_data", "to_model_range", "to_uint8", "undo_fit"]
