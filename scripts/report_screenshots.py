"""Screenshots of a run's report in headless Chromium, for the documentation.

    .venv/bin/python scripts/report_screenshots.py RUN_DIR [--out docs]

writes ``report_first_screen.png`` (what a reader sees on opening the report, 1400 x 900, the
README's picture) as a 64-colour PNG; ``--maps`` also writes ``report_maps.png`` (the maps
section). Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oremap.browser import probe, screenshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    ap.add_argument("--maps", action="store_true", help="also the maps section")
    args = ap.parse_args()
    html = args.run_dir / "report" / "report.html"
    shots = [("report_first_screen.png", "")] + ([("report_maps.png", "maps")] if args.maps
                                                  else [])
    for name, section in shots:
        print(_small(screenshot(html, args.out / name, section=section)))
    print(probe(html))


def _small(png: Path) -> Path:
    """Rewrite a screenshot with a 64-colour palette: the repository stays small."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    return png


if __name__ == "__main__":
    main()
