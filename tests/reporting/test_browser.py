"""The report opened in headless Chromium: it renders (screenshot not blank), every ablation's
plot is drawn by plotly.js, and the page requests nothing beyond itself and its data: URIs.

Chromium is required in CI (Debian ``chromium``): missing there it fails; locally (``CI`` unset)
the tests skip."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from unmask.reporting import browser
from unmask.reporting.ablations import ABLATION_IDS


@pytest.fixture(scope="module")
def chromium() -> str:
    path = browser.find_chromium()
    if path is None:
        msg = "chromium not found on PATH: apt-get install chromium (needed for the report tests)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def test_screenshot_is_not_blank(report, chromium, tmp_path):
    png = browser.screenshot(report, tmp_path / "shot.png", size=(1280, 2400), binary=chromium)
    img = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert img.shape == (2400, 1280)
    assert img.std() > 10, f"screenshot looks blank (pixel std {img.std():.2f})"
    # the plots draw coloured traces: some pixels are far from grey
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    chroma = rgb.max(-1) - rgb.min(-1)
    assert (chroma > 80).mean() > 1e-3


def test_plots_render_for_every_ablation(report, chromium):
    dom = browser.dump_dom(report, binary=chromium)
    for aid in ABLATION_IDS:
        start = dom.find(f'id="ablation-{aid}"')
        assert start >= 0, aid
        tag_end = dom.find(">", start)
        opening = dom[dom.rfind("<div", 0, start) : tag_end]
        # plotly.js adds js-plotly-plot and draws an <svg class="main-svg"> once it ran
        assert "js-plotly-plot" in opening, opening
        assert 'class="main-svg"' in dom[tag_end : tag_end + 5000], aid


def test_no_network_requests(report, chromium):
    urls = browser.network_requests(report, binary=chromium)
    assert urls and urls[0] == report.resolve().as_uri()
    external = [u for u in urls if not u.startswith(("file:", "data:", "blob:"))]
    assert external == []
    assert all(u == urls[0] for u in urls if u.startswith("file:"))


def test_network_check_sees_an_external_request(chromium, tmp_path):
    """The check can fail: a page loading an image from a local HTTP server (127.0.0.1)
    reports that request, and the server did receive it."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/x.png"
        page = tmp_path / "remote.html"
        page.write_text(f'<!doctype html><html><body><img src="{url}"></body></html>')
        urls = browser.network_requests(page, binary=chromium, settle=2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert url in urls
    assert hits == ["/x.png"]
