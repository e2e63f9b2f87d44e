"""Evaluation modes and window arithmetic (benchmarks spec §6)."""

import numpy as np
import pytest
import torch
from torch import nn

from harness.evaluation.inference import center_crop_pair, evaluate, normalize, predict_scores, window_starts, windows
from harness.models import build_model
from harness.protocols import EvalSpec, ModelSpec

K = 4


def test_window_starts_spec_examples():
    assert window_starts(1024, 801, 534) == [0, 223]
    assert window_starts(2048, 801, 534) == [0, 534, 1068, 1247]
    assert window_starts(1024, 769, 512) == [0, 255]
    assert window_starts(2048, 769, 512) == [0, 512, 1024, 1279]
    assert window_starts(500, 801, 534) == [0] and window_starts(801, 801, 534) == [0]
    assert window_starts(802, 801, 534) == [0, 1]
    # reference (truncated) variant
    assert window_starts(1024, 801, 534, truncated=True) == [0, 534]
    assert window_starts(2048, 801, 534, truncated=True) == [0, 534, 1068, 1602]
    assert len(windows(1024, 2048, 801, 534)) == 8
    assert all(b - t == 801 and r - l == 801 for t, b, l, r in windows(1024, 2048, 801, 534))


@pytest.mark.parametrize("truncated", [False, True])
def test_windows_cover_and_stay_inside(truncated):
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 120, size=2)
        win, stride = int(rng.integers(5, 60)), int(rng.integers(1, 60))
        stride = min(stride, win)
        cover = np.zeros((h, w), int)
        for t, b, l, r in windows(int(h), int(w), win, stride, truncated):
            assert 0 <= t < b <= h and 0 <= l < r <= w
            if not truncated:
                assert (b - t, r - l) == (min(win, h), min(win, w))
            cover[t:b, l:r] += 1
        assert cover.min() >= 1


def small_model():
    torch.manual_seed(0)
    return build_model(ModelSpec(backbone="small", width=8, decoder_channels=16, pretrained=False), K).eval()


