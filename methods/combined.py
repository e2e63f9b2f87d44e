"""combined (iMAS + S4MIM, harness interpretation) — the combined spec.

Status: **harness-defined**; no paper defines this method. It trains exactly as iMAS (the ``imas`` plugin, exact:
EMA teacher, easiness-weighted consistency, easiness-adaptive blend, easiness-triggered easy↔hard CutMix) and adds
the three MIM terms of the ``s4mim`` plugin, which are themselves the **harness's interpretation** of the S4MIM
abstract (class-wise pixel reconstruction, feature aggregation and semantic-space MIM come from the abstract;
everything concrete — partition, masks, head, losses, weights — is this project's interpretation, s4mim spec §3).

Composition (combined spec §2): this class subclasses :class:`methods.imas.Imas` and hooks the MIM terms in through
its ``extra_losses`` extension point; the terms come from the same block as ``s4mim``
(``methods.components.mim_terms``), so no logic is copied. Two changes make them fit the teacher–student scheme:

1. The class partition and the semantic-MIM pseudo-labels are the **teacher's** ``ŷ = argmax p_t``, ``c = max p_t``
   (``partition_source: student`` uses the student's eval-mode argmax/max computed for the easiness instead);
   τ is iMAS's τ (0.95 VOC, 0.7 Cityscapes).
2. Each image's MIM losses are weighted by its easiness ``h_b`` (a constant), without renormalisation by Σh
   (``mim_weight_by_easiness: false`` for plain means, ablation):

       L = L_sup + λ_u·L_u + λ_rec·L_rec^h + λ_fa·L_fa^h + λ_sem·L_sem^h,    λ_rec = λ_fa = λ_sem = 1.0

   ``L_rec^h = (1/N_rec) Σ h_b·ℓ_rec(b,k)``, ``L_fa^h = (1/N_fa) Σ h_b·ℓ_fa(b,k)``,
   ``L_sem^h = Σ_b h_b·Σ_{i∈V_b}[c ≥ τ]·CE / Σ_b |V_b|``.

The MIM inputs are always built from the **weak** view ``x_w`` (never the blended or CutMix images), the MIM
terms always use the valid mask ``V`` (iMAS itself keeps ``exclude_padding: false``), masked forwards run with BN
running statistics frozen, and the reconstruction head lives in ``extra_modules`` (trained with the student, not
part of the teacher). With λ_rec = λ_fa = λ_sem = 0 (or all switches off) nothing extra is computed or drawn and
the method is exactly ``imas``. Evaluated network: the teacher (as iMAS).

Logs: ``loss_rec``, ``loss_fa``, ``loss_sem`` are the λ-weighted, easiness-weighted terms as added to the loss
(iMAS's ``extra_losses`` convention), plus ``mim_class_samples``.

Cost: iMAS (up to 4 groups of B images with gradient + 2 no-grad passes) + 1 masked pass on up to K_max·B
class-sample images + 1 semantic-MIM pass on B images (≈ 2× iMAS memory, combined spec §6). Relative to ``supervised``
(1 pass on B_l = B images): iMAS 3–4 image-passes with gradient + 2 without, + N/B (≤ K_max) + 1 for the MIM terms ≈
7–9×. Measured step times: ``benchmarks/perf/README.md``; run wall times: the records in ``results/``.
"""

from __future__ import annotations

from typing import Literal

import pydantic
import torch

from harness.hookspecs import hookimpl
from harness.method import Batch, MethodContext, StepOutput
from methods.components.mim_terms import MIMSettings, MIMTermsMixin
from methods.imas import Imas, ImasStepState

__all__ = ["Combined", "CombinedConfig"]


class CombinedConfig(MIMSettings, Imas.Config):
    """All iMAS keys + the MIM keys of s4mim spec §3.8 (λ defaults 1.0, combined spec §5)."""

    partition_source: Literal["teacher", "student"] = pydantic.Field(
        "teacher", description="pseudo-labels for the partition and semantic MIM: teacher (default) or student")
    mim_weight_by_easiness: bool = pydantic.Field(True, description="weight each image's MIM losses by h")
    lambda_rec: float = pydantic.Field(1.0, ge=0.0)
    lambda_fa: float = pydantic.Field(1.0, ge=0.0)
    lambda_sem: float = pydantic.Field(1.0, ge=0.0)


class Combined(MIMTermsMixin, Imas):
    """combined (iMAS + S4MIM, harness interpretation): iMAS + easiness-weighted MIM terms from the teacher."""

    name = "combined"
    display_name = "combined (iMAS + S4MIM, harness interpretation)"
    table_order = 60
    table_note = ("combined (iMAS + S4MIM, harness interpretation): a harness-defined method (the combined spec); no "
                  "paper defines it, and its S4MIM terms are the harness's interpretation.")
    description = "combined (iMAS + S4MIM, harness interpretation)"
    Config = CombinedConfig

    def __init__(self, model, config: CombinedConfig, context: MethodContext):
        super().__init__(model, config, context)
        self.init_mim_terms()
        self._mim_logs: dict = {}

    def extra_losses(self, unlabeled: Batch, state: ImasStepState) -> dict[str, torch.Tensor]:
        self._mim_logs = {}
        if not self.mim_active:
            return {}
        c, pl = self.config, state.pl
        if c.partition_source == "teacher":
            pseudo, conf = pl.pseudo, pl.conf
        else:
            pseudo, conf = pl.student_pred, pl.student_conf
        mim = self.mim_losses(state.step, pl.x_w, pseudo, conf, pl.valid, c.tau, raw=unlabeled.raw,
                              labeled=self._labeled if c.cmim.apply_to_labeled else None,
                              image_weights=pl.h if c.mim_weight_by_easiness else None)
        self._mim_logs = mim.logs
        return mim.weighted

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        self._labeled = (labeled.image, labeled.label, labeled.valid)
        out = super().training_step(labeled, unlabeled, step)
        out.logs.update(self._mim_logs)
        return out


@hookimpl
def harness_register_methods(registry):
    registry.add(Combined)
