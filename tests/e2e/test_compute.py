"""Each record says what its run spent: images seen, image-passes with and without gradient, peak memory."""

import pytest

from harness.train.engine import StopRequested
from harness.train.run import RunSpec, execute


def _run(tiny, tmp_path, method, **kw):
    return execute(RunSpec(method=method, protocol="tiny-8", out=str(tmp_path / "runs"),
                           data_root=str(tiny["data_root"]), progress=False, **kw))


@pytest.mark.parametrize("method, grad_per_step, no_grad_per_step", [
    ("supervised", 4, 0),      # the labeled batch (tiny-8: 4 + 4 images per step)
    ("unimatch", 16, 4),       # x_l + x_w (FP stream: same pass), x_s1 + x_s2; the source's pseudo-labels
    ("mean_teacher", None, 4),  # the teacher's targets on the weak view (a copy of the model: counted)
])
def test_image_passes_per_step_are_counted_without_evaluation(tiny_benchmark, tmp_path, method, grad_per_step,
                                                               no_grad_per_step):
    rec = _run(tiny_benchmark, tmp_path, method)
    c, steps = rec["compute"], rec["total_steps"]
    assert c["images_seen"] == {"labeled": 4 * steps, "unlabeled": (4 * steps if method != "supervised" else 0)}
    if grad_per_step is not None:
        assert c["image_passes"]["with_grad"] == grad_per_step * steps
    assert c["image_passes"]["forward_only"] == no_grad_per_step * steps  # evaluation passes are not counted
    assert c["peak_memory_gib"] > 0 and c["peak_memory_of"] == "process_peak_rss"


def test_counts_survive_a_resume(tiny_benchmark, tmp_path):
    full = _run(tiny_benchmark, tmp_path / "a", "imas")
    with pytest.raises(StopRequested):
        _run(tiny_benchmark, tmp_path / "b", "imas", stop_after=5)
    resumed = _run(tiny_benchmark, tmp_path / "b", "imas")
    for key in ("images_seen", "image_passes"):
        assert resumed["compute"][key] == full["compute"][key]
