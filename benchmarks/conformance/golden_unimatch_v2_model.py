"""Golden outputs of the official UniMatch V2 model (LiheYoung/UniMatch-V2) for ``tests/conformance``.

    python benchmarks/conformance/golden_unimatch_v2_model.py /path/to/UniMatch-V2 [--out FILE]

Builds the official ``DPT`` (``model/semseg/dpt.py``) in the ``small`` configuration of UniMatch V2's training
scripts (DINOv2 ViT-S/14, features 64, out_channels 48/96/192/384), loads the weights of
``tests/conformance/vit_cases.py`` (drawn by entry name), and runs, on that module's inputs: the encoder's
``get_intermediate_layers`` at the model's layer indices, the eval forward, and the ``comp_drop=True`` forward
after ``torch.manual_seed``. Writes ``tests/conformance/golden/unimatch_v2_model.json`` with the official encoder's
state-dict keys, and prints the differences to the harness's ``dinov2_small`` measured on this machine.

The official code needs only torch here: its DINOv2 layers fall back to plain PyTorch attention when xFormers is
missing (it logs a warning); ``.cuda()`` is the identity (``official.cpu_shims``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import official  # benchmarks/conformance/official.py (puts the repository root on sys.path)
from tests.conformance import cases, vit_cases

REPO = "LiheYoung/UniMatch-V2"


def official_model():
    official.cpu_shims()
    from model.semseg.dpt import DPT

    model = DPT(**vit_cases.OFFICIAL_CONFIG, nclass=vit_cases.CLASSES)
    state = model.state_dict()
    drawn = vit_cases.seeded_weights({k: v.shape for k, v in state.items()})
    model.load_state_dict(drawn)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="path of a checkout of https://github.com/LiheYoung/UniMatch-V2")
    ap.add_argument("--out", default=str(cases.GOLDEN_DIR / "unimatch_v2_model.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = official.checkout(args.checkout, "model/semseg/dpt.py")
    t0 = time.time()
    model = official_model()
    layers = model.intermediate_layer_idx[model.encoder_size]
    backbone_keys = [f"backbone.{k}" for k in model.backbone.state_dict()]
    files = {"model": "model/semseg/dpt.py", "encoder": "model/backbone/dinov2.py"}
    golden = {"about": official.about(REPO, root, files, "golden_unimatch_v2_model.py <UniMatch-V2 checkout>"),
              "config": {**vit_cases.OFFICIAL_CONFIG, "layers": list(layers), "classes": vit_cases.CLASSES},
              "official_backbone_keys": backbone_keys, "outputs": {}}
    for name, x in vit_cases.inputs().items():
        golden["outputs"][name] = {
            "inputs_fingerprint": cases.fingerprint(x),
            **vit_cases.outputs(lambda t: model.backbone.get_intermediate_layers(t, layers),
                                lambda t, comp: model(t, comp_drop=comp), x)}
    with tempfile.TemporaryDirectory() as tmp:
        ours = vit_cases.harness_outputs(backbone_keys, Path(tmp))
    measured = {k: official.max_differences(golden["outputs"][k], ours[k]) for k in ours}
    official.finish(args.out, golden, measured, t0)


if __name__ == "__main__":
    main()
