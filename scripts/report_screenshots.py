"""Screenshots of a run's report in headless Chromium, for the documentation.

    .venv/bin/python scripts/report_screenshots.py RUN_DIR [--out docs]

writes ``report_first_screen.png`` (what a reader sees on opening the report, 1400 x 900) and
``report_maps.png`` (the maps section), as 128-colour PNGs. Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oremap.browser import probe, screenshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = ap.parse_args()
    html = args.run_dir / "report" / "report.html"
    for name, section in (("report_first_screen.png", ""), ("report_maps.png", "maps")):
        print(_small(screenshot(html, args.out / name, section=section)))
    print(probe(html))


def _small(png: Path) -> Path:
    """Rewrite a screenshot with a 128-colour palette: the repository stays small."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    return png


if __name__ == "__main__":
    main()
