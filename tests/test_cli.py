"""The command line: help, config example/check, clean errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from oremap.cli import app
from oremap.demo import write_demo

runner = CliRunner()


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "init", "run", "config", "evidence", "samples", "train", "evaluate",
                    "predict", "ensemble", "maps", "report", "stability"):
        assert command in result.output


def test_config_example_is_valid(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "example"])
    assert result.exit_code == 0
    assert "[grid]" in result.output and "# " in result.output
    path = tmp_path / "example.toml"
    path.write_text(result.output)
    write_demo(tmp_path / "data", seed=0)  # what `oremap demo --out tmp_path` writes
    checked = runner.invoke(app, ["config", "check", str(path)])
    assert checked.exit_code == 0, checked.output
    assert "valid (10 models/baselines, 17 evidence layers)" in checked.output


def test_config_check_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('seed = "zero"\n')
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "[seed]" in result.output and "[grid] required key is missing" in result.output
    assert "Traceback" not in result.output


def test_stage_without_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["samples", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "holds no config.toml" in result.output


def test_warnings_are_one_clean_line_said_once() -> None:
    import warnings

    from oremap.cli import _one_line_warning

    text = _one_line_warning(UserWarning("dropped 3 cells\n  (nodata)"), UserWarning,
                             "/x/y.py", 12, "code line")
    assert text == "UserWarning: dropped 3 cells (nodata)"
    assert "\n" not in text and "y.py" not in text
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once")
        for _ in range(3):
            warnings.warn("same message", UserWarning, stacklevel=1)
    assert len(seen) == 1
