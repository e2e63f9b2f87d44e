"""The plugin manager loads methods through entry points and survives broken plugins."""

import os
import subprocess
import sys
import textwrap

import pytest

from harness.errors import ConfigError
from harness.plugins import PluginManager


def test_builtin_methods_come_from_the_entry_point_group():
    pm = PluginManager()
    info = pm.methods.get("supervised")
    assert info.distribution == "ssseg-harness" and info.version
    assert not pm.failures


def test_unknown_method_lists_available_names():
    with pytest.raises(ConfigError, match="unknown method 'nope'; available methods: .*supervised"):
        PluginManager().methods.get("nope")


def _fake_distribution(site, name, module_source, ep_value):
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[harness]\n{name} = {ep_value}\n")
    (site / f"{ep_value}.py").write_text(textwrap.dedent(module_source))


def test_broken_plugin_is_reported_and_others_stay_usable(tmp_path):
    _fake_distribution(tmp_path, "broken-plugin", "raise ImportError('needs a library that is not installed')\n",
                       "broken_plugin_mod")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list", "methods"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "supervised" in out.stdout and "ssseg-harness" in out.stdout
    assert "broken-plugin" in out.stderr and "needs a library that is not installed" in out.stderr


def test_list_protocols_shows_counts_crop_and_eval():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list", "protocols"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("voc-732 "))
    for word in ("voc", "voc-classic", "732", "9850", "321", "whole", "98480"):
        assert word in line.split(), word
    assert "slide801" in next(l for l in out.stdout.splitlines() if l.startswith("cityscapes-186 "))
