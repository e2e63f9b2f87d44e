"""Patch masks and the class partition used by the masked-image-modeling terms (S4MIM, combined).

Specification: the s4mim spec §3.1–§3.2 and the combined spec §3.

Status of what is implemented here:

* **Harness interpretation [interp]** of the S4MIM abstract (no official code exists): the class
  partition itself (regions ``R_k = [ŷ = k] ∧ V`` from an argmax without confidence threshold), the
  eligibility rule ``|R_k| ≥ max(1, f_min·|V_b|)`` with ``f_min = 0.01``, sampling of at most
  ``K_max`` classes per image, the grid patch mask (cell size ``P``, ratio ``r``) and its default
  sizes, one independent mask per class-sample (option: one per image), ``apply_to_labeled``.
* **Harness engineering decisions [harness]**: the hard cap ``max_samples`` on the number of
  class-samples keeps a uniformly random subset of the class-samples (in (image, class) order); the
  random draws use torch's global RNG or an explicit ``torch.Generator`` (drawn on the generator's
  device, CPU for the global RNG, then moved to the data device); the K_max sampling only draws
  random numbers when some image has more than ``K_max`` eligible classes.

Nothing here is part of the exact UniMatch base (s4mim spec §2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ClassSamples",
    "patch_mask",
    "expand_cell_mask",
    "class_partition",
    "partition_from_labels",
    "class_sample_masks",
]


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | None) -> torch.Tensor:
    """Uniform [0, 1) numbers from ``generator`` (on its device) or the global CPU RNG, moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(shape, generator=generator, device=gen_device)
    return u if device is None else u.to(device)


def expand_cell_mask(cells: torch.Tensor, H: int, W: int, patch: int) -> torch.Tensor:
    """Pixel mask from a cell mask: ``cells`` (…×gh×gw bool) → …×H×W, pixel (y, x) = cell (⌊y/P⌋, ⌊x/P⌋)."""
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    gh, gw = math.ceil(H / patch), math.ceil(W / patch)
    if cells.shape[-2:] != (gh, gw):
        raise ValueError(f"cell grid {tuple(cells.shape[-2:])} does not match ⌈H/P⌉×⌈W/P⌉ = {(gh, gw)}")
    full = cells.repeat_interleave(patch, dim=-2).repeat_interleave(patch, dim=-1)
    return full[..., :H, :W].contiguous()


