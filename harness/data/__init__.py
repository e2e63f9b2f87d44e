"""Data layer: the dataset registry, split lists, dataset readers (VOC, Cityscapes, ADE20K, COCO, synthetic), weak
augmentation, loaders."""

from .ade20k import ADE20K_CLASSES, ADE20K_NUM_CLASSES, ADE20K_REDUCE_ZERO_LABEL, ADE20KLayout
from .check import CheckReport, check_dataset_root
from .cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_LABELID_TO_TRAINID, CITYSCAPES_NUM_CLASSES, CityscapesLayout,
                         prepare_cityscapes_trainids)
from .coco import COCO_CLASSES, COCO_NUM_CLASSES, COCOLayout
from .loader import (TrainLoader, TrainStreams, ValDataset, build_train_loader, build_val_dataset, permutation,
                     sample_rng, shard, val_loader)
from .readers import DataLayout, SegmentationSource, make_layout, read_image, read_mask, resolve_data_root
from .registry import Dataset, DatasetRegistry, get_dataset
from .splits import (DEFAULT_SPLITS_URL, UNIMATCH_COMMIT, check_disjoint, fetch_splits, load_protocol_splits,
                     parse_split_bytes, protocol_split_files, read_sha256sums, read_split_file, resolve_split_root,
                     verify_protocol_splits, verify_split)
from ..records import sha256_file
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, WeakParams, apply_weak, normalize, sample_weak_params,
                         weak_augment)
from .voc import VOC_CLASSES, VOC_DISPLAY_NAMES, VOC_NUM_CLASSES, VOCLayout, voc_palette, voc_palette_flat

__all__ = [
    "ADE20K_CLASSES", "ADE20K_NUM_CLASSES", "ADE20K_REDUCE_ZERO_LABEL", "ADE20KLayout",
    "CheckReport", "check_dataset_root",
    "COCO_CLASSES", "COCO_NUM_CLASSES", "COCOLayout",
    "Dataset", "DatasetRegistry", "get_dataset",
    "CITYSCAPES_CLASSES", "CITYSCAPES_LABELID_TO_TRAINID", "CITYSCAPES_NUM_CLASSES", "CityscapesLayout",
    "prepare_cityscapes_trainids",
    "TrainLoader", "TrainStreams", "ValDataset", "build_train_loader", "build_val_dataset", "permutation",
    "sample_rng", "shard", "val_loader",
    "DataLayout", "SegmentationSource", "make_layout", "read_image", "read_mask", "resolve_data_root",
    "DEFAULT_SPLITS_URL", "UNIMATCH_COMMIT", "check_disjoint", "fetch_splits", "load_protocol_splits",
    "parse_split_bytes", "protocol_split_files", "read_sha256sums", "read_split_file", "resolve_split_root",
    "sha256_file", "verify_protocol_splits", "verify_split",
    "IMAGENET_MEAN", "IMAGENET_STD", "WeakParams", "apply_weak", "normalize", "sample_weak_params", "weak_augment",
    "VOC_CLASSES", "VOC_DISPLAY_NAMES", "VOC_NUM_CLASSES", "VOCLayout", "voc_palette", "voc_palette_flat",
]
