"""Split seeds and the selection split: the seeded procedure that draws them from a dataset's training images.

A labeled list is one draw, and results depend on it. A *split seed* is another draw of the same size, made by a
documented procedure so that anyone gets the same lists (and the protocol pins their SHA-256). The *selection
split* is a set of training images held out from every labeled list (and never from val) whose labels are used only
to choose a checkpoint (``--metric selected``).

The procedure, used by the synthetic dataset (:mod:`harness.data.synthetic`) and by ``harness data draw-splits``
for VOC and Cityscapes (:mod:`harness.data.draw_splits`); every draw uses numpy's ``Generator(PCG64)`` seeded with
``SeedSequence([*key, tag, ...])``, ``key`` naming the dataset (and its version):

1. *selection*: sort the ids of the pool it may come from (training images outside every labeled list the draws
   must avoid), draw ``count`` of them without replacement (``tag`` :data:`SELECTION_TAG`);
2. *split seed k*: sort the ids of the labeled pool minus the selection split and permute them with
   ``SeedSequence([*key, SPLIT_SEED_TAG, k, attempt])``; the labeled list of size ``n`` is the first ``n`` of the
   permutation (so one seed's lists are nested, 100 ⊂ 200 ⊂ …, like the published ones). ``accept(labeled ids of
   the smallest size)`` may refuse a permutation (the synthetic set: every class must be present, as its standard
   lists); then ``attempt`` goes up by one. The unlabeled list is every training image not in the labeled list
   (selection images included: their labels are never read by training, only by the choice of checkpoint).

Lists hold ids sorted by name. Nothing here reads images or files.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import DataError

SELECTION_TAG = 2000
SPLIT_SEED_TAG = 1000
MAX_ATTEMPTS = 10_000


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(entropy))))


def draw_selection(pool: Sequence[str], count: int, key: Sequence[int]) -> list[str]:
    """``count`` ids drawn without replacement from ``pool`` (sorted first, so its order does not matter)."""
    ids = sorted(set(pool))
    if count > len(ids):
        raise DataError(f"cannot draw a selection split of {count} images from {len(ids)} training images outside "
                        f"the labeled lists; ask for at most {len(ids)}")
    picked = _rng(*key, SELECTION_TAG).choice(len(ids), size=count, replace=False)
    return sorted(ids[i] for i in picked)


def draw_split_seed(labeled_pool: Sequence[str], counts: Sequence[int], seed: int, key: Sequence[int],
                    accept: Callable[[list[str]], bool] | None = None) -> tuple[dict[int, list[str]], int]:
    """``({n: labeled ids}, attempt)`` of split seed ``seed``: prefixes of one permutation of ``labeled_pool``."""
    ids = sorted(set(labeled_pool))
    counts = sorted(set(counts))
    if not counts or counts[-1] > len(ids) or counts[0] < 1:
        raise DataError(f"split seed {seed}: labeled counts {counts} must lie between 1 and the {len(ids)} images "
                        f"of the pool they are drawn from")
    for attempt in range(MAX_ATTEMPTS):
        perm = [ids[i] for i in _rng(*key, SPLIT_SEED_TAG, seed, attempt).permutation(len(ids))]
        if accept is None or accept(perm[:counts[0]]):
            return {n: sorted(perm[:n]) for n in counts}, attempt
    raise DataError(f"split seed {seed}: no draw of {counts[0]} images out of {len(ids)} was accepted in "
                    f"{MAX_ATTEMPTS} attempts (the synthetic set needs every class in the smallest list)")


def unlabeled_of(train: Sequence[str], labeled: Sequence[str]) -> list[str]:
    """The training ids outside ``labeled``, sorted."""
    lab = set(labeled)
    return sorted(i for i in set(train) if i not in lab)
