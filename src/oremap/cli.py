"""The ``oremap`` command line: a few lines per command, all logic in :mod:`oremap.pipeline`."""

from __future__ import annotations

import errno
import logging
import sys
import traceback
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from oremap import errors
from oremap.errors import OremapError
from oremap.stages import STAGES, file
from oremap.template import TEMPLATE_PATHS, write_template

__all__ = ["app", "describe_os_error", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Mineral prospectivity mapping with deep-learning ensembles.")
config_app = typer.Typer(no_args_is_help=True, help="Write or check a TOML configuration.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

RunDirArg = typer.Argument(..., help="run folder made by `oremap run` (holds config.toml)")
ConfigOpt = typer.Option(None, "--config", "-c",
                         help="use this TOML instead of the run folder's config.toml")


_STATE = {"verbose": False}


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    return f"{category.__name__}: {' '.join(str(message).split())}"


#: oremap's own warnings (dropped data, optimistic splits): messages to the user, always shown
_OUR_WARNINGS = frozenset(name for name, obj in vars(errors).items()
                          if isinstance(obj, type) and issubclass(obj, Warning))


class _DebugWarnings(logging.Filter):
    """Every other Python warning (from libraries: deprecations, numerical noise) is a DEBUG
    record of ``py.warnings``, shown with ``-v`` only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().split(":", 1)[0] in _OUR_WARNINGS:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("py.warnings").isEnabledFor(logging.DEBUG)


@app.callback()
def setup(verbose: bool = typer.Option(False, "--verbose", "-v",
                                       help="debug logging, and tracebacks of errors")) -> None:
    """Set up logging and the headless matplotlib backend once for every command."""
    import matplotlib

    matplotlib.use("Agg")  # the library never picks a backend; the command line does
    _STATE["verbose"] = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    logging.captureWarnings(True)
    # a warning is one line (no source path or code line), said once per message; only
    # oremap's own at WARNING, the rest at DEBUG (-v)
    warnings.formatwarning = _one_line_warning
    py_warnings = logging.getLogger("py.warnings")
    for old in [f for f in py_warnings.filters if isinstance(f, _DebugWarnings)]:
        py_warnings.removeFilter(old)
    py_warnings.addFilter(_DebugWarnings())
    if not sys.warnoptions:
        warnings.simplefilter("once")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.getLogger("rasterio").setLevel(logging.WARNING)
    logging.getLogger("pyogrio").setLevel(logging.WARNING)


def _fail(exc: OremapError) -> None:
    _print_error(str(exc))
    raise typer.Exit(code=2)


def _print_error(message: str) -> None:
    if _STATE["verbose"]:
        console.print(traceback.format_exc(), markup=False, highlight=False)
    console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def describe_os_error(exc: OSError) -> str:
    """A plain message for a failed file operation: what, which file, and what to do."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return (f"the disk is full (writing{where}); free space or choose an --out on another "
                "disk, then run the same command again: finished work is kept and resumed.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"permission denied:{where} ({exc.strerror}); check that you may read the "
                "inputs and write the run folder, or choose another --out.")
    if exc.errno == errno.ENOENT:
        return f"no such file or folder:{where}; check the path."
    if exc.errno == errno.EISDIR:
        return f"{where.strip()} is a folder where a file was expected; check the path."
    return f"{exc.strerror or type(exc).__name__}:{where} ({exc})"


def main() -> None:
    """The ``oremap`` console script: the typer app, with clean messages for every failure.

    Bad input (any OremapError) and failed file operations (missing, unreadable, permission,
    disk full) end with one line naming the problem and exit code 2; an unexpected error with
    one line and exit code 1. ``-v`` adds the traceback.
    """
    try:
        app()
    except OremapError as exc:
        _print_error(str(exc))
        sys.exit(2)
    except OSError as exc:
        _print_error(describe_os_error(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to resume", style="yellow")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
        _print_error(f"internal error ({type(exc).__name__}: {exc}); please report it with "
                     "the output of the same command run with -v.")
        sys.exit(1)


def _help(stage: str, label: str = "") -> str:
    """A stage command's help: the stage table's summary (:data:`oremap.stages.STAGES`)."""
    summary = STAGES[stage].summary
    return f"{label}: {summary}" if label else summary[0].upper() + summary[1:]


def _stage(name: str, run_dir: Path, config: Path | None, **kwargs: object) -> Path:
    from oremap import pipeline  # torch, matplotlib: only when a stage runs

    try:
        return pipeline.run_stage(name, run_dir, config, **kwargs)
    except OremapError as exc:
        _fail(exc)
        raise  # unreachable


@app.command()
def demo(out: Path = typer.Option(Path("oremap-demo"), "--out", "-o", help="output folder"),
         quick: bool = typer.Option(False, "--quick", help="few epochs and crops (~2 min)"),
         seed: int = typer.Option(0, help="seed of the synthetic study area and the run"),
         overwrite: bool = typer.Option(False, help="start the run folder afresh")) -> None:
    """Generate the embedded demo study area and run the complete pipeline on it."""
    from oremap.demo import run_demo  # the pipeline: torch, matplotlib

    try:
        report = run_demo(out, quick=quick, seed=seed, overwrite=overwrite)
    except OremapError as exc:
        _fail(exc)
    typer.echo(f"report: {report}")


@app.command("run")
def run_cmd(config: Path = typer.Argument(..., help="TOML configuration"),
            out: Path = typer.Option(None, "--out", "-o",
                                     help="run folder (default runs/<config name>)"),
            overwrite: bool = typer.Option(
                False, help="first delete what oremap wrote in the run folder (only a folder "
                "oremap made; never your own files)"),
            no_resume: bool = typer.Option(False, "--no-resume",
                                           help="retrain even if checkpoints exist"),
            scheduler: str = typer.Option(
                None, "--scheduler", help="[compute] scheduler: local, processes (a Dask "
                "cluster on this machine) or a Dask scheduler address (tcp://host:8786); "
                "results do not depend on it")) -> None:
    """Run every stage on the data described by CONFIG."""
    from oremap import pipeline  # torch, matplotlib: only when a stage runs
    from oremap.config import load_config  # pydantic: not for --help

    try:
        cfg = load_config(config, overrides={"compute.scheduler": scheduler}
                          if scheduler else None)
        run_dir = out or Path("runs") / config.stem
        last = pipeline.run(cfg, run_dir, resume=not no_resume, overwrite=overwrite,
                            config_path=config)
    except OremapError as exc:
        _fail(exc)
    typer.echo(f"report: {last}")


@app.command(help=_help("evidence", "Stage 1"))
def evidence(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"evidence: {_stage('evidence', run_dir, config)}")


@app.command(help=_help("samples", "Stage 2") + "; prints counts per class and split")
def samples(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    import pandas as pd

    _stage("samples", run_dir, config)
    counts = pd.read_csv(run_dir / file("samples", "counts"), index_col=0)
    table = Table(title="crops (cells) per class and split")
    table.add_column("class")
    for col in counts.columns:
        table.add_column(str(col), justify="right")
    for idx, row in counts.iterrows():
        table.add_row(str(idx), *[str(v) for v in row])
    Console().print(table)


@app.command(help=_help("train", "Stage 3"))
def train(run_dir: Path = RunDirArg, config: Path = ConfigOpt,
          resume: bool = typer.Option(False, "--resume", help="continue from checkpoints"),
          jobs: int = typer.Option(None, "--jobs", "-j", help="models trained in parallel")
          ) -> None:
    typer.echo(f"train: {_stage('train', run_dir, config, resume=resume, jobs=jobs)}")


@app.command(help=_help("evaluate", "Stage 4"))
def evaluate(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"evaluate: {_stage('evaluate', run_dir, config)}")


@app.command(help=_help("predict", "Stage 5a"))
def predict(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"predict: {_stage('predict', run_dir, config)}")


@app.command(help=_help("ensemble", "Stage 5b"))
def ensemble(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"ensemble: {_stage('ensemble', run_dir, config)}")


@app.command("maps", help=_help("maps", "Stage 6"))
def maps_cmd(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"maps: {_stage('maps', run_dir, config)}")


@app.command(help=_help("report", "Stage 7"))
def report(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    typer.echo(f"report: {_stage('report', run_dir, config)}")


@app.command(help=_help("stability"))
def stability(run_dir: Path = RunDirArg, config: Path = ConfigOpt,
              seeds: int = typer.Option(3, "--seeds", "-k", min=2,
                                        help="number of retraining seeds")) -> None:
    typer.echo(f"stability: {_stage('stability', run_dir, config, seeds=seeds)}")


@app.command()
def init(folder: Path = typer.Argument(..., help="folder to write oremap.toml into (made if "
                                       "missing)"),
         force: bool = typer.Option(False, "--force", help="replace an existing oremap.toml")
         ) -> None:
    """Write FOLDER/oremap.toml: a commented configuration template for your own data."""
    try:
        path = write_template(folder, force=force)
    except OremapError as exc:
        _fail(exc)
        raise  # unreachable
    files = ", ".join(str(folder / p) for p in TEMPLATE_PATHS)
    typer.echo(f"wrote {path}: a commented configuration template for your own data.\n"
               "next:\n"
               f"  1. edit {path}: set [grid] crs, bounds and pixel_size for your study area and "
               "every line marked CHANGE; copy your files to the paths it names "
               f"({files}) or edit the paths\n"
               f"  2. oremap config check {path}   (repeat until it says valid)\n"
               f"  3. oremap run {path} --out runs/{_run_name(folder)}")


def _run_name(folder: Path) -> str:
    """A run folder name for ``oremap init FOLDER``'s hint: the folder's name."""
    name = folder.resolve().name
    return name if name else "my_area"


@config_app.command("example")
def config_example() -> None:
    """Print a fully commented example configuration (the demo's)."""
    from oremap.demo import example_config_text  # geopandas, scipy: not for --help

    sys.stdout.write(example_config_text())


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="TOML file to validate"),
                 skip_inputs: bool = typer.Option(
                     False, "--skip-inputs",
                     help="validate the file only; do not open the input files")) -> None:
    """Validate a configuration and open its inputs cheaply; exit code 2 listing every problem.

    Checks the file (types, ranges, cross-field rules, the grid's CRS against the units of
    its bounds), then every input file, layer, column and CRS, that each input overlaps the
    grid, and the training device, without computing anything; one line per cause. On success
    prints the grid size and the estimated disk and memory of the evidence. With
    --skip-inputs only the file is checked (e.g. on a machine without the data).
    """
    from oremap.check import (  # pydantic, pyproj
        check_inputs,
        format_preflight,
        grid_problems,
        preflight,
    )
    from oremap.config import load_config  # pydantic: not for --help

    try:
        cfg = load_config(path)
        problems = grid_problems(cfg) if skip_inputs else check_inputs(cfg)
    except OremapError as exc:
        _fail(exc)
        raise  # unreachable
    if problems:
        console.print(Text(f"error: {path}: {len(problems)} problem(s) with the inputs:",
                           style="bold red"), soft_wrap=True)
        for problem in problems:
            console.print(Text(f"  - {problem}"), soft_wrap=True)
        raise typer.Exit(code=2)
    info = preflight(cfg)
    typer.echo(f"{path}: valid ({len(cfg.members())} models/baselines, {info['layers']} "
               "evidence layers)")
    typer.echo(format_preflight(info))


if __name__ == "__main__":  # pragma: no cover
    main()
