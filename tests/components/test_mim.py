"""CMIM inputs, reconstruction head and loss (s4mim spec §3.3, W1, W2; combined spec §8 L_rec^h)."""

import pytest
import torch
from torch import nn

from methods.components.masking import ClassSamples, class_partition, expand_cell_mask
from methods.components.mim import (
    ReconstructionHead,
    build_mim_inputs,
    cmim_inputs,
    mean_over_used,
    mim_reconstruction_losses,
    reconstruction_loss_per_sample,
)


def w1():
    pseudo = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])[None]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 3, 3] = False
    mask = expand_cell_mask(torch.tensor([[[True, False], [False, True]]]), 4, 4, 2)
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    samples = class_partition(pseudo, valid, num_classes=2)
    return x, valid, mask, samples


def test_w1_classwise_inputs():
    x, _, mask, s = w1()
    inp = cmim_inputs(x, s, mask.expand(2, 4, 4))
    assert inp.shape == (2, 3, 4, 4)
    e0 = torch.zeros(4, 4)
    e0[0, 2], e0[2, 0] = 2, 8
    e1 = torch.zeros(4, 4)
    for (i, j), v in zip([(0, 3), (1, 2), (1, 3), (2, 1), (3, 0), (3, 1)], [3, 6, 7, 9, 12, 13]):
        e1[i, j] = v
    for c in range(3):
        assert torch.equal(inp[0, c], e0) and torch.equal(inp[1, c], e1)
    assert torch.equal(build_mim_inputs("classwise", x, s, mask.expand(2, 4, 4)), inp)
    shared = build_mim_inputs("shared", x, None, mask)
    assert torch.equal(shared[0, 0], x[0, 0] * ~mask[0])


def test_w2_reconstruction_loss():
    x, valid, mask, s = w1()
    masks = mask.expand(2, 4, 4)
    x_hat = torch.zeros(2, 3, 4, 4)
    values, used = reconstruction_loss_per_sample(x_hat, x, s.region, masks, batch_index=s.batch_index)
    assert torch.allclose(values, torch.tensor([2.5, 35 / 3]))
    assert used.all()
    assert mean_over_used(values, used).item() == pytest.approx(85 / 12)
    out = mim_reconstruction_losses("classwise", x_hat, x, s, masks)
    assert out.mean().item() == pytest.approx(85 / 12)
    assert out.batch_index.tolist() == [0, 0]
    # l2: squared error, same normaliser
    v2, _ = reconstruction_loss_per_sample(x_hat, x[s.batch_index], s.region, masks, loss="l2")
    assert torch.allclose(v2, torch.tensor([(0 + 1 + 16 + 25) / 4, (100 + 121 + 196) / 3]))


def test_modes_shared_and_plain():
    x, valid, mask, s = w1()
    x_hat = torch.zeros(1, 3, 4, 4)
    shared = mim_reconstruction_losses("shared", x_hat, x, s, mask)
    assert torch.allclose(shared.values, torch.tensor([2.5, 35 / 3]))
    plain = mim_reconstruction_losses("plain", x_hat, x, s, mask, valid=valid)
    # masked valid pixels: 0, 1, 4, 5, 10, 11, 14 ((3,3) is padding)
    assert plain.values.tolist() == pytest.approx([45 / 7]) and plain.batch_index.tolist() == [0]
    # loss_keep removes pixels from the loss only
    keep = torch.ones(1, 4, 4, dtype=torch.bool)
    keep[0, 0, 0] = False
    kept = mim_reconstruction_losses("classwise", torch.zeros(2, 3, 4, 4), x, s, mask.expand(2, 4, 4), loss_keep=keep)
    assert torch.allclose(kept.values, torch.tensor([10 / 3, 35 / 3]))


def test_unused_samples_and_empty():
    x, _, _, s = w1()
    no_mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    x_hat = torch.zeros(2, 3, 4, 4, requires_grad=True)
    out = mim_reconstruction_losses("classwise", x_hat, x, s, no_mask)
    assert not out.used.any() and torch.equal(out.values, torch.zeros(2))
    loss = out.mean()
    loss.backward()
    assert loss.item() == 0 and torch.equal(x_hat.grad, torch.zeros_like(x_hat))
    empty = ClassSamples(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4, 4, dtype=torch.bool))
    e = mim_reconstruction_losses("classwise", torch.zeros(0, 3, 4, 4), x, empty, torch.zeros(0, 4, 4, dtype=torch.bool))
    assert e.mean().item() == 0 and e.weighted_mean(torch.ones(1)).item() == 0


