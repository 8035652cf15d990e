"""Measure how a served page lays out in Debian's headless Chromium."""

from __future__ import annotations

import html as html_module
import json
import re
import subprocess
from pathlib import Path

from edge.web.app import STATIC_DIR

CHROMIUM = "/usr/bin/chromium"
WINDOW_SIZE = "1280,800"


def measure_layout(html: str, tmp_path: Path, script: str) -> dict:
    """Open the page's HTML as a file with the app's stylesheet and return what `script` measured.

    `script` runs after the page has loaded and stores a JSON object in document.body.dataset.layout. The
    app's own scripts are left out, because a page opened as a file cannot reach the server.
    """
    html = html.replace('href="/static/style.css"', f'href="{STATIC_DIR / "style.css"}"')
    html = re.sub(r"<script src=[^>]*></script>", "", html)
    html = html.replace("</body>", f"<script>{script}</script></body>")
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")

    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW_SIZE}",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60, check=True).stdout

    match = re.search(r'data-layout="([^"]*)"', dom)
    assert match, dom[-500:]
    return json.loads(html_module.unescape(match.group(1)))
