"""Data: from files on disk to the items the trainer uses (one image with all its instances).

* ``transforms``: SAM's input convention (resize longest side, normalise, pad), its inverse,
  tight boxes and seeded box jitter.
* ``readers``: images (PNG/JPEG/TIFF, 8/16-bit, grey/RGB) and instance masks, with errors that
  name the file.
* ``layout``: the on-disk layout every converter writes (images/, masks/, splits/, dataset.json).
* ``base``: the item contract, per-instance index, skip counters, ``collate_samples``.
* ``folder``, ``coco``, ``nifti``: the three sources; ``load_dataset`` picks one.
* ``synthetic``: seeded synthetic shapes (pretraining and tests); ``demo``: the offline demo sets;
  ``domains``: the benchmark's shifted synthetic domains (sonar, CT, aerial), rendered once.
* ``validation``: check a whole dataset before any work (every image, mask and annotation
  decoded once, every bad file reported at once; cached); ``python -m cobot_lib.data check``.
* ``points``: point prompts drawn from masks (``data.prompt: point | box+point``).
* ``prompt_file``, ``inputs``, ``predictions``: prediction on new images (``cobot_lib.predict``):
  prompt files, unlabelled image / NIfTI inputs, and the writers of masks, overlays and COCO RLE.
"""

from .base import BoxPromptDataset, PerInstance, build_item, collate_samples
from .coco import CocoDataset
from .factory import load_dataset
from .folder import FolderDataset
from .layout import read_split, split_groups, write_dataset_json, write_mask, write_splits
from .nifti import nifti_folder_to_slices, nifti_to_slices
from .transforms import (
    jitter_boxes,
    logits_to_original,
    map_boxes,
    map_points,
    masks_to_original,
    prepare_image,
    tight_boxes,
)
from .validation import DatasetError, require_valid_dataset, validate_dataset

__all__ = [
    "BoxPromptDataset",
    "CocoDataset",
    "DatasetError",
    "FolderDataset",
    "PerInstance",
    "build_item",
    "collate_samples",
    "jitter_boxes",
    "load_dataset",
    "logits_to_original",
    "map_boxes",
    "map_points",
    "masks_to_original",
    "nifti_folder_to_slices",
    "nifti_to_slices",
    "prepare_image",
    "read_split",
    "require_valid_dataset",
    "split_groups",
    "tight_boxes",
    "validate_dataset",
    "write_dataset_json",
    "write_mask",
    "write_splits",
]
