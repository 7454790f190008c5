"""Open a report in headless Chromium (Debian's ``chromium``): layout checks and screenshots.

Used by the tests and ``scripts/report_screenshots.py``; the report itself has no script. A
copy of the page gets a small script that measures the rendered layout after load and writes
the result into the DOM, which ``chromium --dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "chromium", "probe", "screenshot"]

#: Flags for a headless run on a machine without network or display (no sandbox as root).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")

_PROBE = """
<script>
window.addEventListener('load', () => {
  const vw = window.innerWidth, vh = window.innerHeight;
  const imgs = [...document.images];
  const wide = [...document.querySelectorAll('body *')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > vw + 1 && !e.closest('details:not([open])');
  }).map(e => e.tagName + (e.className ? '.' + e.className : ''));
  const box = (sel, side) => { const e = document.querySelector(sel);
                       return e ? e.getBoundingClientRect()[side] + window.scrollY : null; };
  const top = sel => box(sel, 'top');
  const sections = {};
  document.querySelectorAll('main > section').forEach(s => {
    sections[s.id] = Math.round(s.getBoundingClientRect().height); });
  const out = {
    viewport: [vw, vh], scroll_width: document.documentElement.scrollWidth,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    too_wide: wide.slice(0, 20),
    markdown_table_text: /\\|\\s*:?-{3,}/.test(document.body.innerText),
    answer_top: top('.answer'), targets_top: top('#summary table'),
    decision_map_top: top('#summary .decision-map img'),
    decision_map_bottom: box('#summary .decision-map img', 'bottom'),
    warning_top: top('#summary .warn'),
    page_height: document.documentElement.scrollHeight, sections: sections,
  };
  const pre = document.createElement('pre');
  pre.id = 'oremap-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    """Path of the Chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], *, timeout: float) -> str:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def probe(html_path: Path, *, width: int = 1400, height: int = 900,
          timeout: float = 120) -> dict[str, Any]:
    """Layout facts of a rendered report page at a ``width`` x ``height`` window.

    Keys: ``viewport`` (inner width and height, CSS px), ``scroll_width``, ``images``,
    ``broken_images`` (alt texts), ``too_wide`` (shown elements past the right edge; those
    folded in a closed ``<details>`` do not count),
    ``markdown_table_text``; the page-y of the top of the recommendation (``answer_top``), of
    the summary's target table (``targets_top``), of the decision map image
    (``decision_map_top``, ``decision_map_bottom``) and of the first warning
    (``warning_top``), None where absent; ``page_height`` (px), ``sections`` (section id ->
    height, px) and ``html_bytes`` (the size of the report file).
    """
    page = Path(html_path).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "probe.html"
        copy.write_text(page.replace("</body>", _PROBE + "</body>"))
        dom = _run([f"--window-size={width},{height}", "--virtual-time-budget=10000",
                    "--dump-dom", copy.as_uri()], timeout=timeout)
    start = dom.find('<pre id="oremap-probe">')
    if start < 0:
        raise RuntimeError("the probe script did not run (no result in the dumped DOM)")
    text = dom[start + len('<pre id="oremap-probe">'):dom.find("</pre>", start)]
    facts = json.loads(html.unescape(text))
    facts["html_bytes"] = len(page.encode("utf-8"))
    return facts


def screenshot(html_path: Path, out_png: Path, *, section: str = "", width: int = 1400,
               height: int = 900, timeout: float = 120) -> Path:
    """PNG of the first screen of the page, or of the section with id ``section`` (the page
    is copied with the other sections hidden)."""
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    page = Path(html_path).read_text()
    if section:
        hide = (f"<style>header,nav,section:not(#{section}){{display:none}}</style>")
        page = page.replace("</head>", hide + "</head>")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(page)
        _run([f"--window-size={width},{height}", "--virtual-time-budget=5000",
              f"--screenshot={out_png}", copy.as_uri()], timeout=timeout)
    return out_png