def test_combined_rec_weighted_mean():
    # image 0: W1/W2 (2.5, 35/3); image 1: one class (all pixels), x = 1, x̂ = 0 -> ℓ = 1.0
    x0, valid0, mask0, _ = w1()
    pseudo = torch.stack([torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]), torch.zeros(4, 4, dtype=torch.long)])
    valid = torch.cat([valid0, torch.ones(1, 4, 4, dtype=torch.bool)])
    x = torch.cat([x0, torch.ones(1, 3, 4, 4)])
    s = class_partition(pseudo, valid, num_classes=2)
    assert s.batch_index.tolist() == [0, 0, 1]
    masks = torch.cat([mask0, mask0, mask0])
    out = mim_reconstruction_losses("classwise", torch.zeros(3, 3, 4, 4), x, s, masks)
    assert torch.allclose(out.values, torch.tensor([2.5, 35 / 3, 1.0]))
    h = torch.tensor([0.5, 0.8])
    assert out.weighted_mean(h).item() == pytest.approx(473 / 180)
    assert out.mean().item() == pytest.approx(91 / 18)
    assert out.weighted_mean(torch.ones(2)).item() == pytest.approx(out.mean().item())


def test_reconstruction_head_shapes():
    head = ReconstructionHead(8, scale=4)
    assert head.conv.out_channels == 48 and head.conv.bias is not None
    f = torch.randn(2, 8, 5, 6)
    full = head(f)
    assert full.shape == (2, 3, 20, 24)
    assert torch.equal(head(f, (17, 21)), full[..., :17, :21])
    assert head(f, (22, 21)).shape == (2, 3, 22, 21)  # too small in H: resized
    # PixelShuffle layout: output pixel (4i+a, 4j+b) of channel c = conv channel c·16 + 4a + b at (i, j)
    conv = head.conv(f)
    assert torch.allclose(full[:, 1, 4 * 2 + 3, 4 * 1 + 2], conv[:, 16 + 4 * 3 + 2, 2, 1])


class TinyNet(nn.Module):
    """Stand-in for ``model.features``: stride-4 features of C channels."""

    def __init__(self, c=6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1))

    def forward(self, x):
        return self.body(x)


def test_gradient_only_through_masked_pixels_of_the_class():
    torch.manual_seed(0)
    H = W = 16
    x = torch.randn(1, 3, H, W)
    pseudo = torch.zeros(1, H, W, dtype=torch.long)
    pseudo[:, :, 8:] = 1
    valid = torch.ones(1, H, W, dtype=torch.bool)
    s = class_partition(pseudo, valid, num_classes=2)
    checker = (torch.arange(4).view(4, 1) + torch.arange(4)) % 2 == 0
    masks = expand_cell_mask(checker, H, W, 4).expand(2, H, W)  # 4×4 checkerboard, (0, 0) masked
    net, head = TinyNet(), ReconstructionHead(6, scale=4)
    inp = cmim_inputs(x, s, masks)
    x_hat = head(net(inp), (H, W))
    x_hat.retain_grad()
    out = mim_reconstruction_losses("classwise", x_hat, x, s, masks)
    out.mean().backward()
    allowed = (masks & s.region).unsqueeze(1).expand_as(x_hat)
    g = x_hat.grad
    assert torch.all(g[~allowed] == 0)
    assert torch.all(g[allowed] != 0)
    for name, p in [*net.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    # perturbing a prediction outside M∧R leaves the loss unchanged, inside changes it
    with torch.no_grad():
        base = mim_reconstruction_losses("classwise", x_hat, x, s, masks).values
        pert = x_hat.clone()
        pert[0, :, 6, 2] += 5.0  # class-0 sample, visible pixel of class 0
        pert[0, :, 2, 8] += 5.0  # class-0 sample, masked pixel of class 1
        pert[1, :, 2, 2] += 5.0  # class-1 sample, masked pixel of class 0
        assert torch.equal(mim_reconstruction_losses("classwise", pert, x, s, masks).values, base)
        pert[0, :, 2, 2] += 5.0  # masked pixel of class 0
        assert mim_reconstruction_losses("classwise", pert, x, s, masks).values[0] != base[0]

    # pixels of another class never reach a class-sample's input
    x2 = x.clone()
    x2[0, :, :, 8:] += 3.0
    assert torch.equal(cmim_inputs(x2, s, masks)[0], inp[0])


def test_invalid_mode():
    x, _, mask, s = w1()
    with pytest.raises(ValueError):
        build_mim_inputs("other", x, s, mask)
