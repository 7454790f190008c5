"""Importing oremap has no side effects on matplotlib: no backend switch, no pyplot."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Modules a notebook user may import; none of them may touch matplotlib's global state.
MODULES = ("oremap.samples", "oremap.evaluate", "oremap.maps", "oremap.ensemble", "oremap.train",
           "oremap.report", "oremap.pipeline")


def _run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its stripped stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_keeps_the_users_backend() -> None:
    out = _run_fresh(f"""
        import matplotlib
        matplotlib.use("svg")
        import {", ".join(MODULES)}
        print(matplotlib.get_backend())
    """)
    assert out.splitlines()[-1] == "svg"


def test_import_does_not_load_pyplot() -> None:
    out = _run_fresh(f"""
        import sys
        import {", ".join(MODULES)}
        print("matplotlib.pyplot" in sys.modules)
    """)
    assert out.splitlines()[-1] == "False"
