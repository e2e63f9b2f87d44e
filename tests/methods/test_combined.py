"""Tests of the combined plugin (methods/combined.py, combined spec §7–§8): iMAS + S4MIM terms (harness-defined)."""

import math

import pytest
import torch

import methods.components.mim_terms as mim_terms
from methods.combined import Combined
from methods.components.mim import SampleLosses
from methods.components.mim_terms import MIMTerms, resolve_mim
from methods.imas import Imas
from methods.s4mim import S4MIM

from tests.methods.test_s4mim import BASE, merge
from tests.methods.test_unimatch import S, batches, make_context, make_model

ZERO = {"lambda_rec": 0.0, "lambda_fa": 0.0, "lambda_sem": 0.0}


def combined(**over):
    return Combined(make_model(), Combined.Config.model_validate(merge(BASE, over)), make_context())


def run_step(method, seed=21):
    labeled, unlabeled = batches()
    torch.manual_seed(seed)
    out = method.training_step(labeled, unlabeled, 0)
    out.loss.backward()
    return out, unlabeled


def spy_terms(monkeypatch):
    seen = {}
    real = mim_terms.compute_mim_terms

    def spy(*args, **kwargs):
        seen.update(rng=torch.get_rng_state(), args=args, kwargs=kwargs)
        seen["terms"] = real(*args, **kwargs)
        return seen["terms"]

    monkeypatch.setattr(mim_terms, "compute_mim_terms", spy)
    return seen


def force_easiness(method, value=None):
    """Wrap ``pseudo_labels`` to record the iMAS pseudo-labels (and optionally force h)."""
    seen = {}
    original = method.pseudo_labels

    def wrapped(unlabeled):
        pl = original(unlabeled)
        if value is not None:
            pl.h = torch.full_like(pl.h, value)
        seen["pl"] = pl
        return pl

    method.pseudo_labels = wrapped
    return seen


def test_zero_lambdas_is_exactly_imas(monkeypatch):
    seen = spy_terms(monkeypatch)
    ref = Imas(make_model(), Imas.Config(tau=0.4), make_context())
    out_ref, _ = run_step(ref)
    m = combined(**ZERO)
    out, _ = run_step(m)
    assert "terms" not in seen and len(m.extra_modules) == 0  # nothing computed, nothing drawn
    assert torch.equal(out.loss, out_ref.loss)
    assert set(out.logs) == set(out_ref.logs)
    for (name, p), (_, q) in zip(m.model.named_parameters(), ref.model.named_parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_unit_easiness_gives_the_s4mim_block_outputs(monkeypatch):
    seen = spy_terms(monkeypatch)
    m = combined()
    pls = force_easiness(m, 1.0)
    out, unlabeled = run_step(m)
    # the inputs are the weak view and the teacher's pseudo-labels
    args = seen["args"]
    pl = pls["pl"]
    assert args[3] is pl.x_w and torch.equal(args[3], unlabeled.image)
    with torch.no_grad():
        conf_t, pseudo_t = m.teacher(unlabeled.image).float().softmax(1).max(1)
    assert torch.equal(args[4], pseudo_t) and torch.equal(args[5], conf_t) and args[7] == 0.4
    # the s4mim configuration with the same MIM keys (λ = 1) resolves to the same block settings ...
    s4 = resolve_mim(S4MIM.Config.model_validate(merge(BASE, {"lambda_rec": 1.0, "lambda_fa": 1.0,
                                                              "lambda_sem": 1.0})), S, 10)
    assert s4 == m.mim
    # ... and the same partition, masks and pseudo-labels give the same terms, reduced with plain means
    torch.set_rng_state(seen["rng"])
    again = mim_terms.compute_mim_terms(args[0], args[1], s4, *args[3:], **seen["kwargs"])
    assert torch.equal(again.masks, seen["terms"].masks) and torch.equal(again.samples.region,
                                                                         seen["terms"].samples.region)
    plain = again.reduce()
    assert set(plain) == {"loss_rec", "loss_fa", "loss_sem"}
    for k, v in plain.items():
        assert float(v.detach()) > 0
        torch.testing.assert_close(out.logs[k], v.detach())


def test_easiness_weighting_of_the_terms(monkeypatch):
    seen = spy_terms(monkeypatch)
    m = combined(lambda_rec=0.5)
    h = torch.tensor([0.2, 0.9, 0.5, 0.0])
    original = m.pseudo_labels

    def with_h(unlabeled):
        pl = original(unlabeled)
        pl.h = h.clone()
        return pl

    m.pseudo_labels = with_h
    out, _ = run_step(m)
    t = seen["terms"]
    rec = t.rec
    hb = h[rec.batch_index]
    expected_rec = (hb * rec.values)[rec.used].sum() / rec.used.sum()
    torch.testing.assert_close(out.logs["loss_rec"], 0.5 * expected_rec.detach())
    expected_sem = (h * t.sem_num).sum() / t.sem_count.sum()
    torch.testing.assert_close(out.logs["loss_sem"], expected_sem.detach())


def test_worked_example_of_the_spec():
    # combined spec §8: image 0 has ℓ_rec = 2.5, 35/3; image 1 has 1.0; h = [0.5, 0.8]
    h = torch.tensor([0.5, 0.8])
    rec = SampleLosses(torch.tensor([2.5, 35 / 3, 1.0]), torch.tensor([True, True, True]), torch.tensor([0, 0, 1]))
    fa = SampleLosses(torch.tensor([0.5527864, 0.0513167, 0.0]), torch.tensor([True, True, False]),
                      torch.tensor([0, 0, 1]))
    t = MIMTerms(num_unlabeled=2, num_images=2, rec=rec, fa=fa, sem_num=torch.tensor([0.4, 0.8]),
                 sem_count=torch.tensor([3.0, 4.0]))
    weighted, plain = t.reduce(h), t.reduce()
    assert math.isclose(float(weighted["loss_rec"]), 473 / 180, rel_tol=1e-6)
    assert math.isclose(float(plain["loss_rec"]), 91 / 18, rel_tol=1e-6)
    assert math.isclose(float(weighted["loss_fa"]), 0.1510258, rel_tol=1e-6)
    assert math.isclose(float(weighted["loss_sem"]), 0.12, rel_tol=1e-6)
    assert math.isclose(float(plain["loss_sem"]), 1.2 / 7, rel_tol=1e-6)


def test_student_partition_option_and_teacher_evaluation(monkeypatch):
    seen = spy_terms(monkeypatch)
    m = combined(partition_source="student", mim_weight_by_easiness=False, fa={"enabled": False},
                 sem={"enabled": False})
    pls = force_easiness(m)
    run_step(m)
    assert torch.equal(seen["args"][4], pls["pl"].student_pred)
    assert m.eval_model() is not m.model and "student" in m.secondary_eval_models()
    n_teacher = sum(1 for _ in m.eval_model().parameters())
    assert n_teacher == sum(1 for _ in m.model.parameters())  # the head is not part of the teacher
    assert Combined.description == "combined (iMAS + S4MIM, harness interpretation)"
    with pytest.raises(Exception):
        Combined.Config.model_validate({"cmim": {"k_maxx": 2}})
