"""``harness eval``: rebuild a run's method from its run directory and evaluate its checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import records
from ..errors import CheckpointError, HarnessError
from .metrics import bootstrap_miou, pseudo_label_quality
from ..plugins import get_plugin_manager
from ..protocols import Protocol


def load_trained(path: str, protocol_id: str | None = None, data_root: str | None = None,
                 splits_dir: str | None = None, device: str = "auto", split: str = "val") -> dict:
    """Rebuild a run's method from its run directory (or ``latest.pt``) with the checkpoint's weights, and the
    dataset of the ``split`` list of ``protocol_id`` (default: the run's own protocol)."""
    from ..data import build_val_dataset
    from ..data.roots import prepare_data
    from ..train.engine import build_context, read_checkpoint
    from ..models import build_model
    from ..train.run import resolve_device

    ckpt_path = Path(path)
    if ckpt_path.is_dir():
        ckpt_path = ckpt_path / records.CHECKPOINT
    config_path = ckpt_path.parent / records.CONFIG
    if not ckpt_path.exists() or not config_path.exists():
        raise HarnessError(f"{path}: expected a run directory (or its {records.CHECKPOINT}) containing "
                           f"{records.CHECKPOINT} and {records.CONFIG}; missing: "
                           f"{', '.join(str(p) for p in (ckpt_path, config_path) if not p.exists())}")
    doc = records.read_json(config_path)
    pm = get_plugin_manager()
    info = pm.methods.get(doc["method"]["name"])
    trained_on = Protocol.model_validate(doc["protocol"])
    protocol = pm.protocols.get(protocol_id) if protocol_id else trained_on
    if protocol.num_classes != trained_on.num_classes:
        raise HarnessError(f"protocol {protocol.id} has {protocol.num_classes} classes but the checkpoint was "
                           f"trained on {trained_on.id} with {trained_on.num_classes}")
    dev = resolve_device(device)
    data_root_path, split_root = prepare_data(protocol, data_root or (doc["data_root"] if not protocol_id else None),
                                              splits_dir)
    model = build_model(trained_on.model.model_copy(update={"pretrained": False}), trained_on.num_classes).to(dev)
    # the run's own arithmetic (records written before the precision switch ran fp32 on the CPU)
    context = build_context(trained_on, dev, doc["total_steps"], doc.get("precision", "fp32"))
    method = info.cls(model, info.cls.Config.model_validate(doc["method"]["config"]), context)
    method.extra_modules.to(dev)
    state = read_checkpoint(ckpt_path, torch.device("cpu"), "it cannot be evaluated",
                            "Evaluate another run, or rerun this one with --force to train it again")
    try:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {ckpt_path} does not fit the {info.name} run described by {config_path} "
                              f"({type(exc).__name__}: {detail}); it was copied or moved here from another run"
                              ) from None
    return {"doc": doc, "info": info, "protocol": protocol, "method": method, "step": state["step"], "device": dev,
            "dataset": build_val_dataset(protocol, data_root_path, split_root, split=split)}


def evaluate_checkpoint(path: str, protocol_id: str | None = None, data_root: str | None = None,
                        splits_dir: str | None = None, device: str = "auto", split: str = "val",
                        confidence: float | None = None, bootstrap: int = 0) -> dict:
    """Evaluate the checkpoint's evaluated network (``eval_model()``) on the ``split`` list of the protocol
    (``val``; ``labeled``/``unlabeled`` for diagnostics). ``confidence`` τ adds the confident-pixel matrix and
    ``pseudo_label_quality`` of the network's thresholded predictions (see ``harness.evaluation.metrics``). ``bootstrap`` B > 0
    adds ``"bootstrap"``: the evaluation noise of the mIoU from B resamples of the images (:func:`harness.evaluation.metrics.bootstrap_miou`)."""
    from .inference import evaluate

    run = load_trained(path, protocol_id, data_root, splits_dir, device, split)
    doc, info, protocol, method, dev = run["doc"], run["info"], run["protocol"], run["method"], run["device"]
    result = evaluate(method.eval_model(), run["dataset"], protocol.eval, protocol.num_classes, dev,
                      autocast=method.context.autocast, confidence=confidence, per_image=bootstrap > 0)
    result["class_names"] = protocol.class_names
    if bootstrap > 0:
        result["bootstrap"] = bootstrap_miou(result.pop("per_image_confusion"), resamples=bootstrap)
    result["split"] = split
    where = protocol.id if split == "val" else f"the {split} list of {protocol.id}"
    result["summary"] = (f"{info.name} checkpoint at step {run['step']}/{doc['total_steps']} on {where} "
                         f"({result['num_images']} images, {protocol.eval.name}): mIoU {result['miou']:.2f}")
    if bootstrap > 0:
        b = result["bootstrap"]
        result["summary"] += (f"; evaluation noise (bootstrap over the {b['images']} images, {b['resamples']} "
                              f"resamples): std {b['std']:.2f}, 95 % interval {b['low']:.2f}–{b['high']:.2f}")
    if confidence is not None:
        result["confidence"] = confidence
        result["pseudo_labels"] = pseudo_label_quality(result["confusion_matrix"], result["confident_matrix"])
    return result
