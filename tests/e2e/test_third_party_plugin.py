"""A third-party method package, built and installed for real, trains through the CLI."""

import os
import subprocess
import sys
import textwrap

import pytest

from harness import records

PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-entmin"
version = "0.3.1"
dependencies = []

[project.entry-points.harness]
entmin = "harness_entmin"
"""

MODULE = '''
"""Entropy minimisation: supervised loss plus the mean prediction entropy on unlabeled crops."""
import torch
from harness.hookspecs import hookimpl
from harness.method import Method, MethodConfig, StepOutput


class EntMin(Method):
    name = "entmin"
    description = "Entropy minimisation on unlabeled images (third-party test plugin)"

    class Config(MethodConfig):
        weight: float = 0.1

    def training_step(self, labeled, unlabeled, step):
        logits = self.model(torch.cat([labeled.image, unlabeled.image]))
        loss_x = self.context.supervised_loss(logits[: len(labeled)], labeled.label)
        p = logits[len(labeled):].softmax(1)
        ent = -(p * p.clamp_min(1e-8).log()).sum(1)[unlabeled.valid].mean()
        return StepOutput(loss_x + self.config.weight * ent, {"loss_x": loss_x.detach(), "entropy": ent.detach()})


@hookimpl
def harness_register_methods(registry):
    registry.add(EntMin)
'''


def test_installed_plugin_distribution_trains_through_the_cli(tiny_benchmark, tmp_path):
    src = tmp_path / "src"
    (src / "harness_entmin").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "harness_entmin" / "__init__.py").write_text(MODULE)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.fail(f"pip install of the plugin failed:\n{pip.stdout}\n{pip.stderr}")
    env = {**os.environ, "PYTHONPATH": str(site)}
    listing = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], env=env,
                             capture_output=True, text=True, timeout=120)
    line = next(l for l in listing.stdout.splitlines() if l.startswith("entmin"))
    assert "harness-entmin 0.3.1" in line and "Entropy minimisation" in line
    out = tmp_path / "runs"
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--method", "entmin", "--protocol", "tiny-8",
                          "--set", "weight=0.5", "--set", "budget.iterations=4", "--out", str(out),
                          "--data-root", str(tiny_benchmark["data_root"]), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (record_path,) = out.glob("tiny-8/entmin/*/seed0/record.json")
    rec = records.read_json(record_path)
    assert rec["status"] == "finished" and rec["total_steps"] == 4
    cfg = records.read_json(record_path.parent / "config.json")
    assert cfg["method"]["distribution"] == "harness-entmin" and cfg["method"]["config"] == {"weight": 0.5}
    assert "entropy" in records.read_metrics(record_path.parent / "metrics.jsonl")[-1]["train"]
