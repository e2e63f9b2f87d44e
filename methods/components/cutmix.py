"""iMAS easiness-triggered easy↔hard CutMix (imas spec §3.3, §9).

The batch is split into consecutive groups of ``group_size`` (None = one group of the whole batch). Per
group: one trigger draw (fires iff u < mean h, or a fixed probability), one box side ratio v, pairing
within the group. Box centres are drawn per image. Mixed tensors are always built from the **original**
(unmixed) inputs; inputs are never modified.

Random draws come from ``generator`` when given, else from torch's global CPU RNG, on that device; the
few values are then moved to the data device. ``imas_cutmix`` draws, in this order: trigger u (G),
v (G), centre rows r (B), centre columns q (B), and (``pairing='random'`` only) one permutation key per
image (B).

Several processes (each holding a contiguous share of the global batch, as the harness loader gives it):
when the share b is a multiple of ``group_size`` every group lies in one process and ``imas_cutmix`` runs there
unchanged. When ``group_size`` is a multiple of b, a group spans ``group_size / b`` consecutive ranks (the
official code's groups are its device batches; this keeps the harness's groups whatever the device count):
``imas_cutmix_across_ranks`` draws on every rank as above with G = 1, gathers h and the draws of all ranks,
uses the trigger u and side ratio v of the group's first rank, pairs over the whole group, and gathers the
images (only in steps where some group fired) so that a partner on another rank can be pasted from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from harness.augment import integer_draws, uniform_draws

Tensor = torch.Tensor

__all__ = [
    "ImasBox",
    "CutMixResult",
    "easy_hard_partners",
    "group_partners",
    "cutmix_trigger",
    "imas_box_from_draws",
    "imas_boxes",
    "boxes_to_mask",
    "mix_with_partners",
    "easy_hard_cutmix",
    "imas_cutmix",
    "imas_cutmix_across_ranks",
]


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return uniform_draws(n, generator).cpu()


def _randint(low: int, high: int, n: int, generator: torch.Generator | None) -> Tensor:
    return integer_draws(low, high, n, generator).cpu()


def _num_groups(batch: int, group_size: int | None) -> int:
    if group_size is None or group_size <= 0:
        return 1
    if batch % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide the unlabeled batch size {batch}")
    return batch // group_size


# ----------------------------------------------------------------------------------------------------
# pairing and trigger


def easy_hard_partners(h: Tensor) -> Tensor:
    """Partner index per image: stable ascending sort o of h, partner(o[k]) = o[B−1−k] (an involution)."""
    h = torch.as_tensor(h).detach().reshape(-1)
    order = torch.sort(h, stable=True).indices
    partners = torch.empty_like(order)
    partners[order] = order.flip(0)
    return partners


def group_partners(
    h: Tensor,
    group_size: int | None = None,
    pairing: str = "easy_hard",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Global partner indices pairing within consecutive groups.

    ``pairing='easy_hard'``: :func:`easy_hard_partners` per group. ``'random'`` (ablation): the same
    mirror pairing on a random order of the group (still an involution)."""
    h = torch.as_tensor(h).detach().reshape(-1)
    B = h.numel()
    G = _num_groups(B, group_size)
    gs = B // G
    if pairing == "easy_hard":
        key = h
    elif pairing == "random":
        key = _rand(B, generator).to(h.device)
    else:
        raise ValueError(f"unknown pairing {pairing!r}")
    out = torch.empty(B, dtype=torch.long, device=h.device)
    for g in range(G):
        sl = slice(g * gs, (g + 1) * gs)
        out[sl] = easy_hard_partners(key[sl]) + g * gs
    return out


def cutmix_trigger(
    h: Tensor,
    generator: torch.Generator | None = None,
    group_size: int | None = None,
    prob: float | None = None,
) -> Tensor:
    """Per group (G,) bool: u ~ U(0,1) < mean(h of the group) (or < ``prob`` when given)."""
    h = torch.as_tensor(h).detach().reshape(-1).to(torch.float64).cpu()
    G = _num_groups(h.numel(), group_size)
    u = _rand(G, generator)
    p = h.view(G, -1).mean(dim=1) if prob is None else torch.full((G,), float(prob), dtype=torch.float64)
    return u < p


# ----------------------------------------------------------------------------------------------------
# boxes


class ImasBox(NamedTuple):
    """Rows [r0, r1), columns [c0, c1)."""

    r0: int
    r1: int
    c0: int
    c1: int


