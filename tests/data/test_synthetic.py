"""The built-in synthetic dataset: determinism, VOC layout, masks, split lists, colour independence, protocol
checksums and atomic generation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import synthetic as syn
from harness.data.readers import read_mask
from harness.data.voc import voc_palette_flat
from harness.errors import DataError
from harness.protocols import load_protocol_file

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_FILE = REPO / "benchmarks" / "protocols" / "synthetic.yaml"
SMALL = dict(num_train=60, num_val=12, labeled_counts=(6, 12))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def _ids(path: Path) -> list[str]:
    return [Path(line.split()[0]).stem for line in _lines(path)]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return syn.generate(tmp_path_factory.mktemp("syn") / "v1", **SMALL)


def test_deterministic(small_root, tmp_path):
    again = syn.generate(tmp_path / "again", workers=2, **SMALL)  # the pool must not change anything
    for sub in ("SegmentationClass", "JPEGImages", "splits"):
        a = sorted(p.relative_to(small_root) for p in (small_root / sub).rglob("*") if p.is_file())
        b = sorted(p.relative_to(again) for p in (again / sub).rglob("*") if p.is_file())
        assert a == b and a
        for rel in a:
            assert (small_root / rel).read_bytes() == (again / rel).read_bytes(), rel
    m1, m2 = (json.loads((r / "manifest.json").read_text()) for r in (small_root, again))
    assert m1["splits"] == m2["splits"] and m1["class_pixels"] == m2["class_pixels"]
    assert m1["content_sha256"] == m2["content_sha256"] == syn.content_fingerprint(again)


def test_fingerprint_sees_one_changed_pixel(small_root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_root, copy)
    fp = syn.content_fingerprint(copy)
    mask = copy / "SegmentationClass" / sorted(os.listdir(copy / "SegmentationClass"))[3]
    img = Image.open(mask)
    arr = np.array(img)
    arr[0, 0] = (arr[0, 0] + 1) % syn.NUM_CLASSES
    out = Image.fromarray(arr, mode="P")
    out.putpalette(img.getpalette())
    out.save(mask)
    assert syn.content_fingerprint(copy) != fp
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["content_sha256"]  # a root generated before fingerprints were recorded: computed on demand
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert syn.recorded_fingerprint(copy) == syn.content_fingerprint(copy)


def test_versions_and_images_differ():
    a = syn.render("train", 0)[0]
    assert not np.array_equal(a, syn.render("train", 1)[0])
    assert not np.array_equal(a, syn.render("val", 0)[0])
    assert not np.array_equal(a, syn.render("train", 0, version=syn.SYNTHETIC_VERSION + 1)[0])


def test_voc_layout(small_root):
    n = SMALL["num_train"] + SMALL["num_val"]
    assert len(list((small_root / "JPEGImages").glob("*.jpg"))) == n
    assert len(list((small_root / "SegmentationClass").glob("*.png"))) == n
    m = json.loads((small_root / "manifest.json").read_text())
    assert m["version"] == syn.SYNTHETIC_VERSION and m["complete"]
    assert m["class_names"] == syn.CLASS_NAMES and m["num_classes"] == syn.NUM_CLASSES
    assert m["num_train"] == SMALL["num_train"] and m["num_val"] == SMALL["num_val"]
    assert m["params"] == syn.SynthParams().to_json()
    expected = {"train.txt", "val.txt", "full/labeled.txt"} | {f"{k}/{w}.txt" for k in (6, 12)
                                                                for w in ("labeled", "unlabeled")}
    assert set(m["splits"]) == expected
    for rel, info in m["splits"].items():
        raw = (small_root / "splits" / rel).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == info["sha256"]
        assert raw.endswith(b"\n") and b"\r" not in raw
        lines = _lines(small_root / "splits" / rel)
        assert len(lines) == info["count"] == len(set(lines))
        for line in lines:
            img, mask = line.split(" ")
            stem = Path(img).stem
            assert img == f"JPEGImages/{stem}.jpg" and mask == f"SegmentationClass/{stem}.png"
            assert (small_root / img).is_file() and (small_root / mask).is_file()
    with Image.open(small_root / "JPEGImages" / "train_00000.jpg") as im:
        assert im.mode == "RGB" and im.size == (syn.IMAGE_SIZE, syn.IMAGE_SIZE)


def test_masks_are_voc_palette_pngs(small_root):
    allowed = set(range(syn.NUM_CLASSES)) | {255}
    seen = set()
    for path in sorted((small_root / "SegmentationClass").glob("*.png")):
        with Image.open(path) as im:
            assert im.mode == "P" and im.size == (syn.IMAGE_SIZE, syn.IMAGE_SIZE)
            assert im.getpalette()[:768] == voc_palette_flat()
            raw = np.asarray(im)
        arr = read_mask(path, syn.NUM_CLASSES)  # the harness reader accepts it
        assert np.array_equal(arr, raw)
        vals = set(np.unique(arr).tolist())
        assert vals <= allowed
        seen |= vals
        # void is a thin border: the interior of objects keeps its class
        assert 0 < (arr == 255).mean() < 0.35
    assert seen == allowed


def test_mask_matches_render(small_root):
    _, mask, _ = syn.render("val", 3)
    with Image.open(small_root / "SegmentationClass" / "val_00003.png") as im:
        assert np.array_equal(np.asarray(im), mask)


def test_void_only_on_class_boundaries():
    _, mask, _ = syn.render("train", 5)
    void = mask == 255
    # every void pixel touches (4-neighbourhood) a pixel of another class or another void pixel
    pad = np.pad(mask, 1, mode="edge")
    nbrs = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])[:, void].astype(int)
    touches_void = (nbrs == 255).any(axis=0)
    classes = np.where(nbrs == 255, -1, nbrs)
    two_classes = (classes.max(axis=0) != np.where(classes < 0, 999, classes).min(axis=0)) & (classes.max(axis=0) >= 0)
    assert (touches_void | two_classes).all()
    # background/background edges (clutter) are not void: some clutter exists but background stays contiguous
    assert (mask == 0).mean() > 0.2


def test_splits(small_root):
    sp = small_root / "splits"
    train = _ids(sp / "train.txt")
    val = _ids(sp / "val.txt")
    assert len(train) == SMALL["num_train"] and not set(train) & set(val)
    assert _ids(sp / "full" / "labeled.txt") == train
    assert not (sp / "full" / "unlabeled.txt").exists()
    present = {}
    for i in train:
        with Image.open(small_root / "SegmentationClass" / f"{i}.png") as im:
            present[i] = syn.classes_present(np.asarray(im))
    previous: set[str] = set()
    for n in (6, 12):
        lab = _ids(sp / str(n) / "labeled.txt")
        unl = _ids(sp / str(n) / "unlabeled.txt")
        assert len(lab) == n and len(unl) == len(train) - n
        assert not set(lab) & set(unl) and set(lab) | set(unl) == set(train)
        assert set().union(*(present[i] for i in lab)) == set(range(1, syn.NUM_CLASSES)), n
        assert previous <= set(lab)  # nested
        previous = set(lab)


def test_colour_does_not_identify_the_class():
    """Per-class mean colours of many objects agree with the pooled mean: colours are drawn independently of
    the class, so only shape, texture and context tell classes apart. (Spreads differ: the mean colour of a
    striped or checkered object averages its two colours.)"""
    cols: dict[int, list] = {c: [] for c in range(1, syn.NUM_CLASSES)}
    for i in range(400):
        for cls, rgb in syn.render("val", 10_000 + i)[2]["objects"]:
            cols[cls].append(rgb)
    everything = np.concatenate([np.asarray(v) for v in cols.values()])
    mean, std = everything.mean(0), everything.std(0)
    for cls, v in cols.items():
        v = np.asarray(v)
        assert len(v) >= 150, (syn.CLASS_NAMES[cls], len(v))
        se = std / np.sqrt(len(v))
        # class means within ~3.5 standard errors (and 20 levels) of the pooled mean, similar spread
        assert (np.abs(v.mean(0) - mean) < np.maximum(3.5 * se, 4)).all() and (np.abs(v.mean(0) - mean) < 20).all(), \
            (syn.CLASS_NAMES[cls], v.mean(0), mean)


def test_v3_class_textures_are_luma_patterns():
    """v3: disks are striped, squares checkered, triangles speckled with a luma contrast that survives
    grey-scale; rings and crosses are flat (only noise). Median over images of the luma spread of a class."""
    spread: dict[int, list] = {c: [] for c in syn.OBJECT_CLASSES}
    for i in range(60):
        rgb, mask, _ = syn.render("val", 10_000 + i)
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        for c in syn.OBJECT_CLASSES:
            if (mask == c).sum() >= 40:
                spread[c].append(luma[mask == c].std())
    med = {syn.CLASS_NAMES[c]: float(np.median(v)) for c, v in spread.items()}
    assert min(med["disk"], med["square"], med["triangle"]) > 20, med
    assert max(med["ring"], med["cross"]) < 10, med


def test_protocol_file_matches_generator():
    protocols = load_protocol_file(PROTOCOL_FILE)
    ids = [p.id for p in protocols]
    assert ids == [f"synthetic-{n}" for n in syn.LABELED_COUNTS] + ["synthetic-full"]
    expected = syn.split_checksums()  # fast: renders only the masks the labeled draw looks at
    for p in protocols:
        assert p.dataset == "synthetic" and p.class_names == syn.CLASS_NAMES and p.num_classes == syn.NUM_CLASSES
        assert p.crop_size == 64 and p.eval.mode == "whole" and p.model.backbone == "small"
        files = [p.splits.labeled, p.splits.val] + ([p.splits.unlabeled] if p.splits.unlabeled else [])
        for f in files:
            assert f.path in expected, f.path
            assert (f.sha256, f.count) == (expected[f.path]["sha256"], expected[f.path]["count"]), f.path
        assert p.labeled_count + p.unlabeled_count == syn.NUM_TRAIN
    assert protocols[-1].splits.unlabeled is None


def test_write_protocol_file_updates_only_checksums(tmp_path, small_root):
    text = PROTOCOL_FILE.read_text()
    tuned = text.replace("iterations: 3000", "iterations: 1234")
    assert tuned != text
    first_sha = tuned.split("sha256: ")[1][:64]
    path = tmp_path / "p.yaml"
    path.write_text(tuned.replace(first_sha, "0" * 64))
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"splits": syn.split_checksums()}))
    syn.write_protocol_file(path, fake)
    assert path.read_text() == tuned  # checksums restored, tuned settings kept
    with pytest.raises(DataError, match="not produced"):  # the small root lacks the benchmark's lists
        syn.write_protocol_file(path, small_root)


def test_full_generation_matches_protocol_file(tmp_path):
    t0 = time.time()
    root = syn.generate(tmp_path / "full", workers=2)
    print(f"full generation: {time.time() - t0:.1f} s")
    m = json.loads((root / "manifest.json").read_text())
    for p in load_protocol_file(PROTOCOL_FILE):
        for f in [p.splits.labeled, p.splits.val] + ([p.splits.unlabeled] if p.splits.unlabeled else []):
            raw = (root / "splits" / f.path).read_bytes()
            assert hashlib.sha256(raw).hexdigest() == f.sha256 == m["splits"][f.path]["sha256"]
    assert m["splits"] == syn.split_checksums()
    # The template for a new protocol file states the checked-in file's settings (it has drifted before).
    fresh = tmp_path / "fresh.yaml"
    syn.write_protocol_file(fresh, root)
    settings = [[p.model_dump(exclude={"source"}) for p in load_protocol_file(f)] for f in (fresh, PROTOCOL_FILE)]
    assert settings[0] == settings[1]


# --- atomicity and reuse ----------------------------------------------------------------------------------

def test_reuse_and_refusal(small_root, tmp_path):
    stamp = (small_root / "manifest.json").stat().st_mtime_ns
    assert syn.generate(small_root, **SMALL) == small_root  # reused, not rewritten
    assert (small_root / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="other parameters"):
        syn.generate(small_root, noise_std=(0.0, 1.0), **SMALL)
    with pytest.raises(DataError, match="train images"):
        syn.generate(small_root, num_train=61, num_val=12, labeled_counts=(6, 12))
    # ensure_synthetic wants the default sizes: a small root is not silently taken for the benchmark set
    with pytest.raises(DataError):
        syn.ensure_synthetic(small_root)


def test_other_version_or_incomplete_root_is_refused(small_root, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(small_root, other)
    m = json.loads((other / "manifest.json").read_text())
    m["version"] = syn.SYNTHETIC_VERSION + 1
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="version"):
        syn.generate(other, **SMALL)
    with pytest.raises(DataError, match="version"):
        syn.ensure_synthetic(other)

    partial = tmp_path / "partial"
    shutil.copytree(small_root, partial)
    (partial / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest"):
        syn.generate(partial, **SMALL)
    with pytest.raises(DataError, match="manifest"):
        syn.ensure_synthetic(partial)

    missing = tmp_path / "missing"
    shutil.copytree(small_root, missing)
    (missing / "SegmentationClass" / "train_00003.png").unlink()
    with pytest.raises(DataError, match="SegmentationClass"):
        syn.generate(missing, **SMALL)


def test_interrupted_generation_leaves_no_root(tmp_path):
    root = tmp_path / "v1"

    def boom(done, total):
        if done == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        syn.generate(root, progress=boom, **SMALL)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is removed too
    assert syn.generate(root, **SMALL) == root  # and a later generation succeeds


def test_killed_generation_leaves_no_root(tmp_path):
    root = tmp_path / "v1"
    code = ("import sys; from harness.data.synthetic import generate; "
            f"generate({str(root)!r}, num_train=5000, num_val=10, labeled_counts=(12,), "
            "progress=lambda d, t: d == 10 and print('started', flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "started"
    finally:
        proc.kill()
        proc.wait()
    assert not root.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and all(name.startswith(".v1.partial-") for name in leftovers)
    with pytest.raises(DataError):
        syn.ensure_synthetic(tmp_path / leftovers[0])  # a partial folder is never accepted as a root
    other = tmp_path / ".v2.partial-abc"  # another root's: not this generation's business
    other.mkdir()
    assert syn.generate(root, **SMALL) == root  # the next generation of that root removes its orphans
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v2.partial-abc", "v1"]


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert syn.default_root() == tmp_path / "synthetic" / f"v{syn.SYNTHETIC_VERSION}"
    monkeypatch.delenv("HARNESS_CACHE")
    assert syn.default_root(3) == Path.home() / ".cache" / "harness" / "synthetic" / "v3"


def test_generation_workers_end_under_a_stop_flagging_sigterm_handler(tmp_path):
    # A grid task installs a SIGTERM handler that only flags a stop; forked pool workers used to inherit it,
    # survive the SIGTERM of Pool.terminate(), and leave the first run on a fresh machine waiting forever.
    root = tmp_path / "v1"
    code = ("import signal; from harness.data.synthetic import generate; "
            "signal.signal(signal.SIGTERM, lambda *a: print('flagged', flush=True)); "
            f"generate({str(root)!r}, workers=2, num_train=60, num_val=12, labeled_counts=(6,)); print('done')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done"]  # no worker ran the inherited handler
    assert (root / "manifest.json").exists()
