"""The training regime a record names: which weights a run's encoder started from, read from the
``pretrained_source`` string the model builders write (``harness.models``). Torch-free, so that training records
and result tables (``harness.report``) share it without the report side importing the models."""

from __future__ import annotations


def regime_of(pretrained_source: str | None) -> str:
    """Which regime a run's encoder started in, from its record's ``pretrained_source``: ``from scratch``,
    ``pretrained (shapes-v1)`` for built-in weights, ``pretrained (ImageNet)``, ``pretrained (DINOv2)``,
    ``pretrained (file)`` (a ViT's weights file), or ``unknown`` (old records)."""
    src = str(pretrained_source or "")
    if src.startswith("random"):
        return "from scratch"
    if src.startswith("builtin "):
        return f"pretrained ({src.split()[1].rstrip(':')})"
    if src.startswith("imagenet"):
        return "pretrained (ImageNet)"
    if src.startswith("dinov2"):
        return "pretrained (DINOv2)"
    if src.startswith("file"):
        return "pretrained (file)"
    return "unknown"
