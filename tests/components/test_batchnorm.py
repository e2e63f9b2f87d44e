"""BN running-statistics freeze for masked forwards (s4mim spec §3.6)."""

import copy

import torch
from torch import nn

from methods.components.batchnorm import bn_modules, frozen_bn_stats


def make_net(momentum=0.1):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.SyncBatchNorm(4, momentum=momentum),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
    )


def buffers(net):
    return {k: v.clone() for k, v in net.named_buffers()}


def warm(net):
    net.train()
    net(torch.randn(4, 3, 6, 6) * 2 + 1)  # make running stats non-trivial


def test_frozen_inside_changed_outside():
    for momentum in (0.1, None):
        net = make_net(momentum)
        warm(net)
        before = buffers(net)
        x = torch.randn(3, 3, 6, 6) * 3 - 1
        with frozen_bn_stats(net):
            out = net(x)
            out.square().mean().backward()
        after = buffers(net)
        assert before.keys() == after.keys() and len(before) == 6
        for k in before:
            assert torch.equal(before[k], after[k]), k
        assert all(m.track_running_stats for m in bn_modules(net))
        net(x).sum().backward()
        changed = buffers(net)
        assert all(not torch.equal(before[k], changed[k]) for k in before)


def test_same_output_and_gradients_as_a_train_mode_forward():
    net = make_net()
    warm(net)
    ref = copy.deepcopy(net)
    x = torch.randn(3, 3, 6, 6) * 3 - 1
    with frozen_bn_stats(net):
        out = net(x)
    loss = out.square().mean()
    loss.backward()  # backward after leaving the context
    ref_out = ref(x)
    ref_out.square().mean().backward()
    assert torch.allclose(out, ref_out, atol=1e-6)
    for (n, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), n


def test_eval_mode_inside_uses_running_stats_and_nesting():
    net = make_net()
    warm(net)
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    expected = net(x)
    before = buffers(net)
    with frozen_bn_stats(net):
        with frozen_bn_stats(net):
            assert torch.allclose(net(x), expected)
        net.train()
        net(x)
        assert not any(m.track_running_stats for m in bn_modules(net))
    assert all(m.track_running_stats for m in bn_modules(net))
    assert all(torch.equal(before[k], v) for k, v in buffers(net).items())
    with frozen_bn_stats(net, enabled=False):
        net(x)
    assert not torch.equal(before["1.running_mean"], net[1].running_mean)


def test_restored_after_exception():
    net = make_net()
    try:
        with frozen_bn_stats(net):
            raise RuntimeError
    except RuntimeError:
        pass
    assert all(m.track_running_stats for m in bn_modules(net))
