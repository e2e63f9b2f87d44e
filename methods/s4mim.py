"""S4MIM (Li, Hao, Shang, Jiao, arXiv 2411.08756) — **harness interpretation**, the s4mim spec.

Status: only the paper's **abstract** is available and no official code has been released. What comes from the
abstract: masked image modeling with a **pixel** reconstruction target; a **class-wise** MIM that reconstructs each
class region independently (masked↔visible connections stay within one class); a **feature aggregation** that
reduces the distance between masked-part and visible-part features of the same class; and a MIM term "in semantic
space" used as a regulariser. Everything else is **this project's interpretation** (s4mim spec §3): the UniMatch
base framework (§2, itself exact), the class partition from the student's weak-view argmax, patch masks and sizes,
the 1×1-conv + PixelShuffle reconstruction head, the L1 loss on masked pixels of the class, prototype cosine
alignment for FA, the masked-view pseudo-label CE for the semantic term, BN-statistics freezing, the weights
λ = 0.5 and the presets. Results of this plugin must be labelled "S4MIM (harness interpretation)"; no published
S4MIM numbers exist to check against.

    L = ½·(L_x + ¼·L_s1 + ¼·L_s2 + ½·L_fp) + λ_rec·L_rec + λ_fa·L_fa + λ_sem·L_sem        (s4mim spec §3.7)

The UniMatch part is :class:`methods.unimatch.UniMatch` unchanged (same draws, same forwards, computed first), so
with every MIM term off (``preset: unimatch``) the loss equals ``unimatch``'s for the same inputs and seed. The MIM
terms come from the shared block ``methods.components.mim_terms`` (also used by ``combined``), reduced here with
plain means. Partition and semantic target: ``ŷ, c`` of forward A (train mode, detached; no extra forward, no
threshold for the partition), valid mask ``V`` of the unlabeled crop.

Switches: ``cmim.enabled``, ``fa.enabled``, ``sem.enabled`` (null = from ``preset``; an explicit value wins over
the preset) and ``lambda_rec``, ``lambda_fa``, ``lambda_sem``; a term that is off (or has λ = 0) is neither
computed nor logged. N = 1 class-sample runs as a duplicated batch of 2 (exactly the single-sample train-mode
forward; BatchNorm in the ASPP pooling branch cannot normalise one 1×1 map); N = 0 skips the masked forward
(L_rec = L_fa = 0). See ``methods/components/mim_terms.py`` for the details and the random-draw order.

Cost: UniMatch's 3 backbone passes + 1 masked CMIM/FA pass on N ≤ K_max·B class-sample images + 1 semantic-MIM
pass on B images (≈ 2× UniMatch at K_max = 3, s4mim spec §3.9). On synthetic-100 the cap binds (the runs log
``mim_class_samples`` close to K_max·B). Measured step times: ``benchmarks/perf/README.md``.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.method import Batch, MethodContext, StepOutput
from methods.components.mim_terms import MIMSettings, MIMTermsMixin
from methods.unimatch import UniMatch, UniMatchConfig

__all__ = ["S4MIM", "S4MIMConfig"]


class S4MIMConfig(MIMSettings, UniMatchConfig):
    """UniMatch keys (``tau``, ``fp``, ``cutmix_source``, …) + the MIM keys of s4mim spec §3.8."""


class S4MIM(MIMTermsMixin, UniMatch):
    """S4MIM (harness interpretation): UniMatch + class-wise MIM, feature aggregation and semantic MIM."""

    name = "s4mim"
    display_name = "S4MIM (harness interpretation)"
    table_order = 50
    table_note = ("S4MIM (harness interpretation): only the paper's abstract is available and no code was released; "
                  "the MIM terms are the harness's documented interpretation (the s4mim spec), not the authors' "
                  "method. No published S4MIM numbers exist.")
    description = ("S4MIM (harness interpretation of the arXiv 2411.08756 abstract; no official code): UniMatch + "
                   "class-wise MIM, feature aggregation, semantic-space MIM")
    Config = S4MIMConfig

    def __init__(self, model, config: S4MIMConfig, context: MethodContext):
        super().__init__(model, config, context)
        self.init_mim_terms()

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> StepOutput:
        if unlabeled is None:
            raise ValueError(f"{self.name} needs an unlabeled batch")
        st = self.unimatch_step(labeled, unlabeled)
        logs = self.unimatch_logs(st)
        if not self.mim_active:
            return StepOutput(st.loss, logs)
        lab = (labeled.image, labeled.label, labeled.valid) if self.mim.cmim.apply_to_labeled else None
        mim = self.mim_losses(step, unlabeled.image, st.pseudo, st.conf, st.valid, self.config.tau,
                              raw=unlabeled.raw, labeled=lab)
        logs.update({k: v.detach() for k, v in mim.reduced.items()}, **mim.logs)
        return StepOutput(st.loss + mim.total(st.loss), logs)


@hookimpl
def harness_register_methods(registry):
    registry.add(S4MIM)
