"""Seconds and peak memory of every stage of the quick demo (or the full demo).

Each stage runs in a fresh process (``multiprocessing`` spawn) on the same run folder, so the
peak resident memory reported is that stage's own (the interpreter and its imports included,
reported on the first line as ``(imports)`` for reference). The share of the total time shows
which stage a regression is in.

Usage::

    .venv/bin/python benchmarks/pipeline.py            # quick demo
    .venv/bin/python benchmarks/pipeline.py --full     # full demo settings (about 20 min)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _imports_only(queue: mp.Queue) -> None:
    t0 = time.perf_counter()
    import oremap.pipeline  # noqa: F401
    import oremap.train  # noqa: F401

    queue.put((time.perf_counter() - t0, _peak_mib()))


def _one_stage(stage: str, config_path: str, run_dir: str, queue: mp.Queue) -> None:
    from oremap import pipeline
    from oremap.config import load_config

    config = load_config(config_path)
    t0 = time.perf_counter()
    kwargs = {"progress": False}
    pipeline.STAGE_FUNCTIONS[stage](config, Path(run_dir), **kwargs)
    queue.put((time.perf_counter() - t0, _peak_mib()))


def _in_child(target, *args) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"stage process failed with exit code {proc.exitcode}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="full demo settings")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()

    from oremap.contract import MAIN
    from oremap.demo import example_config_text, write_demo
    from oremap.runinfo import RunDir

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="oremap-bench-"))
    try:
        write_demo(work / "data", seed=0)
        cfg = work / "demo.toml"
        cfg.write_text(example_config_text("data", quick=not args.full, seed=0))
        run_dir = work / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        from oremap.config import load_config

        RunDir(run_dir).start(load_config(cfg))
        rows = [("(imports)", *_in_child(_imports_only))]
        stages = list(MAIN)
        if load_config(cfg).ensemble.stability_seeds >= 2:  # as `oremap demo` runs them
            stages.insert(stages.index("ensemble") + 1, "stability")
        for stage in stages:
            rows.append((stage, *_in_child(_one_stage, stage, str(cfg), str(run_dir))))
            print(f"  {stage}: {rows[-1][1]:.1f} s", flush=True)
        total = sum(r[1] for r in rows[1:])
        print(f"\n{'full' if args.full else 'quick'} demo, stage by stage (fresh process each)")
        print(f"{'stage':<12}{'seconds':>10}{'share':>9}{'peak RSS MiB':>15}")
        for name, sec, peak in rows:
            share = "" if name == "(imports)" else f"{sec / total:8.1%}"
            print(f"{name:<12}{sec:>10.1f}{share:>9}{peak:>15.0f}")
        print(f"{'total':<12}{total:>10.1f}")
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