def patch_mask(
    B: int,
    H: int,
    W: int,
    patch: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``B`` independent patch masks (bool B×H×W, True = masked) [interp, s4mim spec §3.2].

    A grid of ⌈H/P⌉×⌈W/P⌉ cells, each masked independently with probability ``ratio``; pixel (y, x)
    is masked iff its cell (⌊y/P⌋, ⌊x/P⌋) is (cells on the right/bottom border may be partial).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    gh, gw = math.ceil(H / patch), math.ceil(W / patch)
    device = torch.device(device) if device is not None else None
    cells = _rand((B, gh, gw), generator, device) < ratio
    return expand_cell_mask(cells, H, W, patch)


@dataclass
class ClassSamples:
    """The class-samples (b, k) of a batch, in (image, class) order.

    ``batch_index`` long (N,): image b of each class-sample;
    ``class_index`` long (N,): class k;
    ``region`` bool N×H×W: ``R_bk = [ŷ_b = k] ∧ V_b``.
    """

    batch_index: torch.Tensor
    class_index: torch.Tensor
    region: torch.Tensor

    def __len__(self) -> int:
        return int(self.batch_index.shape[0])

    def to(self, device: torch.device | str) -> "ClassSamples":
        return ClassSamples(self.batch_index.to(device), self.class_index.to(device), self.region.to(device))

    def counts_per_image(self, num_images: int) -> torch.Tensor:
        """Number of class-samples of each image, long (num_images,)."""
        return torch.bincount(self.batch_index, minlength=num_images)


def class_partition(
    pseudo: torch.Tensor,
    valid: torch.Tensor,
    num_classes: int,
    k_max: int = 3,
    min_fraction: float = 0.01,
    max_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> ClassSamples:
    """Class-samples of a batch from an argmax map [interp, s4mim spec §3.1].

    ``pseudo`` long B×H×W (class per pixel; values on invalid pixels are ignored), ``valid`` bool
    B×H×W. Class k of image b is eligible iff ``|R_bk| ≥ max(1, min_fraction·|V_b|)`` with
    ``R_bk = [pseudo_b = k] ∧ valid_b``. Images with more than ``k_max`` eligible classes keep
    ``k_max`` of them, sampled uniformly without replacement. If the total exceeds ``max_samples``
    (None = no cap) a uniformly random subset of ``max_samples`` class-samples is kept [harness].
    """
    if pseudo.shape != valid.shape or pseudo.dim() != 3:
        raise ValueError(f"pseudo {tuple(pseudo.shape)} and valid {tuple(valid.shape)} must both be B×H×W")
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    B = pseudo.shape[0]
    device = pseudo.device
    valid = valid.to(torch.bool)
    pseudo = pseudo.long()
    vals = pseudo[valid]
    if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) >= num_classes):
        raise ValueError(f"valid pixels must have classes in [0, {num_classes}), got {int(vals.min())}..{int(vals.max())}")

    # Pixel count of every (image, class) over valid pixels: B×K.
    img = torch.arange(B, device=device).view(B, 1, 1).expand_as(pseudo)
    flat = (img * num_classes + pseudo.clamp(0, num_classes - 1))[valid]
    counts = torch.bincount(flat, minlength=B * num_classes).view(B, num_classes)
    n_valid = valid.flatten(1).sum(1).to(torch.float64)
    threshold = torch.clamp(min_fraction * n_valid, min=1.0)
    eligible = counts.to(torch.float64) >= threshold[:, None]

    # Uniform K_max-subset of the eligible classes: iid uniform keys, ineligible classes ranked last.
    if bool((eligible.sum(1) > k_max).any()):
        keys = _rand((B, num_classes), generator, device)
        keys = torch.where(eligible, keys, torch.full_like(keys, 2.0))
        rank = keys.argsort(dim=1).argsort(dim=1)
        selected = eligible & (rank < k_max)
    else:
        selected = eligible

    batch_index, class_index = selected.nonzero(as_tuple=True)  # row-major: (image, class) order
    if max_samples is not None and batch_index.numel() > max_samples:
        keep = _rand((batch_index.numel(),), generator, device).argsort()[: max(0, max_samples)].sort().values
        batch_index, class_index = batch_index[keep], class_index[keep]

    region = (pseudo[batch_index] == class_index.view(-1, 1, 1)) & valid[batch_index]
    return ClassSamples(batch_index, class_index, region)


def partition_from_labels(
    label: torch.Tensor,
    num_classes: int,
    valid: torch.Tensor | None = None,
    ignore_index: int = 255,
    k_max: int = 3,
    min_fraction: float = 0.01,
    max_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> ClassSamples:
    """Class partition of a labeled batch from its ground truth (option ``apply_to_labeled``) [interp].

    Pixels labeled ``ignore_index`` (and, if given, pixels outside ``valid``) are excluded from the
    regions and from ``|V_b|``; otherwise identical to :func:`class_partition`.
    """
    v = label != ignore_index
    if valid is not None:
        v = v & valid.to(torch.bool)
    return class_partition(label, v, num_classes, k_max, min_fraction, max_samples, generator)


def class_sample_masks(
    samples: ClassSamples,
    H: int,
    W: int,
    patch: int,
    ratio: float,
    per_class_sample: bool = True,
    num_images: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Patch masks of the class-samples, bool N×H×W [interp, s4mim spec §3.2].

    ``per_class_sample=True`` (default): an independent mask per class-sample. False (option
    ``cmim.mask_per_class_sample: false``): one mask per image (``num_images`` of them are drawn),
    shared by that image's class-samples.
    """
    device = samples.region.device
    if per_class_sample:
        return patch_mask(len(samples), H, W, patch, ratio, generator, device)
    if num_images is None:
        num_images = int(samples.batch_index.max()) + 1 if len(samples) else 0
    per_image = patch_mask(num_images, H, W, patch, ratio, generator, device)
    return per_image[samples.batch_index]
