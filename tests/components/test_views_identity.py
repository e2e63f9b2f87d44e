"""The in-place strong views (harness/augment.py kernels, ``apply_unimatch_params``, ``paste_boxes``,
``UniMatch.make_views``) give bit for bit what the code before the rewrite gave on the same inputs and draws
(``augment_reference``, that code kept as it was)."""

import pytest
import torch

from harness import augment as A
from harness.data.transforms import normalize
from harness.method import Batch
from methods.unimatch import UniMatch
from tests.components import augment_reference as R


def _batch(g, b, h, w, greys=False):
    x = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    x[:, :, 0, 0] = 0  # extremes and achromatic pixels, the HSV conversion's special cases
    x[:, :, 0, -1] = 255
    if greys:
        x[:, 1] = x[:, 0]
        x[: b // 2, 2] = x[: b // 2, 0]
    return x


def _equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_ops_equal_reference(dtype):
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        b = 1 + trial % 5
        h, w = (int(v) for v in torch.randint(3, 40, (2,), generator=g))
        x = _batch(g, b, h, w, greys=trial % 3 == 0).to(dtype)
        if dtype == torch.float32:  # off-grid values are rounded and clipped on entry
            x[:, :, 1, 1] = torch.tensor([-3.0, 255.6, 17.4])
        f = 2.0 * torch.rand(b, generator=g, dtype=torch.float64)
        shift = torch.randint(-128, 128, (b,), generator=g)
        sigma = 0.1 + 1.9 * torch.rand(b, generator=g, dtype=torch.float64)
        assert _equal(A.luma(x), R.luma(x))
        for name in ("brightness", "contrast", "color", "sharpness"):
            assert _equal(getattr(A, name)(x, f), getattr(R, name)(x, f)), name
        assert _equal(A.grayscale(x), R.grayscale(x))
        assert _equal(A.hue(x, shift), R.hue(x, shift))
        assert _equal(A.gaussian_blur(x, sigma), R.gaussian_blur(x, sigma))


def _colours(n, seed):
    """n random colours and every grey, as a 1×3×1×N batch."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 256, (3, n), generator=g, dtype=torch.uint8)
    greys = torch.arange(256, dtype=torch.uint8).expand(3, 256)
    return torch.cat([c, greys], dim=1).view(1, 3, 1, -1)


@pytest.mark.parametrize("shift", [-63, -1, 0, 1, 25, 63, 128])
def test_hue_equals_reference_on_many_colours(shift):
    x = _colours(1 << 18, shift + 1000)
    assert _equal(A.hue(x, shift), R.hue(x, shift))


@pytest.mark.slow
def test_hue_halves_equal_reference_on_every_input():
    """The float32 RGB→HSV on all 2^24 colours and HSV→RGB on all 2^24 (h, s, v) triples equal the integer
    versions of the previous code; the shift between them is an exact integer remainder, so the hue op equals
    the previous one for every colour and shift."""
    v = torch.arange(1 << 24, dtype=torch.int64)
    triples = torch.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255])
    for chunk in triples.split(1 << 21, dim=1):
        x = chunk.to(torch.float32).reshape(1, 3, 1, -1)
        for new, old in zip(A._rgb_to_hsv_f(x), R.rgb_to_hsv8(x)):
            assert torch.equal(new, old.to(torch.float32))
        h, s, val = x.unbind(1)
        out = torch.empty_like(x)
        A._hsv_to_rgb_f_(out, h.clone(), s, val)
        assert torch.equal(out, R.hsv8_to_rgb(h, s, val))


def test_unimatch_views_equal_reference():
    g = torch.Generator().manual_seed(1)
    for trial in range(16):
        b = 1 + trial % 8
        h, w = (int(v) for v in torch.randint(4, 70, (2,), generator=g))
        x = _batch(g, b, h, w, greys=trial % 4 == 0)
        p = A.sample_unimatch_params(b, g)
        ref = R.apply_unimatch_params(x, p)
        assert _equal(A.apply_unimatch_params(x, p), ref)
        assert _equal(A.apply_unimatch_params(x.float(), p), R.apply_unimatch_params(x.float(), p))
        assert _equal(A.apply_unimatch_params(x, p, normalized=True), normalize(ref))
        rows = list(range(0, b, 2))
        part = A.apply_unimatch_params(x, p, normalized=True, images=rows)
        assert _equal(part[rows], normalize(ref)[rows])


def test_unimatch_view_params_must_match_the_batch():
    with pytest.raises(ValueError, match="do not match the batch size 3"):
        A.apply_unimatch_params(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), A.sample_unimatch_params(2))
    with pytest.raises(ValueError, match="B×3×H×W"):
        A.apply_unimatch_params(torch.zeros(3, 4, 4, dtype=torch.uint8), A.sample_unimatch_params(3))


def _unlabeled(seed, b=6, s=37):
    g = torch.Generator().manual_seed(seed)
    raw, raw2 = _batch(g, b, s, s), _batch(g, b, s, s)
    valid = torch.ones(b, s, s, dtype=torch.bool)
    second = Batch(raw=raw2, image=normalize(raw2), valid=valid)
    return Batch(raw=raw, image=normalize(raw), valid=valid, second=second)


@pytest.mark.parametrize("source", ["second_crop", "shuffled"])
def test_make_views_equal_reference(source):
    method = UniMatch.__new__(UniMatch)  # make_views reads only the config
    method.config = UniMatch.Config(cutmix_source=source)
    for seed in range(8):
        unlabeled = _unlabeled(seed)
        torch.manual_seed(seed)
        ref = R.make_views(method, unlabeled)
        ref_rng = torch.get_rng_state()
        torch.manual_seed(seed)
        views = method.make_views(unlabeled)
        assert torch.equal(torch.get_rng_state(), ref_rng)  # the same draws, so later draws are unchanged too
        for new, old in zip((views.x_s1, views.x_s2, views.box1, views.box2), ref):
            assert _equal(new, old)


def test_box_coords_are_the_reference_masks():
    for seed in range(40):
        size = [(37, 53), 64, (5, 5), (321, 200)][seed % 4]
        p = 1.0 if seed % 3 == 0 else 0.5
        g, g_ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        boxes = A.unimatch_cutmix_box_coords(9, size, p, g)
        ref = R.unimatch_cutmix_boxes(9, size, p, g_ref)
        assert torch.equal(g.get_state(), g_ref.get_state())  # the same rejection rounds drew the same numbers
        assert _equal(A.box_masks(boxes, size), ref)
        assert _equal(A.unimatch_cutmix_boxes(9, size, p, torch.Generator().manual_seed(seed)), ref)
        assert A.boxed_rows(boxes) == [b for b in range(9) if ref[b].any()]


def test_paste_boxes_equals_where_of_the_masks():
    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[2, 3, 4, 5], [0, 0, 0, 0], [0, 0, 7, 9], [6, 8, 1, 1]])
    mask = A.box_masks(boxes, (7, 9))
    for shape in ((4, 3, 7, 9), (4, 7, 9)):
        dst, src = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
        m = mask if len(shape) == 3 else mask.unsqueeze(1)
        expected = torch.where(m, src, dst)
        src_before = src.clone()
        out = A.paste_boxes(dst, src, boxes)
        assert out is dst and torch.equal(dst, expected) and torch.equal(src, src_before)
    assert int(mask[1].sum()) == 0 and bool(mask[2].all()) and int(mask[3].sum()) == 1


def test_paste_boxes_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        A.paste_boxes(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected 2×4 boxes"):
        A.paste_boxes(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), torch.zeros(3, 4, dtype=torch.int64))
