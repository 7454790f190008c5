"""The one progress display (oremap.progress): rich bars on a terminal, one plain line per task
elsewhere, never carriage-return frames in a log."""

from __future__ import annotations

import ast
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rich.console import Console
from rich.logging import RichHandler

from oremap.progress import progress, progress_console

SRC = Path(__file__).resolve().parents[1] / "src" / "oremap"


def _file_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100), out


def test_log_file_gets_one_line_per_task_and_no_frames() -> None:
    console, out = _file_console()
    assert not console.is_terminal
    with progress(10, "held-out crops", "member", console=console) as bar:
        for _ in range(10):
            bar.update()
    with progress(4, "sliding-window maps", "tile", console=console) as bar:
        bar.update(4)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("held-out crops: 10/10 members in ")
    assert lines[1].startswith("sliding-window maps: 4/4 tiles in ")


def test_transient_and_disabled_print_nothing_in_a_log() -> None:
    console, out = _file_console()
    with progress(3, "lenet 1/2", "batch", transient=True, console=console) as bar:
        bar.update(3)
    with progress(3, "predict", "member", disable=True, console=console) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    assert bar.n == 3  # a disabled bar still counts


def test_interrupted_task_says_how_far_it_got() -> None:
    console, out = _file_console()
    with pytest.raises(KeyError), progress(5, "predict", "member", console=console) as bar:
        bar.update(2)
        raise KeyError("boom")
    assert out.getvalue().startswith("predict: 2/5 members in ")


def test_terminal_draws_a_rich_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    with progress(8, "crops", "cell", console=console) as bar:
        bar.update(8)
    text = out.getvalue()
    assert "crops" in text and "8/8" in text and "━" in text and "cells" in text


def test_nested_bars_stack_and_reset_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    with progress(2, "evidence layers", "layer", console=console) as layers, \
            progress(4, "windows", "window", transient=True, console=console) as windows:
        for name in ("Au", "Cu"):
            windows.reset(3, name)
            windows.update(3)
            layers.update()
    assert (windows.n, windows.total, layers.n) == (3, 3, 2)
    last = out.getvalue().rsplit("\x1b[?25h", 1)[0]  # up to the final frame's end
    assert "evidence layers" in last and "2/2" in last and "Cu" in last


def test_nested_bars_in_a_log_print_the_outer_line_only() -> None:
    console, out = _file_console()
    with progress(2, "evidence layers", "layer", console=console) as layers, \
            progress(4, "windows", "window", transient=True, console=console) as windows:
        windows.reset(5, "Au")
        windows.update(5)
        layers.update(2)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("evidence layers: 2/2 layers in ")


def test_updates_from_threads_are_all_counted() -> None:
    console, _ = _file_console()
    with progress(400, "tiles", "tile", console=console) as bar, \
            ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: bar.update(), range(400)))
    assert bar.n == 400


def test_bars_draw_on_the_logging_console(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(file=io.StringIO())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.NullHandler(), RichHandler(console=console)])
    assert progress_console() is console
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
    fallback = progress_console()
    assert fallback is not console and fallback.stderr and progress_console() is fallback


def test_no_module_uses_tqdm_or_its_own_rich_bar() -> None:
    """Every progress display goes through oremap.progress."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""])
                if any(n.split(".")[0] == "tqdm" for n in names):
                    offenders.append(rel)
                if any(n == "rich.progress" for n in names) and rel != "progress.py":
                    offenders.append(rel)
    assert offenders == []