def dataset(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for h, w in sizes:
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        mask = torch.randint(0, K, (h, w), generator=g)
        mask[torch.rand(h, w, generator=g) < 0.1] = 255
        items.append((img, mask))
    return items


def test_slide_with_covering_window_equals_whole():
    m = small_model()
    data = dataset([(40, 56), (33, 47)])
    whole = evaluate(m, data, EvalSpec(mode="whole"), K, "cpu")
    slide = evaluate(m, data, EvalSpec(mode="slide", window=64, stride=42), K, "cpu")
    np.testing.assert_array_equal(whole["confusion_matrix"], slide["confusion_matrix"])
    assert whole["num_images"] == 2 and slide["mode"] == "slide64"


class PixelModel(nn.Module):
    """Per-pixel classifier: any window decomposition predicts exactly what the whole image does."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, K, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("mode", ["slide", "slide_truncated"])
def test_overlapping_windows_sum_probabilities(mode):
    m = PixelModel()
    data = dataset([(50, 71), (23, 90)])
    whole = evaluate(m, data, EvalSpec(mode="whole"), K, "cpu")
    slide = evaluate(m, data, EvalSpec(mode=mode, window=20, stride=13, batch_windows=3), K, "cpu")
    np.testing.assert_array_equal(whole["confusion_matrix"], slide["confusion_matrix"])
    # the summed probabilities of a pixel covered by n windows sum to n
    x = normalize(data[0][0]).unsqueeze(0)
    spec = EvalSpec(mode=mode, window=20, stride=13)
    scores = predict_scores(m, x, spec, K)
    cover = torch.zeros(50, 71)
    for t, b, l, r in windows(50, 71, 20, 13, truncated=mode == "slide_truncated"):
        cover[t:b, l:r] += 1
    torch.testing.assert_close(scores.sum(0), cover)


def test_batched_windows_equal_one_at_a_time():
    m = small_model()
    x = normalize(dataset([(45, 70)])[0][0]).unsqueeze(0)
    one = predict_scores(m, x, EvalSpec(mode="slide", window=32, stride=21, batch_windows=1), K)
    many = predict_scores(m, x, EvalSpec(mode="slide", window=32, stride=21, batch_windows=5), K)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)


def test_center_crop_pads_rather_than_shrinks():
    img = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8)
    mask = torch.randint(0, K, (375, 500))
    x, m = center_crop_pair(normalize(img).unsqueeze(0), mask, 513)
    assert x.shape == (1, 3, 513, 513) and m.shape == (513, 513)
    # symmetric padding: 138 rows -> 69 above, 69 below; 13 columns -> 6 left, 7 right
    torch.testing.assert_close(m[69:69 + 375, 6:6 + 500], mask)
    assert (m != 255).sum() == 375 * 500
    assert (x[..., :69, :] == 0).all() and (x[..., :, 506:] == 0).all()
    torch.testing.assert_close(x[0, :, 69:69 + 375, 6:506], normalize(img))
    # a larger image is cropped at its centre: start floor((size - crop)/2)
    big = torch.arange(600 * 520).reshape(600, 520) % 7
    _, mb = center_crop_pair(torch.zeros(1, 3, 600, 520), big, 513)
    torch.testing.assert_close(mb, big[43:556, 3:516])


def test_center_crop_mode_counts_every_labelled_pixel():
    m = PixelModel()
    data = dataset([(37, 50)])
    whole = evaluate(m, data, EvalSpec(mode="whole"), K, "cpu")
    cc = evaluate(m, data, EvalSpec(mode="center_crop", crop=64), K, "cpu")
    np.testing.assert_array_equal(whole["confusion_matrix"], cc["confusion_matrix"])
    assert cc["confusion_matrix"].sum() == int((data[0][1] != 255).sum())


def test_evaluate_restores_training_mode_and_accepts_loaders():
    m = small_model().train()
    data = dataset([(30, 30), (20, 25)])
    a = evaluate(m, data, EvalSpec(mode="whole"), K, "cpu")
    assert m.training
    loader = torch.utils.data.DataLoader(data, batch_size=1, collate_fn=lambda batch: batch[0])
    c = evaluate(m, loader, EvalSpec(mode="whole"), K, "cpu")
    np.testing.assert_array_equal(a["confusion_matrix"], c["confusion_matrix"])
    assert set(a) == {"miou", "iou", "confusion_matrix", "num_images", "mode"} and len(a["iou"]) == K


def test_sharding_every_image_once():
    m = PixelModel()
    data = dataset([(20, 20)] * 5)
    full = evaluate(m, data, EvalSpec(mode="whole"), K, "cpu")
    parts = [evaluate(m, data[r::2], EvalSpec(mode="whole"), K, "cpu") for r in range(2)]
    np.testing.assert_array_equal(full["confusion_matrix"], parts[0]["confusion_matrix"] + parts[1]["confusion_matrix"])
    with pytest.raises(RuntimeError, match="torch.distributed"):
        evaluate(m, data, EvalSpec(mode="whole"), K, "cpu", rank=0, world=2)


def test_channels_last_model():
    m = small_model()
    data = dataset([(33, 41)])
    ref = evaluate(m, data, EvalSpec(mode="slide", window=24, stride=16), K, "cpu")
    m = m.to(memory_format=torch.channels_last)
    out = evaluate(m, data, EvalSpec(mode="slide", window=24, stride=16), K, "cpu")
    np.testing.assert_array_equal(ref["confusion_matrix"], out["confusion_matrix"])


def test_autocast_callable_is_used():
    calls = []

    def autocast():
        calls.append(1)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    out = evaluate(PixelModel(), dataset([(16, 16)]), EvalSpec(mode="whole"), K, "cpu", autocast=autocast)
    assert calls and out["num_images"] == 1


@pytest.mark.parametrize("mode", ["whole", "center_crop"])
def test_batched_images_give_the_batch_one_result(mode):
    """Equal-sized images share a forward (runs of sizes, a size change flushes, a last partial batch)."""
    m = small_model()
    data = dataset([(40, 56)] * 5 + [(33, 47)] * 2 + [(40, 56)] * 3)
    spec = dict(mode=mode, crop=48) if mode == "center_crop" else dict(mode=mode)
    one = evaluate(m, data, EvalSpec(**spec, batch_images=1), K, "cpu")
    for b in (2, 4, 16):
        many = evaluate(m, data, EvalSpec(**spec, batch_images=b), K, "cpu")
        np.testing.assert_array_equal(one["confusion_matrix"], many["confusion_matrix"])
        assert many["num_images"] == 10


@pytest.mark.parametrize("spec", [dict(mode="whole", batch_images=2), dict(mode="slide", window=20, stride=13)])
def test_confident_matrix_keeps_the_pixels_at_or_above_tau(spec):
    """The confident matrix counts exactly the labeled pixels whose top-class probability is >= τ."""
    m = PixelModel()
    data = dataset([(30, 41), (30, 41)])
    tau = 0.4
    out = evaluate(m, data, EvalSpec(**spec), K, "cpu", confidence=tau)
    plain = evaluate(m, data, EvalSpec(**spec), K, "cpu")
    np.testing.assert_array_equal(out["confusion_matrix"], plain["confusion_matrix"])
    expected = np.zeros((K, K), np.int64)
    with torch.no_grad():
        for img, mask in data:  # a per-pixel model: every window decomposition gives the whole-image probability
            conf, pred = m(normalize(img).unsqueeze(0))[0].softmax(0).max(0)
            keep = (conf >= tau) & (mask != 255)
            np.add.at(expected, (mask[keep].numpy(), pred[keep].numpy()), 1)
    assert 0 < expected.sum() < out["confusion_matrix"].sum()  # τ splits the pixels in this example
    np.testing.assert_array_equal(out["confident_matrix"], expected)
    assert "confident_matrix" not in plain


def test_per_image_confusion_sums_to_the_dataset_matrix():
    m = small_model()
    data = dataset([(40, 40)] * 5 + [(30, 50)] * 2, seed=3)
    out = evaluate(m, data, EvalSpec(mode="whole", batch_images=4), K, "cpu", per_image=True)
    per = out["per_image_confusion"]
    assert per.shape == (7, K, K)
    np.testing.assert_array_equal(per.sum(0), out["confusion_matrix"])
    one = evaluate(m, data[5:6], EvalSpec(mode="whole"), K, "cpu")
    np.testing.assert_array_equal(per[5], one["confusion_matrix"])


class _Patch14(nn.Module):
    """A stand-in for a ViT: refuses sides that are not multiples of 14, records the sizes it saw."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, K, 3, padding=1)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x):
        assert x.shape[-2] % 14 == 0 and x.shape[-1] % 14 == 0, tuple(x.shape)
        self.seen.append(tuple(x.shape[-2:]))
        return self.conv(x)


def test_nearest_multiple_rounds_half_up():
    from harness.evaluation.inference import nearest_multiple
    assert [nearest_multiple(s, 14) for s in (500, 375, 7, 20, 21, 518)] == [504, 378, 14, 14, 28, 518]
    with pytest.raises(ValueError, match="rounds to 0"):
        nearest_multiple(6, 14)


def test_whole_resize_multiple_resizes_in_and_out_as_unimatch_v2():
    """whole_resize14: the image goes in at the nearest multiples of 14 (bilinear, corners aligned) and its logits
    come back at the image's size, which is what the predictions are computed from."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = _Patch14().eval()
    spec = EvalSpec(mode="whole", resize_multiple=14)
    assert spec.name == "whole_resize14" and EvalSpec(mode="whole").name == "whole"
    data = dataset([(37, 50), (28, 28)])
    res = evaluate(model, data, spec, K, "cpu")
    assert model.seen == [(42, 56), (28, 28)]
    cm = np.zeros((K, K), np.int64)
    with torch.no_grad():
        for img, mask in data:
            x = normalize(img).unsqueeze(0)
            up = F.interpolate(x, (round(x.shape[-2] / 14) * 14, round(x.shape[-1] / 14) * 14), mode="bilinear",
                               align_corners=True)
            pred = F.interpolate(model.conv(up), x.shape[-2:], mode="bilinear", align_corners=True)[0].argmax(0)
            keep = mask != 255
            np.add.at(cm, (mask[keep].numpy(), pred[keep].numpy()), 1)
    np.testing.assert_array_equal(res["confusion_matrix"], cm)
    assert res["mode"] == "whole_resize14"
    scores = predict_scores(model, normalize(data[0][0]).unsqueeze(0), spec, K)
    assert scores.shape == (K, 37, 50)


def test_resize_multiple_is_for_whole_mode_only():
    with pytest.raises(ValueError, match="resize_multiple.*'whole' only"):
        EvalSpec(mode="slide", window=8, stride=4, resize_multiple=14)
