"""``harness show``: a picture of a run's predictions."""

import numpy as np
from PIL import Image

from harness.cli import main
from harness.data.cityscapes import CITYSCAPES_COLORS
from harness.report.pictures import palette, pick
from harness.train.run import RunSpec, execute


def test_pick_spreads_indices_evenly_and_includes_both_ends():
    assert pick(500, 5) == [0, 125, 250, 374, 499]
    assert pick(3, 6) == [0, 1, 2]
    assert pick(10, 1) == [0]


def test_palettes_follow_the_datasets():
    voc = palette("voc")
    assert tuple(voc[1]) == (128, 0, 0) and tuple(voc[255]) == (224, 224, 192)  # VOC's colour map and void
    city = palette("cityscapes")
    assert [tuple(c) for c in city[:19]] == CITYSCAPES_COLORS and tuple(city[255]) == (0, 0, 0)


def test_show_writes_a_grid_of_image_truth_prediction_and_pseudo_label(tiny_benchmark, tmp_path, capsys):
    rec = execute(RunSpec(method="imas", protocol="tiny-8", out=str(tmp_path / "runs"),
                          data_root=str(tiny_benchmark["data_root"]), progress=False))
    out = tmp_path / "pictures" / "show.png"
    assert main(["show", rec["run_dir"], "--out", str(out), "--images", "2", "--split", "unlabeled",
                 "--data-root", str(tiny_benchmark["data_root"])]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    h, w, _ = img.shape
    assert w > h > 300  # four columns, two rows and a legend
    # the ground-truth panels carry the palette's colours, e.g. background black and the void boundary
    colours = {tuple(c) for c in img.reshape(-1, 3)[:: 7]}
    assert (0, 0, 0) in colours and (224, 224, 192) in colours
    assert main(["show", rec["run_dir"], "--out", str(out), "--images", "0"]) == 2
