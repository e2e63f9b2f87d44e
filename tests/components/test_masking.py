"""Patch masks and class partition (s4mim spec §3.1–3.2, worked examples W1 and W4)."""

import pytest
import torch

from methods.components.masking import (
    ClassSamples,
    class_partition,
    class_sample_masks,
    expand_cell_mask,
    partition_from_labels,
    patch_mask,
)


def w1():
    pseudo = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])[None]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 3, 3] = False
    mask = expand_cell_mask(torch.tensor([[[True, False], [False, True]]]), 4, 4, 2)
    return pseudo, valid, mask


def pixels(m):
    return {tuple(p) for p in m.nonzero().tolist()}


def test_w1_mask_expansion():
    _, _, mask = w1()
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[0], expected)


def test_w1_partition_regions_and_eligibility():
    pseudo, valid, mask = w1()
    s = class_partition(pseudo, valid, num_classes=2)
    assert len(s) == 2
    assert s.batch_index.tolist() == [0, 0] and s.class_index.tolist() == [0, 1]
    r0, r1 = s.region
    assert pixels(r0) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)}
    assert pixels(r1) == {(0, 3), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 0), (3, 1), (3, 2)}
    m = mask[0]
    assert pixels(m & r0) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert pixels(~m & r0) == {(0, 2), (2, 0)}
    assert pixels(m & r1) == {(2, 2), (2, 3), (3, 2)}
    assert pixels(~m & r1) == {(0, 3), (1, 2), (1, 3), (2, 1), (3, 0), (3, 1)}


def test_patch_mask_grid_structure_and_rng():
    g = torch.Generator().manual_seed(0)
    m = patch_mask(3, 10, 7, 4, 0.5, generator=g)
    assert m.shape == (3, 10, 7) and m.dtype == torch.bool
    cells = m[:, ::4, ::4]  # 3×3 grid (partial border cells)
    assert torch.equal(expand_cell_mask(cells, 10, 7, 4), m)
    assert torch.equal(m, patch_mask(3, 10, 7, 4, 0.5, generator=torch.Generator().manual_seed(0)))
    assert not patch_mask(2, 8, 8, 2, 0.0).any() and patch_mask(2, 8, 8, 2, 1.0).all()
    torch.manual_seed(1)
    a = patch_mask(2, 8, 8, 2, 0.5)
    torch.manual_seed(1)
    assert torch.equal(a, patch_mask(2, 8, 8, 2, 0.5))
    big = patch_mask(1, 400, 400, 2, 0.3, generator=g)
    assert abs(big.float().mean().item() - 0.3) < 0.02


def _w4_image():
    pseudo = torch.zeros(1, 20, 20, dtype=torch.long)
    flat = pseudo.view(-1)
    flat[300:399] = 5
    flat[399] = 9
    return pseudo, torch.ones(1, 20, 20, dtype=torch.bool)


def test_w4_eligibility():
    pseudo, valid = _w4_image()
    s = class_partition(pseudo, valid, num_classes=10, k_max=3)
    assert s.class_index.tolist() == [0, 5]
    # threshold is max(1, f·|V|): with 4 pixels class 9 becomes eligible
    pseudo.view(-1)[296:300] = 9
    assert class_partition(pseudo, valid, num_classes=10).class_index.tolist() == [0, 5, 9]
    # padding does not count towards |V| nor towards the regions
    p2, v2 = _w4_image()
    v2.view(-1)[:300] = False  # class 0 is padding now; |V| = 100 -> threshold 1
    s2 = class_partition(p2, v2, num_classes=10)
    assert s2.class_index.tolist() == [5, 9]


def test_w4_kmax_sampling_exact_and_uniform():
    B = 1000
    pseudo = torch.arange(5).repeat_interleave(4).view(1, 4, 5).repeat(B, 1, 1) * 2  # 5 classes, 4 px each
    valid = torch.ones_like(pseudo, dtype=torch.bool)
    s = class_partition(pseudo, valid, num_classes=10, k_max=3, generator=torch.Generator().manual_seed(0))
    counts = s.counts_per_image(B)
    assert torch.all(counts == 3)
    assert set(s.class_index.tolist()) <= {0, 2, 4, 6, 8}
    freq = torch.bincount(s.class_index, minlength=10)[::2].float() / B
    assert torch.all((freq - 0.6).abs() < 0.06)  # each class kept with prob 3/5
    # no duplicates within an image
    key = s.batch_index * 10 + s.class_index
    assert key.unique().numel() == key.numel()
    for r, b, k in zip(s.region, s.batch_index, s.class_index):
        assert torch.equal(r, pseudo[b] == k)


def test_max_samples_cap_and_empty():
    pseudo = torch.tensor([[0, 1], [2, 3]]).repeat(4, 1, 1)
    valid = torch.ones(4, 2, 2, dtype=torch.bool)
    s = class_partition(pseudo, valid, 4, k_max=2, max_samples=5)
    assert len(s) == 5
    key = (s.batch_index * 4 + s.class_index).tolist()
    assert key == sorted(key) and len(set(key)) == 5
    none = class_partition(pseudo, torch.zeros_like(valid), 4)
    assert len(none) == 0 and none.region.shape == (0, 2, 2)


def test_partition_from_labels_excludes_ignore():
    label = torch.tensor([[[0, 255], [1, 1]]])
    s = partition_from_labels(label, num_classes=2)
    assert s.class_index.tolist() == [0, 1]
    assert not s.region[:, 0, 1].any()
    with pytest.raises(ValueError):
        class_partition(label, torch.ones(1, 2, 2, dtype=torch.bool), 2)


def test_class_sample_masks_per_sample_or_per_image():
    s = ClassSamples(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.ones(3, 8, 8, dtype=torch.bool))
    g = torch.Generator().manual_seed(3)
    shared = class_sample_masks(s, 8, 8, 2, 0.5, per_class_sample=False, num_images=2, generator=g)
    assert torch.equal(shared[0], shared[1])
    indep = class_sample_masks(s, 8, 8, 2, 0.5, generator=torch.Generator().manual_seed(3))
    assert indep.shape == (3, 8, 8) and not torch.equal(indep[0], indep[1])
