"""Protocol files: the shipped benchmarks match benchmarks spec, and bad files get precise errors."""

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.protocols import ProtocolRegistry, load_protocol_file

ROOT = Path(__file__).resolve().parents[2]
SHARED_SUMS = ROOT.parent / "shared" / "splits" / "SHA256SUMS"


@pytest.fixture(scope="module")
def registry():
    r = ProtocolRegistry()
    r.add_dir(ROOT / "benchmarks" / "protocols")
    return r


# benchmarks spec §5: T = epochs × ⌊N_u/8⌋
EXPECTED_T = {
    "voc-92": 104_880, "voc-183": 103_920, "voc-366": 102_160, "voc-732": 98_480, "voc-1464": 91_120,
    "voc-blended-662": 99_200, "voc-u2pl-662": 99_200, "voc-blended-1323": 92_560, "voc-u2pl-1323": 92_560,
    "voc-blended-2646": 79_360, "voc-u2pl-2646": 79_360, "cityscapes-100": 86_160, "cityscapes-186": 83_520,
    "cityscapes-372": 78_000, "cityscapes-744": 66_720, "cityscapes-1488": 44_400,
}


def test_standard_protocols_match_the_benchmark_table(registry):
    for pid, total in EXPECTED_T.items():
        p = registry.get(pid)
        assert p.total_iterations == total, pid
        assert p.budget.batch_labeled == p.budget.batch_unlabeled == 8
    assert registry.get("voc-732").crop_size == 321 and registry.get("voc-blended-662").crop_size == 513
    cs = registry.get("cityscapes-186")
    assert (cs.crop_size, cs.eval.mode, cs.eval.window, cs.eval.stride) == (801, "slide", 801, 534)
    assert cs.supervised_loss.type == "ohem" and cs.budget.head_lr_mult == 1.0 and cs.budget.lr == 0.005
    assert cs.method_settings["unimatch"]["tau"] == 0 and cs.method_settings["imas"]["tau"] == 0.7
    assert registry.get("voc-u2pl-662").family != registry.get("voc-blended-662").family


def test_builtin_synthetic_protocols_exist(registry):
    synth = [p for p in registry if p.dataset == "synthetic"]
    semi = [p for p in synth if p.splits.unlabeled is not None]
    assert len(semi) >= 3 and any(p.splits.unlabeled is None for p in synth)


@pytest.mark.skipif(not SHARED_SUMS.exists(), reason="../shared/splits not available")
def test_pinned_checksums_equal_the_published_sha256sums(registry):
    sums = {line.split()[1][2:]: line.split()[0] for line in SHARED_SUMS.read_text().splitlines()}
    seen = set()
    for p in registry:
        if p.dataset == "synthetic":
            continue
        for s in (p.splits.labeled, p.splits.unlabeled, p.splits.val):
            if s is not None and s.sha256 is not None:  # COCO's largest lists: by git blob id (test_uv2_protocols)
                assert sums[s.path] == s.sha256, s.path
                seen.add(s.path)
    # every VOC and Cityscapes list, the 14 ADE20K lists and the 6 COCO lists (labeled and val) are used by a
    # protocol
    assert len(seen) == 35 + 14 + 6


def _write(tmp_path, text):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return f


BASE = """
defaults:
  dataset: voc
  family: x
  num_classes: 2
  class_names: [a, b]
  crop_size: 32
  eval: {mode: whole}
  budget: {iterations: 10, batch_labeled: 2, batch_unlabeled: 2, lr: 0.01, head_lr_mult: 10, weight_decay: 0.0}
  model: {backbone: small}
protocols:
  - id: t-1
    splits:
      labeled: {path: l.txt, sha256: "%s", count: 1}
      val: {path: v.txt, sha256: "%s", count: 1}
""" % ("0" * 64, "1" * 64)


def test_valid_file_loads(tmp_path):
    (p,) = load_protocol_file(_write(tmp_path, BASE))
    assert p.total_iterations == 10 and p.splits.unlabeled is None


@pytest.mark.parametrize("edit, words", [
    (("crop_size: 32", "crop_size: 32\n  crop: 5"), ["crop", "Extra inputs"]),
    (("crop_size: 32", "crop_size: -3"), ["crop_size", "-3"]),
    (("mode: whole", "mode: sliding"), ["eval.mode", "sliding"]),
    (("class_names: [a, b]", "class_names: [a]"), ["class_names", "num_classes"]),
    (("iterations: 10,", "epochs: 2, iterations: 10,"), ["exactly one of 'epochs' or 'iterations'"]),
    (("crop_size: 32", "crop_size: 32\n  scale_range: [2.0, 0.5]"), ["scale_range", "0 < lo <= hi"]),
])
def test_bad_protocol_file_names_file_protocol_and_key(tmp_path, edit, words):
    path = _write(tmp_path, BASE.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_protocol_file(path)
    msg = str(err.value)
    assert str(path) in msg and "t-1" in msg
    for w in words:
        assert w in msg


def test_duplicate_protocol_id_is_an_error(tmp_path):
    r = ProtocolRegistry()
    r.add_file(_write(tmp_path, BASE))
    with pytest.raises(ConfigError, match="defined twice"):
        r.add_file(tmp_path / "p.yaml")


def test_unknown_protocol_lists_available(registry):
    with pytest.raises(ConfigError, match="available protocols: .*voc-732"):
        registry.get("voc-733")


def test_overrides_change_budget_and_reject_unknown_keys(registry):
    p = registry.get("voc-92").with_overrides({"budget.iterations": 5})
    assert p.total_iterations == 5 and p.budget.epochs is None
    with pytest.raises(ConfigError, match="budget.iters"):
        registry.get("voc-92").with_overrides({"budget.iters": 5})
    with pytest.raises(ConfigError, match="budget.lr"):
        registry.get("voc-92").with_overrides({"budget.lr": -1.0})
