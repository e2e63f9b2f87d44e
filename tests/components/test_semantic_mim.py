"""Semantic-space MIM (s4mim spec §3.5, W5; combined spec §8 L_sem^h)."""

import math

import pytest
import torch

from methods.components.masking import expand_cell_mask
from methods.components.semantic_mim import reduce_semantic_mim, semantic_mim_inputs, semantic_mim_loss_terms


def logits_with_ce(ce: torch.Tensor, target: torch.Tensor, K: int = 3) -> torch.Tensor:
    """B×K×H×W logits (log-probabilities) whose per-pixel CE against ``target`` equals ``ce``."""
    p_t = torch.exp(-ce.double())
    rest = ((1 - p_t) / (K - 1)).unsqueeze(1).expand(-1, K, -1, -1).clone()
    probs = rest.scatter(1, target.unsqueeze(1), p_t.unsqueeze(1))
    return probs.log()


def w5_image():
    ce = torch.tensor([[[0.3, 0.7], [0.1, 0.9]]])
    pseudo = torch.tensor([[[0, 1], [2, 1]]])
    conf = torch.tensor([[[0.99, 0.50], [0.97, 0.99]]])
    valid = torch.tensor([[[True, True], [True, False]]])
    return ce, pseudo, conf, valid


def test_inputs():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 3, 1, 1)
    mask = expand_cell_mask(torch.tensor([[[True, False], [False, True]], [[False, False], [False, False]]]), 4, 4, 2)
    out = semantic_mim_inputs(x, mask)
    assert torch.equal(out[0, 2], x[0, 2] * ~mask[0]) and torch.equal(out[1], x[1])
    with pytest.raises(ValueError):
        semantic_mim_inputs(x, mask[:1])


def test_w5():
    ce, pseudo, conf, valid = w5_image()
    logits = logits_with_ce(ce, pseudo)
    num, cnt = semantic_mim_loss_terms(logits, pseudo, conf, valid, tau=0.95)
    assert num.tolist() == pytest.approx([0.4], abs=1e-6) and cnt.tolist() == [3]
    assert reduce_semantic_mim(num, cnt).item() == pytest.approx(0.4 / 3, abs=1e-6)
    num0, cnt0 = semantic_mim_loss_terms(logits, pseudo, conf, valid, tau=0.0)
    assert reduce_semantic_mim(num0, cnt0).item() == pytest.approx(1.1 / 3, abs=1e-6)


def test_combined_weighted_reduction_and_gradient():
    ce0, p0, c0, v0 = w5_image()
    ce = torch.cat([ce0, torch.full((1, 2, 2), 0.2)])
    pseudo = torch.cat([p0, torch.zeros(1, 2, 2, dtype=torch.long)])
    conf = torch.cat([c0, torch.ones(1, 2, 2)])
    valid = torch.cat([v0, torch.ones(1, 2, 2, dtype=torch.bool)])
    logits = logits_with_ce(ce, pseudo).float().requires_grad_(True)
    num, cnt = semantic_mim_loss_terms(logits, pseudo, conf, valid, tau=0.95)
    assert num.tolist() == pytest.approx([0.4, 0.8], abs=1e-5) and cnt.tolist() == [3, 4]
    h = torch.tensor([0.5, 0.8])
    weighted = reduce_semantic_mim(num, cnt, h)
    assert weighted.item() == pytest.approx(0.12, abs=1e-6)
    assert reduce_semantic_mim(num, cnt).item() == pytest.approx(1.2 / 7, abs=1e-6)
    weighted.backward()
    g = logits.grad.abs().sum(1)
    assert g[0, 0, 1] == 0 and g[0, 1, 1] == 0  # below τ / padding: no gradient
    assert g[0, 0, 0] > 0 and g[1].min() > 0
    assert math.isclose(reduce_semantic_mim(num[:0], cnt[:0]).item(), 0.0)