def imas_box_from_draws(H: int, W: int, v: float, r: int, q: int) -> ImasBox:
    """Box of side ratio v centred at row r, column q: cut = ⌊size·v⌋, half = ⌊cut/2⌋, clipped to the image."""
    cut_h, cut_w = int(H * v), int(W * v)
    hh, hw = cut_h // 2, cut_w // 2
    return ImasBox(max(r - hh, 0), min(r + hh, H), max(q - hw, 0), min(q + hw, W))


def _boxes(H: int, W: int, v_img: Tensor, r: Tensor, q: Tensor) -> Tensor:
    cut_h = torch.floor(H * v_img).to(torch.int64)
    cut_w = torch.floor(W * v_img).to(torch.int64)
    hh, hw = cut_h // 2, cut_w // 2
    return torch.stack(
        [(r - hh).clamp(min=0), (r + hh).clamp(max=H), (q - hw).clamp(min=0), (q + hw).clamp(max=W)], dim=1
    )


def imas_boxes(
    H: int,
    W: int,
    B: int,
    side_range: tuple[float, float] = (0.1, 0.9),
    generator: torch.Generator | None = None,
    group_size: int | None = None,
    device=None,
) -> Tensor:
    """Boxes (B×4 int64: r0, r1, c0, c1): one v = lo + (hi−lo)·U per group, per-image centres
    r ~ U{⌊H/16⌋, …, H−1}, q ~ U{⌊W/16⌋, …, W−1}. Draw order: v (G), r (B), q (B)."""
    G = _num_groups(B, group_size)
    lo, hi = side_range
    v = lo + (hi - lo) * _rand(G, generator)
    r = _randint(H // 16, H, B, generator)
    q = _randint(W // 16, W, B, generator)
    boxes = _boxes(H, W, v.repeat_interleave(B // G), r, q)
    return boxes.to(device) if device is not None else boxes


def boxes_to_mask(boxes: Tensor, H: int, W: int) -> Tensor:
    """B×H×W bool mask of boxes given as (r0, r1, c0, c1) rows."""
    boxes = torch.as_tensor(boxes).view(-1, 4)
    dev = boxes.device
    rows = torch.arange(H, device=dev).view(1, H, 1)
    cols = torch.arange(W, device=dev).view(1, 1, W)
    b = boxes.view(-1, 4, 1, 1)
    return (rows >= b[:, 0]) & (rows < b[:, 1]) & (cols >= b[:, 2]) & (cols < b[:, 3])


# ----------------------------------------------------------------------------------------------------
# mixing


def mix_with_partners(t: Tensor, mask: Tensor, partners: Tensor) -> Tensor:
    """New tensor: t, with each image's ``mask`` region replaced by the original content of its partner.

    ``t`` is B×H×W or B×C×H×W; ``mask`` B×H×W bool."""
    partners = partners.to(t.device)
    m = mask.to(t.device)
    if t.dim() == m.dim() + 1:
        m = m.unsqueeze(1)
    return torch.where(m, t[partners], t)


def easy_hard_cutmix(
    x: Tensor,
    y: Tensor,
    c: Tensor,
    h: Tensor | None,
    boxes: Tensor,
    partners: Tensor | None = None,
    group_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mixed (image, pseudo-label, confidence): inside its box, image i takes the original content of
    partner(i) (partners from ``h`` by easy↔hard pairing within groups when not given)."""
    if partners is None:
        if h is None:
            raise ValueError("either h or partners is required")
        partners = group_partners(h, group_size)
    H, W = x.shape[-2:]
    mask = boxes_to_mask(boxes.to(x.device), H, W)
    return mix_with_partners(x, mask, partners), mix_with_partners(y, mask, partners), mix_with_partners(
        c, mask, partners
    )


@dataclass
class CutMixResult:
    image: Tensor  # B×C×H×W mixed (groups that did not fire are unchanged copies)
    label: Tensor  # B×H×W
    conf: Tensor  # B×H×W
    fired: Tensor  # (G,) bool per group
    fired_images: Tensor  # (B,) bool: image belongs to a group that fired
    partners: Tensor  # (B,) global partner indices
    boxes: Tensor  # (B, 4) r0, r1, c0, c1
    mask: Tensor  # B×H×W bool box masks
    extra: tuple[Tensor, ...] = ()  # extra tensors mixed the same way (e.g. a valid mask)


def imas_cutmix(
    x: Tensor,
    y: Tensor,
    c: Tensor,
    h: Tensor,
    group_size: int | None = None,
    side_range: tuple[float, float] = (0.1, 0.9),
    trigger: str | float = "easiness",
    pairing: str = "easy_hard",
    generator: torch.Generator | None = None,
    extra: Sequence[Tensor] = (),
) -> CutMixResult:
    """The whole iMAS CutMix branch for an unlabeled batch (all groups at once).

    Random numbers are drawn for every group whether it fires or not, so the RNG stream does not depend
    on the data. The mixed tensors cover the whole batch; select ``fired_images`` for the loss."""
    B, _, H, W = x.shape
    G = _num_groups(B, group_size)
    prob = None if trigger == "easiness" else float(trigger)
    fired = cutmix_trigger(h, generator, group_size, prob)
    boxes = imas_boxes(H, W, B, side_range, generator, group_size)
    partners = group_partners(h, group_size, pairing, generator)
    mask = boxes_to_mask(boxes, H, W).to(x.device)
    fired_images = fired.repeat_interleave(B // G).to(x.device)
    mask = mask & fired_images.view(B, 1, 1)
    partners = partners.to(x.device)
    mixed = tuple(mix_with_partners(t, mask, partners) for t in (x, y, c, *extra))
    return CutMixResult(
        image=mixed[0],
        label=mixed[1],
        conf=mixed[2],
        fired=fired,
        fired_images=fired_images,
        partners=partners,
        boxes=boxes,
        mask=mask,
        extra=mixed[3:],
    )


def imas_cutmix_across_ranks(
    x: Tensor,
    y: Tensor,
    c: Tensor,
    h: Tensor,
    group_size: int,
    rank: int,
    world: int,
    side_range: tuple[float, float] = (0.1, 0.9),
    trigger: str | float = "easiness",
    pairing: str = "easy_hard",
    generator: torch.Generator | None = None,
    extra: Sequence[Tensor] = (),
) -> CutMixResult:
    """The CutMix branch for this rank's b images when a group spans ``group_size / b`` ranks (see the module
    docstring). Every rank of the run must call it in the same step (it gathers over all of them).

    Returns this rank's images as one (partial) group: ``fired`` (1,) is the group's decision, ``partners`` are
    indices within the group (this rank's images are ``(rank % k)·b … + b − 1`` of it, k = group_size / b)."""
    from harness.train.distributed import all_gather_stack

    B, _, H, W = x.shape
    if group_size <= B or group_size % B or world % (group_size // B):
        raise ValueError(f"imas_cutmix_across_ranks: group_size {group_size} must be a multiple of the per-process "
                         f"batch {B}, and the world size {world} a multiple of group_size / {B}")
    k = group_size // B
    lead = rank - rank % k  # the group's first rank
    lo, hi = side_range
    u = _rand(1, generator)
    v = lo + (hi - lo) * _rand(1, generator)
    r = _randint(H // 16, H, B, generator)
    q = _randint(W // 16, W, B, generator)
    keys = _rand(B, generator) if pairing == "random" else torch.zeros(B, dtype=torch.float64)
    if pairing not in ("easy_hard", "random"):
        raise ValueError(f"unknown pairing {pairing!r}")
    h64 = torch.as_tensor(h).detach().reshape(-1).to(torch.float64).cpu()
    draws = torch.cat([u.to(torch.float64), v.to(torch.float64), h64, keys]).to(x.device)
    table = all_gather_stack(draws, world).cpu()  # world × (2 + 2B)
    groups = table.view(world // k, k, 2 + 2 * B)
    h_groups = groups[:, :, 2:2 + B].reshape(world // k, group_size)
    p_groups = (h_groups.mean(dim=1) if trigger == "easiness"
                else torch.full((world // k,), float(trigger), dtype=torch.float64))
    fired_all = groups[:, 0, 0] < p_groups  # u of each group's first rank
    g = rank // k
    fired = fired_all[g:g + 1]
    key = h_groups[g] if pairing == "easy_hard" else groups[g, :, 2 + B:].reshape(group_size)
    mine = slice((rank - lead) * B, (rank - lead + 1) * B)
    partners = easy_hard_partners(key)[mine].to(x.device)
    boxes = _boxes(H, W, table[lead, 1].expand(B), r, q)
    fired_images = fired.repeat(B).to(x.device)
    mask = boxes_to_mask(boxes, H, W).to(x.device) & fired_images.view(B, 1, 1)
    tensors = (x, y, c, *extra)
    if bool(fired_all.any()):  # every rank takes this branch together: fired_all is the same everywhere
        mixed = []
        for t in tensors:
            group = all_gather_stack(t, world)[lead:lead + k].reshape(group_size, *t.shape[1:])
            m = mask.view(B, *([1] * (t.dim() - 3)), H, W) if t.dim() > 3 else mask
            mixed.append(torch.where(m, group[partners], t))
    else:
        mixed = [t.clone() for t in tensors]
    return CutMixResult(image=mixed[0], label=mixed[1], conf=mixed[2], fired=fired, fired_images=fired_images,
                        partners=partners, boxes=boxes, mask=mask, extra=tuple(mixed[3:]))
