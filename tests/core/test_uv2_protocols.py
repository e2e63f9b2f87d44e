"""UniMatch V2's protocols (benchmarks/protocols/*-uv2.yaml): the official settings, split lists pinned to the
official repository's bytes, and the released numbers shown next to them."""

from pathlib import Path

import pytest

from harness.protocols import ProtocolRegistry
from harness.resources import protocols_dir
from harness.report.tables import Column, load_reported, match_reported

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "splits"
ENCODERS = {"dinov2s": "dinov2_small", "dinov2b": "dinov2_base"}

# dataset prefix → (crop, eval mode name, epochs or iterations, global batch, loss, labeled counts); from
# UniMatch V2's configs/*.yaml and its released logs' headers (4 GPUs)
OFFICIAL = {
    "voc": (518, "whole_resize14", {"epochs": 60}, 16, "ce", [92, 183, 366, 732, 1464]),
    "cityscapes": (798, "slide798", {"epochs": 180}, 8, "ohem", [186, 372, 744, 1488]),
    "ade20k": (518, "whole_resize14", {"epochs": 60}, 8, "ce", [316, 631, 1263, 2526, 5052, 10105]),
    "coco": (518, "whole_resize14", {"epochs": 20}, 16, "ce", [232, 463, 925, 1849, 3697]),
}


@pytest.fixture(scope="module")
def uv2():
    r = ProtocolRegistry()
    for f in sorted(protocols_dir().glob("*-uv2.yaml")):
        r.add_file(f)
    return r


