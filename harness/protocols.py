"""Partition protocols: the data, split lists, crop, budget, model and evaluation of a benchmark cell.

Protocols are data: the built-in ones are ``harness/resources/protocols/*.yaml`` (package data; linked from
``benchmarks/protocols`` in a checkout), more come from ``HARNESS_PROTOCOLS`` and plugins. A file holds ``defaults`` shared by its
``protocols`` list; each entry overrides what differs (id, split lists). Everything is validated on
load; an unknown key or a bad value names the file and the key.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from .errors import ConfigError

_STRICT = pydantic.ConfigDict(extra="forbid")


class SplitFile(pydantic.BaseModel):
    """A split list, relative to the split root, pinned by the SHA-256 of its raw bytes or, for a file whose bytes
    were never available to the harness, by the git blob id its source repository gives it (the SHA-1 of
    ``b"blob <size>\\0" + bytes``, readable from the repository's tree without the file; it identifies the bytes
    as a checksum does, with SHA-1's weaker resistance to deliberate collisions)."""

    model_config = _STRICT
    path: str
    sha256: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{64}$")
    git_blob: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{40}$")
    count: int = pydantic.Field(gt=0, description="number of entries (non-empty lines)")

    @pydantic.model_validator(mode="after")
    def _one_pin(self):
        if (self.sha256 is None) == (self.git_blob is None):
            raise ValueError(f"split {self.path}: give exactly one of 'sha256' (of the file's bytes) or 'git_blob' "
                             f"(the source repository's blob id)")
        return self

    @property
    def pin(self) -> str:
        """The pinned digest as recorded with a run: the SHA-256, or ``git-blob:<id>``."""
        return self.sha256 if self.sha256 is not None else f"git-blob:{self.git_blob}"


class Splits(pydantic.BaseModel):
    model_config = _STRICT
    labeled: SplitFile
    unlabeled: SplitFile | None = None  # None: fully supervised protocol
    val: SplitFile
    # Held-out training images whose labels are used only to choose a checkpoint (``--metric selected``), never
    # to train; disjoint from the labeled list and from val (checked when the lists are read). Evaluated at every
    # evaluation point; it does not change what is trained, so it is not part of what a resume compares.
    selection: SplitFile | None = None


class Budget(pydantic.BaseModel):
    """Training budget. Exactly one of ``epochs`` (passes over the unlabeled list) or ``iterations``."""

    model_config = _STRICT
    epochs: int | None = pydantic.Field(default=None, gt=0)
    iterations: int | None = pydantic.Field(default=None, gt=0)
    batch_labeled: int = pydantic.Field(gt=0)
    batch_unlabeled: int = pydantic.Field(gt=0)
    lr: float = pydantic.Field(gt=0)
    head_lr_mult: float = pydantic.Field(gt=0)
    weight_decay: float = pydantic.Field(ge=0)
    optimizer: Literal["sgd", "adamw"] = pydantic.Field(
        default="sgd", description="sgd: SGD with momentum (the ResNet recipes); adamw: AdamW with betas (UniMatch V2's "
                                   "DINOv2 recipe); both with two groups, backbone lr and head lr x head_lr_mult")
    momentum: float = pydantic.Field(default=0.9, ge=0, lt=1, description="SGD momentum (optimizer: sgd)")
    betas: tuple[float, float] = pydantic.Field(default=(0.9, 0.999), description="AdamW betas (optimizer: adamw)")
    poly_power: float = pydantic.Field(default=0.9, ge=0)
    eval_every: int | None = pydantic.Field(
        default=None, gt=0, description="iterations between evaluations (default: once per epoch-equivalent, ≤ 20 evals)")
    num_evals: int = pydantic.Field(default=10, gt=0, description="evaluations per run when eval_every is unset")
    unlabeled_pool: int | None = pydantic.Field(
        default=None, gt=0, description="train on only the first N images of the unlabeled list (a regime knob: "
                                        "passes over the unlabeled set and unlabeled images per labeled one); "
                                        "default: all of it")

    @pydantic.model_validator(mode="after")
    def _one_budget(self):
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("give exactly one of 'epochs' or 'iterations'")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must both be in [0, 1), got {list(self.betas)}")
        return self


class ModelSpec(pydantic.BaseModel):
    model_config = _STRICT
    # A registered encoder's name (harness_register_encoders; `harness list encoders`). Checked where the model is
    # built or the run resolved, not here: a protocol file stays listable when the plugin of its encoder is missing.
    backbone: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description=(
        "the encoder (`harness list encoders`): resnet50, resnet101, small (DeepLabV3+); dinov2_small, dinov2_base, "
        "dinov2_large, vit_tiny (UniMatch V2's DPT head); or a plugin's"))
    output_stride: Literal[8, 16] = 16
    deep_stem: bool = True
    pretrained: bool = True
    weights: str = pydantic.Field(
        default="imagenet", description="which pretrained weights (with pretrained: true): 'imagenet' = ImageNet "
                                        "files from HARNESS_PRETRAINED_DIR or the torchvision cache; a built-in name "
                                        "(harness.models.builtin_weights, e.g. 'shapes-v1') = weights shipped with "
                                        "the harness, checked by SHA-256. ViT encoders: 'imagenet' = "
                                        "their published (DINOv2) weights from HARNESS_PRETRAINED_DIR, or the "
                                        "path of a weights file (official .pth, timm or Hugging Face safetensors)")
    width: int = pydantic.Field(default=32, gt=0, description="base channel width of the 'small' backbone")
    blocks: int = pydantic.Field(default=1, gt=0, description="residual blocks per stage of the 'small' backbone")
    decoder_channels: int = pydantic.Field(default=256, gt=0)
    decoder_init: Literal["pytorch", "kaiming"] = pydantic.Field(
        default="pytorch", description="initialisation of the decoder convolutions (ASPP, reduce, fuse, aux head): "
                                       "pytorch = PyTorch's default, as the official UniMatch and iMAS models; "
                                       "kaiming = Kaiming normal (fan-out)")
    multi_grid: bool = pydantic.Field(
        default=False, description="multiply the dilations of layer4's blocks by (2, 2, 4), as the official iMAS "
                                   "ResNets (output stride 16: 2, 4, 8; output stride 8: 4, 8, 16)")
    aux_head: bool = pydantic.Field(
        default=False, description="auxiliary head on layer3 (3x3 conv, BN, ReLU, 1x1 conv) trained with the "
                                   "supervised loss on labeled images, as the official iMAS Cityscapes recipe")
    aux_weight: float = pydantic.Field(default=0.4, ge=0, description="weight of the auxiliary head's supervised loss")
    freeze_backbone: bool = pydantic.Field(
        default=False, description="freeze the encoder (no gradients, not optimised; BatchNorm statistics kept), as "
                                   "UniMatch V2's lock_backbone for small GPUs; only the decoder trains")


