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


def _run_cli(args, site):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_plugin_that_failed_to_load_is_named_where_its_method_is_used(tmp_path):
    # a typo in the entry point's module: the method's name is the entry point's name
    _fake_distribution(tmp_path, "flexmatch", "", "flexmatch_mod")
    (tmp_path / "flexmatch-0.1.dist-info" / "entry_points.txt").write_text("[harness]\nflexmatch = flexmatch_mdo\n")
    out = _run_cli(["run", "--method", "flexmatch", "--protocol", "synthetic-100"], tmp_path)
    assert out.returncode == 2
    assert "unknown method 'flexmatch'" in out.stderr
    assert "failed to load" in out.stderr and "No module named 'flexmatch_mdo'" in out.stderr
    assert "Traceback" not in out.stderr


def test_misspelt_hook_and_raising_hook_are_reported_and_builtins_still_run(tmp_path):
    _fake_distribution(tmp_path, "typo-plugin", """
        from harness.hookspecs import hookimpl

        @hookimpl
        def harness_register_methods(registry):
            raise RuntimeError("bug in my plugin")

        def harness_register_method(registry):
            pass
        """, "typo_plugin_mod")
    from harness.plugins import PluginManager

    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        importlib.invalidate_caches()
        pm = PluginManager()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("typo_plugin_mod", None)
    errors = [f.describe() for f in pm.failures]
    assert any("typo-plugin" in e and "harness_register_methods raised RuntimeError: bug in my plugin" in e
               for e in errors), errors
    assert any("unknown hook 'harness_register_method'; did you mean 'harness_register_methods'?" in e
               for e in errors), errors
    assert pm.methods.get("supervised").name == "supervised"  # the built-ins are untouched


def test_an_observer_that_raises_never_ends_a_run(capsys):
    from harness.hookspecs import hookimpl
    from harness.plugins import PluginManager

    class Logger:
        calls = 0

        @hookimpl
        def harness_run_event(self, event, payload):
            Logger.calls += 1
            raise ValueError("logger offline")

    pm = PluginManager()
    pm.pm.register(Logger(), name="bad-logger")
    pm.emit("start", {})
    pm.emit("eval", {"miou": 1.0})
    assert Logger.calls == 2
    err = capsys.readouterr().err
    assert err.count("bad-logger") == 1 and "logger offline" in err and "the run goes on" in err


def test_list_settings_shows_types_defaults_and_the_protocols_values():
    from harness.cli import main
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["list", "settings", "unimatch", "--protocol", "cityscapes-186"]) == 0
    rows = {line.split()[0]: line.split() for line in buf.getvalue().splitlines() if line[:1].isalpha()}
    assert rows["tau"][1:5] == ["float", "0.95", "0.0", "*"]          # Cityscapes sets τ = 0
    assert rows["cutmix_source"][1:4] == ["second_crop", "|", "shuffled"]
    assert rows["fp"][1:4] == ["bool", "True", "True"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["list", "settings"]) == 2                         # which method?
        assert main(["list", "settings", "nope"]) == 2


def test_a_plugins_bad_default_is_blamed_on_the_plugin_not_on_set():
    import pydantic

    from harness.method import Method, MethodConfig
    from harness.plugins import MethodInfo
    from harness.train.run import build_method_config

    class Bad(Method):
        name = "bad"
        description = "bad default"

        class Config(MethodConfig):
            model_config = pydantic.ConfigDict(extra="forbid", validate_default=True)
            tau: float = pydantic.Field(default=1.5, le=1.0)

    info = MethodInfo("bad", Bad, "bad-plugin", "0.1", "bad default")
    proto = PluginManager().protocols.get("synthetic-100")
    with pytest.raises(ConfigError, match=r"method 'bad' \(bad-plugin 0.1.*invalid default settings.*tau"):
        build_method_config(info, proto, {})
    good = PluginManager().methods.get("unimatch")
    with pytest.raises(ConfigError, match=r"invalid --set for method 'unimatch'.*tau"):
        build_method_config(good, proto, {"tau": 2.0})
