"""The ``oremap`` command line: a few lines per command, all logic in :mod:`oremap.pipeline`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from oremap.errors import OremapError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Mineral prospectivity mapping with deep-learning ensembles.")
config_app = typer.Typer(no_args_is_help=True, help="Write or check a TOML configuration.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

RunDirArg = typer.Argument(..., help="run folder made by `oremap run` (holds config.toml)")
ConfigOpt = typer.Option(None, "--config", "-c",
                         help="use this TOML instead of the run folder's config.toml")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    """Set up logging once for every command."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    logging.captureWarnings(True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.getLogger("rasterio").setLevel(logging.WARNING)
    logging.getLogger("pyogrio").setLevel(logging.WARNING)


def _fail(exc: OremapError) -> None:
    console.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)
    raise typer.Exit(code=2)


def _stage(name: str, run_dir: Path, config: Path | None, **kwargs: object) -> Path:
    from oremap import pipeline

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
    from oremap import pipeline

    try:
        report = pipeline.run_demo(out, quick=quick, seed=seed, overwrite=overwrite)
    except OremapError as exc:
        _fail(exc)
    typer.echo(f"report: {report}")


@app.command("run")
def run_cmd(config: Path = typer.Argument(..., help="TOML configuration"),
            out: Path = typer.Option(None, "--out", "-o",
                                     help="run folder (default runs/<config name>)"),
            overwrite: bool = typer.Option(False, help="delete the run folder first"),
            no_resume: bool = typer.Option(False, "--no-resume",
                                           help="retrain even if checkpoints exist")) -> None:
    """Run every stage on the data described by CONFIG."""
    from oremap import pipeline
    from oremap.config import load_config

    try:
        cfg = load_config(config)
        run_dir = out or Path("runs") / config.stem
        last = pipeline.run(cfg, run_dir, resume=not no_resume, overwrite=overwrite)
    except OremapError as exc:
        _fail(exc)
    typer.echo(f"report: {last}")


@app.command()
def evidence(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 1: evidence layers (IDW geochemistry, geological densities)."""
    typer.echo(f"evidence: {_stage('evidence', run_dir, config)}")


@app.command()
def samples(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 2: cells, labels, crops and splits; prints counts per class and split."""
    import pandas as pd

    out = _stage("samples", run_dir, config)
    counts = pd.read_csv(out / "counts.csv", index_col=0)
    table = Table(title="crops (cells) per class and split")
    table.add_column("class")
    for col in counts.columns:
        table.add_column(str(col), justify="right")
    for idx, row in counts.iterrows():
        table.add_row(str(idx), *[str(v) for v in row])
    Console().print(table)


@app.command()
def train(run_dir: Path = RunDirArg, config: Path = ConfigOpt,
          resume: bool = typer.Option(False, "--resume", help="continue from checkpoints"),
          jobs: int = typer.Option(None, "--jobs", "-j", help="models trained in parallel")
          ) -> None:
    """Stage 3: train the networks and baselines."""
    typer.echo(f"train: {_stage('train', run_dir, config, resume=resume, jobs=jobs)}")


@app.command()
def evaluate(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 4: Table 1, confusion matrices, curves and importance on the test split."""
    typer.echo(f"evaluate: {_stage('evaluate', run_dir, config)}")


@app.command()
def predict(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 5a: P(ore) of every usable cell from every model."""
    typer.echo(f"predict: {_stage('predict', run_dir, config)}")


@app.command()
def ensemble(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 5b: the ensemble rules, Table 2 and stability statistics."""
    typer.echo(f"ensemble: {_stage('ensemble', run_dir, config)}")


@app.command("maps")
def maps_cmd(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 6: prospectivity and uncertainty maps, target areas, success-rate curves."""
    typer.echo(f"maps: {_stage('maps', run_dir, config)}")


@app.command()
def report(run_dir: Path = RunDirArg, config: Path = ConfigOpt) -> None:
    """Stage 7: the self-contained HTML report."""
    typer.echo(f"report: {_stage('report', run_dir, config)}")


@app.command()
def stability(run_dir: Path = RunDirArg, config: Path = ConfigOpt,
              seeds: int = typer.Option(3, "--seeds", "-k", min=2,
                                        help="number of retraining seeds")) -> None:
    """Retrain every model with K seeds and measure how much predictions vary."""
    typer.echo(f"stability: {_stage('stability', run_dir, config, seeds=seeds)}")


@config_app.command("example")
def config_example() -> None:
    """Print a fully commented example configuration (the demo's)."""
    from oremap.pipeline import example_config_text

    sys.stdout.write(example_config_text())


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="TOML file to validate")) -> None:
    """Validate a configuration file; exit code 2 with every problem listed if it is bad."""
    from oremap.config import load_config

    try:
        cfg = load_config(path)
    except OremapError as exc:
        _fail(exc)
    typer.echo(f"{path}: valid ({len(cfg.members())} models/baselines, "
               f"{len(cfg.geology) + (len(cfg.geochem.elements) if cfg.geochem else 0)} "
               "evidence layers)")


if __name__ == "__main__":  # pragma: no cover
    app()