class EvalSpec(pydantic.BaseModel):
    model_config = _STRICT
    mode: Literal["whole", "slide", "slide_truncated", "center_crop"]
    window: int | None = pydantic.Field(default=None, gt=0)
    stride: int | None = pydantic.Field(default=None, gt=0)
    crop: int | None = pydantic.Field(default=None, gt=0)
    batch_windows: int = pydantic.Field(default=8, gt=0, description="windows per forward in slide mode")
    resize_multiple: int | None = pydantic.Field(
        default=None, gt=0, description="whole mode: resize each image (bilinear, corners aligned) so that both "
                                        "sides are the nearest multiple of this (a ViT's patch size, 14 for DINOv2), "
                                        "and the logits back to the image's size, as UniMatch V2 evaluates")
    # On a CPU, batching pays for small images only (benchmarks/perf/README.md), so the default is 1 and the
    # synthetic protocols ask for more.
    batch_images: int = pydantic.Field(default=1, gt=0,
                                       description="equal-sized images per forward in whole / center_crop mode")

    @pydantic.model_validator(mode="after")
    def _needs(self):
        if self.mode.startswith("slide") and (self.window is None or self.stride is None):
            raise ValueError(f"eval mode '{self.mode}' needs 'window' and 'stride'")
        if self.mode == "center_crop" and self.crop is None:
            raise ValueError("eval mode 'center_crop' needs 'crop'")
        if self.resize_multiple is not None and self.mode != "whole":
            raise ValueError(f"'resize_multiple' applies to eval mode 'whole' only, not '{self.mode}'")
        return self

    @property
    def name(self) -> str:
        if self.mode == "whole":
            return "whole" if self.resize_multiple is None else f"whole_resize{self.resize_multiple}"
        if self.mode == "center_crop":
            return f"center_crop_{self.crop}"
        return f"{self.mode.replace('slide', 'slide' + str(self.window))}"


