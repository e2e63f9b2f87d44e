"""A table of runs of UniMatch V2's protocols shows UniMatch V2's published and released numbers as reference rows
next to the harness's UniMatch V2 row; a ResNet-101 column of the same split does not."""

from harness.report import tables
from harness.plugins import get_plugin_manager
from harness.report.results import load_results
from harness.report.tables import build_table, load_reported, render
from methods.unimatch_v2 import UniMatchV2

from . import conftest
from .conftest import write_run


def _rows(md: str) -> dict[str, list[str]]:
    out = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) > 1 and not cells[0].startswith(":--"):
            out[cells[0].strip("*")] = cells[1:]
    return out


def test_released_unimatch_v2_rows_sit_next_to_its_protocol(tmp_path, monkeypatch):
    pm = get_plugin_manager()  # the method as its entry point registers it (installed entry points may predate it)
    if "unimatch_v2" not in pm.methods.names():
        pm.methods.add(UniMatchV2)
    tables._method_meta.cache_clear()
    tables._method_evaluates.cache_clear()
    monkeypatch.setitem(conftest.PROTOCOLS, "voc-uv2-dinov2b-92", dict(
        dataset="voc", family="voc-classic", labeled=92, eval_mode="whole_resize14", backbone="dinov2_base",
        crop_size=518))
    for seed in (0, 1):
        write_run(tmp_path, "unimatch_v2", "voc-uv2-dinov2b-92", seed, 85.0 + seed)
        write_run(tmp_path, "unimatch", "voc-92", seed, 75.0 + seed)
    md = render(build_table(load_results([tmp_path], warn=False), reported=load_reported()), "markdown")
    rows = _rows(md)
    header = next(r for k, r in rows.items() if k == "method")
    uv2, resnet = header.index("voc-uv2-dinov2b-92"), header.index("voc-92")
    assert rows["UniMatch V2"][uv2].strip("*").startswith("85.50 ± 0.71") and rows["UniMatch V2"][resnet] == "—"
    readme = rows["UniMatch V2 (reported, best-epoch (EMA))"]
    assert readme[uv2] == "86.3" and readme[resnet] == ""       # UniMatch V2's README, VOC 92, DINOv2-B
    logs = rows["UniMatch V2 (released logs, best-epoch (EMA))"]
    assert logs[uv2] and logs[resnet] == ""
    assert rows["UniMatch (reported, best-epoch)"][resnet] and not rows["UniMatch (reported, best-epoch)"][uv2]
    # UniMatch V2's numbers are its EMA teacher's (the plugin's default: these records predate the field)
    assert "whole image resized to multiples of 14" in md and "(of the EMA teacher for UniMatch V2)" in md
    tables._method_meta.cache_clear()
    tables._method_evaluates.cache_clear()
