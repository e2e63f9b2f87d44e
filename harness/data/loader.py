"""Deterministic, resumable training streams and the validation dataset.

Determinism contract
--------------------
The batch of training step ``s`` is a pure function of (run seed, protocol, split files, data, ``s``):

* **Order.** Stream ids: labeled = 0, unlabeled = 1. The permutation used for pass/epoch ``e`` of
  stream ``t`` is drawn from ``numpy.random.default_rng(SeedSequence([seed, t, 0, e]))``.
  - Labeled stream: endless; global sample position ``p`` (``p = s·B_l + j``) is entry
    ``perm_e[p mod N_l]`` with ``e = ⌊p / N_l⌋``. The list is reshuffled each time it is exhausted and
    batches may straddle two passes, so nothing is truncated and every labeled image is used once per pass.
  - Unlabeled stream: ``⌊N_u / B_u⌋`` steps per epoch (last incomplete batch dropped); step ``s`` is
    epoch ``e = ⌊s / I⌋`` and takes ``perm_e[(s mod I)·B_u : (s mod I + 1)·B_u]``.
* **Augmentation.** The weak augmentation of the sample at global position ``p`` of stream ``t``
  (crop ``k`` = 0, or 1 for the second unlabeled crop) uses its own generator
  ``default_rng(SeedSequence([seed, t, 1, p, k]))``. No worker, global or torch RNG state is used.
* Hence batches do not depend on ``num_workers``, on prefetching or on resuming: starting at
  ``start_step = k`` (positions computed arithmetically, nothing replayed) yields exactly the batches
  ``k, k+1, …`` of a stream started at 0.

Validation: :func:`build_val_dataset` returns every val image exactly once at its original
resolution; :func:`shard` splits indices across ranks without padding (rank ``r`` gets ``r, r+world, …``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from ..protocols import Protocol
from .readers import SegmentationSource, resolve_data_root
from .splits import load_protocol_splits, verify_split
from .transforms import to_tensors, weak_augment

LABELED = 0
UNLABELED = 1
_PERM = 0
_AUG = 1

SampleKey = tuple[int, int, int]  # (stream, index into the split list, global sample position)


def _seed_entropy(seed: int) -> int:
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    return int(seed)


def permutation(seed: int, stream: int, epoch: int, n: int) -> np.ndarray:
    """The order of pass/epoch ``epoch`` of stream ``stream`` (a permutation of ``range(n)``)."""
    rng = np.random.default_rng(np.random.SeedSequence([_seed_entropy(seed), stream, _PERM, epoch]))
    return rng.permutation(n)


def sample_rng(seed: int, stream: int, position: int, crop: int = 0) -> np.random.Generator:
    """The generator of the augmentation of the sample at ``position`` of ``stream`` (crop ``crop``)."""
    return np.random.default_rng(np.random.SeedSequence([_seed_entropy(seed), stream, _AUG, position, crop]))


class _PermCache:
    def __init__(self, seed: int, stream: int, n: int):
        self.seed, self.stream, self.n = seed, stream, n
        self._epoch, self._perm = -1, None

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, permutation(self.seed, self.stream, epoch, self.n)
        return self._perm


class TrainStreams:
    """Index arithmetic of the labeled and unlabeled streams (no data access)."""

    def __init__(self, seed: int, n_labeled: int, batch_labeled: int, n_unlabeled: int = 0, batch_unlabeled: int = 0):
        if n_labeled <= 0:
            raise DataError("the labeled split list is empty")
        if n_unlabeled and n_unlabeled < batch_unlabeled:
            raise DataError(f"the unlabeled list has {n_unlabeled} entries, fewer than one batch of {batch_unlabeled}")
        self.seed = _seed_entropy(seed)
        self.n_labeled, self.batch_labeled = n_labeled, batch_labeled
        self.n_unlabeled, self.batch_unlabeled = n_unlabeled, batch_unlabeled
        self._lab_perm = _PermCache(seed, LABELED, n_labeled)
        self._unl_perm = _PermCache(seed, UNLABELED, n_unlabeled) if n_unlabeled else None

    @property
    def has_unlabeled(self) -> bool:
        return self.n_unlabeled > 0

    @property
    def unlabeled_steps_per_epoch(self) -> int:
        return self.n_unlabeled // self.batch_unlabeled if self.has_unlabeled else 0

    def labeled(self, step: int) -> list[tuple[int, int]]:
        """``[(index, position), …]`` of the labeled batch of ``step``."""
        out = []
        for p in range(step * self.batch_labeled, (step + 1) * self.batch_labeled):
            epoch, off = divmod(p, self.n_labeled)
            out.append((int(self._lab_perm(epoch)[off]), p))
        return out

    def unlabeled(self, step: int) -> list[tuple[int, int]]:
        """``[(index, position), …]`` of the unlabeled batch of ``step`` (empty without an unlabeled list)."""
        if not self.has_unlabeled:
            return []
        epoch, within = divmod(step, self.unlabeled_steps_per_epoch)
        perm = self._unl_perm(epoch)
        b = self.batch_unlabeled
        base = step * b
        return [(int(perm[within * b + j]), base + j) for j in range(b)]

    def keys(self, step: int, rank: int = 0, world: int = 1) -> list[SampleKey]:
        """Sample keys of ``step``; with ``world`` > 1 the contiguous share of ``rank`` of each global batch."""
        lab = [(LABELED, i, p) for i, p in self.labeled(step)]
        unl = [(UNLABELED, i, p) for i, p in self.unlabeled(step)]
        if world > 1:
            lab = lab[rank * len(lab) // world:(rank + 1) * len(lab) // world]
            unl = unl[rank * len(unl) // world:(rank + 1) * len(unl) // world]
        return lab + unl


class StepBatchSampler(Sampler):
    """Yields, per step from ``start_step`` (to ``stop_step`` or endlessly), the list of sample keys."""

    def __init__(self, streams: TrainStreams, start_step: int = 0, stop_step: int | None = None,
                 rank: int = 0, world: int = 1):
        if start_step < 0:
            raise ValueError(f"start_step must be ≥ 0, got {start_step}")
        self.streams, self.start_step, self.stop_step = streams, start_step, stop_step
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[SampleKey]]:
        steps = itertools.count(self.start_step) if self.stop_step is None else range(self.start_step, self.stop_step)
        for step in steps:
            yield self.streams.keys(step, self.rank, self.world)

    def __len__(self) -> int:
        if self.stop_step is None:
            raise TypeError("an endless training stream has no length")
        return max(0, self.stop_step - self.start_step)


class TrainSamples(Dataset):
    """Reads and weakly augments one sample given its key ``(stream, index, position)``."""

    def __init__(self, labeled: SegmentationSource, unlabeled: SegmentationSource | None, crop: int, seed: int,
                 crops_unlabeled: int = 1, scale_range: tuple[float, float] = (0.5, 2.0)):
        if crops_unlabeled not in (1, 2):
            raise ValueError(f"crops_unlabeled must be 1 or 2, got {crops_unlabeled}")
        self.labeled, self.unlabeled = labeled, unlabeled
        self.crop, self.seed, self.crops_unlabeled = crop, _seed_entropy(seed), crops_unlabeled
        self.scale_range = tuple(scale_range)

    def __len__(self) -> int:
        return len(self.labeled) + (len(self.unlabeled) if self.unlabeled is not None else 0)

    def __getitem__(self, key: SampleKey) -> dict:
        stream, index, position = key
        if stream == LABELED:
            image, mask = self.labeled.read(index)
            raw, label, valid = weak_augment(image, mask, self.crop, sample_rng(self.seed, LABELED, position),
                                             self.scale_range)
            return {"stream": LABELED, "raw": raw, "label": label, "valid": valid, "index": index}
        image = self.unlabeled.read_image(index)
        raw, _, valid = weak_augment(image, None, self.crop, sample_rng(self.seed, UNLABELED, position, 0),
                                      self.scale_range)
        out = {"stream": UNLABELED, "raw": raw, "valid": valid, "index": index}
        if self.crops_unlabeled == 2:
            raw2, _, valid2 = weak_augment(image, None, self.crop, sample_rng(self.seed, UNLABELED, position, 1),
                                              self.scale_range)
            out.update(raw2=raw2, valid2=valid2)
        return out


def collate_step(samples: Sequence[dict]) -> tuple[dict, dict | None]:
    """Stack the samples of one step into ``(labeled, unlabeled or None)`` dicts of tensors."""
    groups: dict[int, list[dict]] = {LABELED: [], UNLABELED: []}
    for s in samples:
        groups[s["stream"]].append(s)

    def stack(items: list[dict], keys: Sequence[str]) -> dict:
        out = {k: torch.stack([it[k] for it in items]) for k in keys}
        out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        return out

    labeled = stack(groups[LABELED], ("raw", "label", "valid"))
    unl = groups[UNLABELED]
    unlabeled = None
    if unl:
        keys = ("raw", "valid", "raw2", "valid2") if "raw2" in unl[0] else ("raw", "valid")
        unlabeled = stack(unl, keys)
    return labeled, unlabeled


def data_check_hint(protocol: Protocol, root: str | Path) -> str:
    """What a read error during training adds: the command that finds every such file before a run."""
    from .registry import get_dataset

    splits = "" if get_dataset(protocol).split_root is not None else " (and --splits-dir, if the run has one)"
    return (f"`harness data check --protocol {protocol.id} --data-root {root}`{splits} lists every missing or "
            f"unreadable file of the protocol at once; fix them all, then rerun (a run resumes from its last "
            f"checkpoint)")


class TrainLoader:
    """Iterable of ``(labeled, unlabeled | None)`` per step from ``start_step``; see the module docstring.

    ``labeled``: ``raw`` uint8 B×3×H×W, ``label`` long B×H×W (255 = ignore), ``valid`` bool B×H×W,
    ``index`` long B (indices into the labeled list). ``unlabeled``: ``raw``, ``valid``, ``index`` and,
    with two crops, ``raw2``, ``valid2``.
    """

    def __init__(self, samples: TrainSamples, streams: TrainStreams, start_step: int = 0,
                 stop_step: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None, rank: int = 0, world: int = 1):
        self.samples, self.streams = samples, streams
        self.start_step, self.stop_step = start_step, stop_step
        self.batch_sampler = StepBatchSampler(streams, start_step, stop_step, rank, world)
        kwargs = {}
        if num_workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor or 2)
        # A private generator: creating an iterator draws a base seed from it, which would otherwise come from
        # torch's global RNG and shift the methods' random draws between a resumed and an uninterrupted run.
        self.loader = DataLoader(samples, batch_sampler=self.batch_sampler, num_workers=num_workers,
                                 collate_fn=collate_step, pin_memory=pin_memory, generator=torch.Generator(),
                                 **kwargs)

    def __iter__(self) -> Iterator[tuple[dict, dict | None]]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.batch_sampler)


def build_train_loader(protocol: Protocol, data_root: str | Path | None, split_root: str | Path, seed: int,
                       start_step: int = 0, crops_unlabeled: int = 1, num_workers: int = 0, cache: bool = False,
                       stop_step: int | None = None, pin_memory: bool = False, check_files: bool = True,
                       include_unlabeled: bool = True, rank: int = 0, world: int = 1) -> TrainLoader:
    """The training stream of ``protocol`` (split files verified against their checksums; lists disjoint).

    ``include_unlabeled=False`` (methods that ignore unlabeled data): ``unlabeled`` is None and no
    unlabeled image is read; the labeled batches are the same as with unlabeled data.
    ``stop_step``: end before this step (default: endless). ``rank``/``world``: each rank reads its
    contiguous share of every global batch (both batch sizes must be divisible by ``world``).
    """
    b = protocol.budget
    if world > 1 and (b.batch_labeled % world or (include_unlabeled and b.batch_unlabeled % world)):
        raise DataError(f"protocol {protocol.id}: global batch {b.batch_labeled} + {b.batch_unlabeled} cannot be "
                        f"split evenly over {world} processes")
    root = resolve_data_root(protocol.dataset, data_root)
    splits = load_protocol_splits(protocol, split_root)
    if not include_unlabeled:
        splits["unlabeled"] = None
    elif splits["unlabeled"] is not None and b.unlabeled_pool is not None:
        # after the checksum of the whole list: a prefix of a verified list (the protocol validated the size)
        splits["unlabeled"] = splits["unlabeled"][:b.unlabeled_pool]
    s = protocol.splits
    split_root = Path(split_root)
    hint = data_check_hint(protocol, root)
    labeled = SegmentationSource(root, splits["labeled"], protocol.num_classes, protocol.dataset,
                                 split_name=str(split_root / s.labeled.path), masks=True, cache=cache,
                                 check_files=check_files, check_hint=hint)
    unlabeled = None
    if splits["unlabeled"] is not None:
        unlabeled = SegmentationSource(root, splits["unlabeled"], protocol.num_classes, protocol.dataset,
                                       split_name=str(split_root / s.unlabeled.path), masks=False, cache=cache,
                                       check_files=check_files, check_hint=hint)
    streams = TrainStreams(seed, len(labeled), protocol.budget.batch_labeled,
                           len(unlabeled) if unlabeled is not None else 0, protocol.budget.batch_unlabeled)
    samples = TrainSamples(labeled, unlabeled, protocol.crop_size, seed, crops_unlabeled, protocol.scale_range)
    return TrainLoader(samples, streams, start_step, stop_step, num_workers, pin_memory, rank=rank, world=world)


# ----------------------------------------------------------------------------------------------- validation

class ValDataset(Dataset):
    """Every val image once: ``(raw uint8 3×H×W, label long H×W, name)`` at the original resolution."""

    def __init__(self, source: SegmentationSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, mask = self.source.read(i)
        raw, label = to_tensors(image, mask)
        return raw, label, self.source.name(i)


EVAL_SPLITS = ("val", "labeled", "unlabeled", "selection")


def build_val_dataset(protocol: Protocol, data_root: str | Path | None, split_root: str | Path,
                      cache: bool = False, check_files: bool = True, split: str = "val") -> ValDataset:
    """Every image of one of the protocol's lists with its mask, unaugmented. ``split`` is ``val`` (the
    evaluation set), ``selection`` (held-out training images that choose a checkpoint) or, for diagnostics such as pseudo-label quality, ``labeled`` / ``unlabeled``: their
    masks must exist (they do for the synthetic set, VOC's SegmentationClassAug and Cityscapes train)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    spec = getattr(protocol.splits, split)
    if spec is None:
        raise DataError(f"protocol {protocol.id} has no {split} list")
    root = resolve_data_root(protocol.dataset, data_root)
    entries = verify_split(split_root, spec)
    source = SegmentationSource(root, entries, protocol.num_classes, protocol.dataset,
                                split_name=str(Path(split_root) / spec.path), masks=True,
                                cache=cache, check_files=check_files, check_hint=data_check_hint(protocol, root))
    return ValDataset(source)


def shard(n: int | Sequence, rank: int, world: int) -> list[int]:
    """Indices of rank ``rank`` of ``world``: ``rank, rank+world, …`` (no padding, no duplicates)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    total = n if isinstance(n, int) else len(n)
    return list(range(rank, total, world))


class _IndexSampler(Sampler):
    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _collate_val(items):
    raw, label, name = items[0]
    return raw.unsqueeze(0), label.unsqueeze(0), [name]


def val_loader(dataset: ValDataset, rank: int = 0, world: int = 1, num_workers: int = 0,
               pin_memory: bool = False) -> DataLoader:
    """Batch-1 loader over this rank's shard: yields ``(raw 1×3×H×W uint8, label 1×H×W long, [name])``."""
    return DataLoader(dataset, batch_size=1, sampler=_IndexSampler(shard(len(dataset), rank, world)),
                      num_workers=num_workers, collate_fn=_collate_val, pin_memory=pin_memory)