class SupervisedLoss(pydantic.BaseModel):
    model_config = _STRICT
    type: Literal["ce", "ohem"] = "ce"
    thresh: float = 0.7
    min_kept: int = 200_000
    group: int = pydantic.Field(default=2, gt=0, description="OHEM is computed per group of this many crops")


class Protocol(pydantic.BaseModel):
    model_config = _STRICT
    id: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_.@-]*$")
    description: str = ""
    # A registered dataset's name (harness_register_datasets). Checked where the data is used, not here: a protocol
    # file stays listable when the plugin that provides its dataset is missing, and the error then names both.
    dataset: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    family: str
    splits: Splits
    num_classes: int = pydantic.Field(gt=1)
    class_names: list[str]
    crop_size: int = pydantic.Field(gt=0)
    scale_range: tuple[float, float] = pydantic.Field(
        default=(0.5, 2.0), description="weak augmentation: long side resized to a uniform integer in "
                                        "[lo·L, hi·L]; (0.5, 2.0) on every standard benchmark")
    eval: EvalSpec
    budget: Budget
    supervised_loss: SupervisedLoss = SupervisedLoss()
    model: ModelSpec
    method_settings: dict[str, dict[str, Any]] = pydantic.Field(
        default_factory=dict, description="per-method settings fixed by the benchmark, e.g. {'unimatch': {'tau': 0.95}}")
    source: str = pydantic.Field(default="", description="file the protocol was loaded from")
    split_of: str | None = pydantic.Field(
        default=None, description="split seeds: the id of the protocol whose settings and labeled count this one "
                                  "shares, with another independently drawn labeled list")
    split_seed: int | None = pydantic.Field(default=None, ge=0, description="split seeds: which draw this list is")

    @pydantic.model_validator(mode="after")
    def _check(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names, num_classes is {self.num_classes}")
        pool = self.budget.unlabeled_pool
        if pool is not None and (self.splits.unlabeled is None or pool > self.splits.unlabeled.count):
            have = "no unlabeled list" if self.splits.unlabeled is None else f"{self.splits.unlabeled.count} unlabeled images"
            raise ValueError(f"budget.unlabeled_pool {pool} needs at least that many unlabeled images; the protocol "
                             f"has {have}")
        if (self.split_of is None) != (self.split_seed is None):
            raise ValueError("split_of and split_seed go together: give both (a split-seed protocol) or neither")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be [lo, hi] with 0 < lo <= hi, got {list(self.scale_range)}")
        return self

    @property
    def labeled_count(self) -> int:
        return self.splits.labeled.count

    @property
    def unlabeled_count(self) -> int:
        """Unlabeled images trained on: the list's count, or ``budget.unlabeled_pool`` of them."""
        if not self.splits.unlabeled:
            return 0
        pool = self.budget.unlabeled_pool
        return self.splits.unlabeled.count if pool is None else min(pool, self.splits.unlabeled.count)

    @property
    def iters_per_epoch(self) -> int:
        """One epoch = one pass over the unlabeled list (labeled list if fully supervised), last batch dropped."""
        if self.splits.unlabeled is not None:
            return max(1, self.unlabeled_count // self.budget.batch_unlabeled)
        return max(1, self.labeled_count // self.budget.batch_labeled)

    @property
    def total_iterations(self) -> int:
        if self.budget.iterations is not None:
            return self.budget.iterations
        return self.budget.epochs * self.iters_per_epoch

    @property
    def eval_every(self) -> int:
        if self.budget.eval_every is not None:
            return self.budget.eval_every
        return max(1, math.ceil(self.total_iterations / self.budget.num_evals))

    def with_overrides(self, overrides: dict[str, Any]) -> "Protocol":
        """A copy with dotted overrides of protocol sections applied, e.g. {'budget.iterations': 50}."""
        data = self.model_dump()
        for key, value in overrides.items():
            parts = key.split(".")
            node = data
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"unknown protocol setting '{key}': '{p}' is not a section of protocol {self.id}")
                node = node[p]
            if parts[-1] not in node:
                raise ConfigError(
                    f"unknown protocol setting '{key}' for protocol {self.id}; "
                    f"valid keys in this section: {', '.join(sorted(node))}")
            node[parts[-1]] = value
        if "budget.iterations" in overrides and "budget.epochs" not in overrides:
            data["budget"]["epochs"] = None
        if "budget.epochs" in overrides and "budget.iterations" not in overrides:
            data["budget"]["iterations"] = None
        try:
            return Protocol.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"invalid override for protocol {self.id}: {_format_validation(exc)}") from None


# Sections of a protocol that ``--set`` may override; every other key belongs to the method config.
OVERRIDABLE_SECTIONS = ("budget", "model", "eval", "supervised_loss")


def _format_validation(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"key '{loc}': {err['msg']}{got_s}")
    return "; ".join(parts)


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_protocol_file(path: str | Path) -> list[Protocol]:
    """Parse one protocol file: ``{defaults: {...}, protocols: [{id: ..., ...}, ...]}``."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"protocol file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("protocols"), list):
        raise ConfigError(f"protocol file {path}: expected a mapping with a 'protocols' list (and optional 'defaults')")
    unknown = set(doc) - {"defaults", "protocols"}
    if unknown:
        raise ConfigError(f"protocol file {path}: unknown top-level key(s) {sorted(unknown)}; expected 'defaults', 'protocols'")
    defaults = doc.get("defaults") or {}
    out = []
    for i, entry in enumerate(doc["protocols"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"protocol file {path}: entry {i} of 'protocols' is not a mapping")
        data = _deep_merge(defaults, entry)
        data["source"] = str(path)
        try:
            out.append(Protocol.model_validate(data))
        except pydantic.ValidationError as exc:
            name = entry.get("id", f"#{i}")
            raise ConfigError(f"protocol file {path}, protocol '{name}': {_format_validation(exc)}") from None
    return out


def default_protocol_dirs() -> list[Path]:
    """The built-in protocols (package data), plus any folders in ``HARNESS_PROTOCOLS`` (os.pathsep-separated)."""
    from .resources import protocols_dir

    dirs = [protocols_dir()]
    extra = os.environ.get("HARNESS_PROTOCOLS")
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


class ProtocolRegistry:
    def __init__(self) -> None:
        self._protocols: dict[str, Protocol] = {}
        self.failures: list = []  # plugin failures (set by the plugin manager), named in "unknown protocol" errors

    def add(self, protocol: Protocol) -> None:
        if protocol.id in self._protocols:
            other = self._protocols[protocol.id].source
            raise ConfigError(f"protocol id '{protocol.id}' is defined twice: in {other} and in {protocol.source}")
        self._protocols[protocol.id] = protocol

    def add_file(self, path: str | Path) -> None:
        for p in load_protocol_file(path):
            self.add(p)

    def add_dir(self, directory: str | Path) -> None:
        for path in sorted(Path(directory).glob("*.yaml")):
            self.add_file(path)

    def get(self, protocol_id: str) -> Protocol:
        try:
            return self._protocols[protocol_id]
        except KeyError:
            pass
        msg = f"unknown protocol '{protocol_id}'; available protocols: {', '.join(self.names()) or '(none)'}"
        if self.failures:
            msg += (". Plugins that failed to load (one may provide it): "
                    + "; ".join(f.describe() for f in self.failures))
        raise ConfigError(msg)

    def names(self) -> list[str]:
        return sorted(self._protocols)

    def __iter__(self):
        return iter(self._protocols[k] for k in self.names())

    def __len__(self) -> int:
        return len(self._protocols)