def test_every_split_and_encoder_has_a_protocol_at_the_official_settings(uv2):
    ids = set(uv2.names())
    for prefix, (crop, ev, budget, batch, loss, counts) in OFFICIAL.items():
        for enc, backbone in ENCODERS.items():
            for n in counts:
                p = uv2.get(f"{prefix}-uv2-{enc}-{n}")
                ids.discard(p.id)
                assert p.model.backbone == backbone and p.model.pretrained
                assert p.labeled_count == n and p.crop_size == crop and p.eval.name == ev
                b = p.budget
                assert (b.optimizer, b.lr, b.head_lr_mult, b.weight_decay, tuple(b.betas), b.poly_power) == (
                    "adamw", 5e-6, 40.0, 0.01, (0.9, 0.999), 0.9)
                assert {k: getattr(b, k) for k in budget} == budget and b.batch_labeled == batch
                assert p.supervised_loss.type == loss and p.scale_range == (0.5, 2.0)
                assert b.batch_unlabeled == batch
                assert {m: s["tau"] for m, s in p.method_settings.items()} == {
                    "fixmatch": 0.95, "fixmatch_v2": 0.95, "unimatch": 0.95, "unimatch_v2": 0.95}
    # what remains: the labeled-only runs on every train image (upstream's supervised.py budgets)
    assert ids == {f"{d}-uv2-{e}-full" for d in ("voc", "ade20k", "coco") for e in ENCODERS}
    full = uv2.get("ade20k-uv2-dinov2b-full")
    assert full.labeled_count == 20_210 and full.budget.epochs == 120 and full.budget.batch_labeled == 16
    voc = uv2.get("voc-uv2-dinov2s-full")
    assert voc.labeled_count == 10_582 and voc.family == "voc-blended" and voc.splits.unlabeled is None
    assert voc.total_iterations == 60 * (10_582 // 32) and voc.budget.batch_labeled == 32
    coco = uv2.get("coco-uv2-dinov2b-full")  # table04-coco_labeled_only_all_labels: 40 epochs, 8 per GPU x 4
    assert coco.labeled_count == 118_287 and coco.total_iterations == 40 * (118_287 // 32)
    cs = uv2.get("cityscapes-uv2-dinov2b-186")
    assert (cs.eval.window, cs.eval.stride) == (798, int(798 * 2 / 3))
    assert (cs.supervised_loss.thresh, cs.supervised_loss.min_kept, cs.supervised_loss.group) == (0.7, 200_000, 2)


def test_coco_lists_too_large_for_the_snapshot_are_pinned_by_git_blob_and_counted(uv2):
    """COCO's unlabeled lists and all/train.txt are pinned by the blob ids of UniMatch V2's tree (their bytes were
    never here). Each count is the train images outside the labeled list, and gives the steps per epoch that
    upstream's unimatch_v2 logs print (every len(loader) // 8 steps, 4 GPUs x 4 unlabeled images, padded
    DistributedSampler, last batch dropped)."""
    logged = {232: 922, 463: 920, 925: 916, 1849: 909, 3697: 895}  # table04-coco_unimatch_v2_1_*labels_dinov2_*.log
    blobs = set()
    for enc in ENCODERS:
        for n, every in logged.items():
            u = uv2.get(f"coco-uv2-{enc}-{n}").splits.unlabeled
            assert u.sha256 is None and u.git_blob and u.count == 118_287 - n
            assert (-(-u.count // 4) // 4) // 8 == every
            blobs.add(u.git_blob)
        full = uv2.get(f"coco-uv2-{enc}-full").splits.labeled
        assert full.git_blob == "4509e74989de83a621740e54e63a8e0226e709e2" and full.count == 118_287
    assert len(blobs) == 5


@pytest.mark.skipif(not (SHARED / "SHA256SUMS").exists(), reason="../shared/splits not available")
def test_split_lists_are_the_official_bytes(uv2):
    """Every list's SHA-256 is that of UniMatch V2's file at the pinned commit (the shared copy's SHA256SUMS), and
    its count the file's entries."""
    sums = {line.split()[1][2:]: line.split()[0] for line in (SHARED / "SHA256SUMS").read_text().splitlines()}
    for p in uv2:
        for s in (p.splits.labeled, p.splits.unlabeled, p.splits.val):
            if s is None or s.sha256 is None:  # pinned by git blob id: test_coco_lists_too_large_for_the_snapshot
                continue
            assert sums[s.path] == s.sha256, (p.id, s.path)
            entries = [ln for ln in (SHARED / s.path).read_text().splitlines() if ln.strip()]
            assert len(entries) == s.count, (p.id, s.path)


def test_released_numbers_appear_in_the_columns_of_these_protocols(uv2):
    """A table column of a uv2 protocol shows UniMatch V2's released rows of that split and encoder (backbone, crop,
    split family and evaluation mode match), and a ResNet-101 column of the same split does not."""
    reported = load_reported()
    for pid, method, family in [("voc-uv2-dinov2b-92", "UniMatch V2", "voc-classic"),
                                ("voc-uv2-dinov2s-1464", "UniMatch V2", "voc-classic"),
                                ("cityscapes-uv2-dinov2b-186", "UniMatch V2", "cityscapes"),
                                ("ade20k-uv2-dinov2b-631", "FixMatch", "ade20k"),
                                ("coco-uv2-dinov2s-232", "SupBaseline", "coco-unimatch"),
                                ("coco-uv2-dinov2b-925", "UniMatch V2", "coco-unimatch"),
                                ("coco-uv2-dinov2b-full", "SupBaseline", "coco-unimatch"),
                                ("voc-uv2-dinov2b-full", "SupBaseline", "voc-blended")]:
        p = uv2.get(pid)
        assert p.family == family
        col = Column(pid, p.dataset, p.family, p.labeled_count, p.eval.name, p.model.backbone, p.crop_size)
        matched, _ = match_reported(reported, col)
        assert method in set(matched["method"]), pid
        assert set(matched["backbone"]) == {p.model.backbone}
        resnet = Column(pid, p.dataset, p.family, p.labeled_count, "whole", "resnet101", 321)
        assert not (match_reported(reported, resnet)[0]["backbone"] == p.model.backbone).any()
