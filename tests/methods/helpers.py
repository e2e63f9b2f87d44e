"""Small fixtures shared by the method tests: a tiny model, a CPU context and padded 32×32 crops."""

import contextlib

import torch

from harness.augment import normalize
from harness.train.losses import cross_entropy
from harness.method import Batch, MethodContext
from harness.models import build_model
from harness.protocols import ModelSpec

S = 32
# Kaiming decoder init, as the synthetic protocols (the worked examples below were written against it).
SPEC = ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False, deep_stem=False,
                 decoder_init="kaiming")


def make_context(num_classes, total_steps=100, iters_per_epoch=10, crop_size=S):
    return MethodContext(device=torch.device("cpu"), num_classes=num_classes, total_steps=total_steps,
                         iters_per_epoch=iters_per_epoch, crop_size=crop_size, dataset="synthetic",
                         supervised_loss=cross_entropy, model_factory=lambda: build_model(SPEC, num_classes),
                         autocast=contextlib.nullcontext)


def make_batch(n, labeled, seed, num_classes, pad_rows=20, second=False):
    """n crops; the first is padded below row ``pad_rows`` (valid False, raw 0, label 255)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (n, 3, S, S), dtype=torch.uint8, generator=g)
    valid = torch.ones(n, S, S, dtype=torch.bool)
    valid[0, pad_rows:] = False
    raw[0, :, pad_rows:] = 0
    label = None
    if labeled:
        label = torch.randint(0, num_classes, (n, S, S), generator=g)
        label[~valid] = 255
    batch = Batch(raw=raw, image=normalize(raw), valid=valid, label=label)
    if second:  # the second crop is padded elsewhere, so V' differs from V
        batch.second = make_batch(n, False, seed + 1000, num_classes, pad_rows=8)
    return batch


def sgd_step(method, opt, step, labeled, unlabeled):
    """One engine-like step: training_step, backward, SGD update, after_step."""
    out = method.training_step(labeled, unlabeled, step)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    opt.step()
    method.after_step(step)
    return out


def params_and_buffers(module):
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}
