"""``harness run --config RUN.yaml``: the file's settings are the same settings as --set, the command line wins,
and an error names where a bad value came from (the file, --set, a grid's variant)."""

from __future__ import annotations

import pytest

from harness.cli import build_parser, run_spec_from_args
from harness.errors import ConfigError
from harness.launch.grid_file import GridFile, expand, validate_runs
from harness.train.run_file import read_run_file
from harness.train.run import RunSpec, resolve, run_dir


def _spec(argv):
    return run_spec_from_args(build_parser().parse_args(["run", *argv]))


def test_file_settings_nested_or_dotted_flatten_to_set_keys(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: unimatch\nprotocol: synthetic-100\nseed: 2\n"
                 "settings:\n  tau: 0.9\n  budget: {iterations: 60}\n  cutmix_p: 0.25\n")
    rf = read_run_file(f)
    assert (rf.method, rf.protocol, rf.seed) == ("unimatch", "synthetic-100", 2)
    assert rf.settings == {"tau": 0.9, "budget.iterations": 60, "cutmix_p": 0.25}


def test_a_run_from_a_file_is_the_run_from_the_same_flags(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: unimatch\nprotocol: synthetic-100\nseed: 1\nsettings: {tau: 0.9, budget.iterations: 60}\n")
    from_file = _spec(["--config", str(f)])
    from_flags = _spec(["--method", "unimatch", "--protocol", "synthetic-100", "--seed", "1",
                        "--set", "tau=0.9", "--set", "budget.iterations=60"])
    assert run_dir(from_file) == run_dir(from_flags)
    assert resolve(from_file).config == resolve(from_flags).config


def test_the_command_line_wins_over_the_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: unimatch\nprotocol: synthetic-100\nseed: 1\nsettings: {tau: 0.9}\n")
    spec = _spec(["--config", str(f), "--seed", "3", "--method", "fixmatch", "--set", "tau=0.8"])
    assert (spec.method, spec.seed, spec.overrides["tau"], spec.origins["tau"]) == ("fixmatch", 3, 0.8, "--set")
    assert run_dir(spec) == run_dir(RunSpec("fixmatch", "synthetic-100", 3, overrides={"tau": 0.8}))


@pytest.mark.parametrize("text, expected", [
    ("method: [a]\n", r"'method' must be a name"),
    ("protocol: synthetic-100\nepochs: 3\n", r"unknown key\(s\) 'epochs'.*settings:"),
    ("seed: one\n", r"'seed' must be a whole number"),
    ("settings: [tau]\n", r"'settings' must be a mapping"),
    ("settings: {budget: {iterations: 5}, budget.iterations: 6}\n", r"setting 'budget.iterations' is given twice"),
    ("method: unimatch\n  protocol: : x\n", r"not valid YAML at line 2"),
    ("- a\n- b\n", r"expected a mapping"),
])
def test_bad_files_name_the_file_and_what_was_expected(tmp_path, text, expected):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=expected) as err:
        read_run_file(f)
    assert str(f) in str(err.value)


def test_missing_file_and_missing_method_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"--config .*nope.yaml: cannot read it"):
        read_run_file(tmp_path / "nope.yaml")
    f = tmp_path / "run.yaml"
    f.write_text("protocol: synthetic-100\n")
    with pytest.raises(ConfigError, match=r"needs --method \(on the command line or as 'method:'"):
        _spec(["--config", str(f)])


def test_a_bad_value_names_where_it_came_from(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: unimatch\nprotocol: synthetic-100\nsettings: {tau: 2.0, budget: {iterations: -5}}\n")
    with pytest.raises(ConfigError, match=rf"given by --config {f}"):  # the protocol section
        resolve(_spec(["--config", str(f)]))
    with pytest.raises(ConfigError, match=rf"invalid --config {f} for method 'unimatch'.*tau"):
        resolve(_spec(["--config", str(f), "--set", "budget.iterations=5"]))
    with pytest.raises(ConfigError, match=r"invalid --set for method 'unimatch'.*tau"):
        resolve(_spec(["--config", str(f), "--set", "budget.iterations=5", "--set", "tau=3"]))


def test_a_grid_names_the_variant_a_bad_value_came_from():
    grid = GridFile.model_validate({"name": "g", "methods": ["unimatch"], "protocols": ["synthetic-100"],
                                    "variants": [{"name": "hot", "set": {"tau": 1.5}}]})
    bad = validate_runs(expand(grid))
    assert len(bad) == 1 and "invalid grid g (variant hot) for method 'unimatch'" in bad[0][1]
