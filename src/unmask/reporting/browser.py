"""Open a report in headless Chromium: screenshot, rendered DOM, and the network requests made.

Used by the tests (and by hand: ``python -m unmask.reporting.browser reports/index.html``) to
check that the page renders its plots and is self-contained. Chromium runs with
``--headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run`` and a
throw-away profile; :func:`network_requests` drives it through the Chrome DevTools protocol on a
127.0.0.1 port (``Network.requestWillBeSent`` events while the page loads) with the
``websockets`` client.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["BASE_FLAGS", "find_chromium", "screenshot", "dump_dom", "network_requests"]

BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome binary on PATH, or None."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _binary(binary: str | None) -> str:
    b = binary or find_chromium()
    if b is None:
        raise FileNotFoundError(
            "no chromium on PATH (Debian: apt-get install chromium); looked for "
            + ", ".join(_NAMES)
        )
    return b


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="unmask-chromium-") as profile:
        return subprocess.run(
            [*args, f"--user-data-dir={profile}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def screenshot(
    html: str | Path,
    png: str | Path,
    *,
    size: tuple[int, int] = (1280, 2400),
    binary: str | None = None,
    timeout: float = 120,
) -> Path:
    """Render ``html`` (scripts run for up to 10 s of virtual time) and save a PNG screenshot."""
    png = Path(png).resolve()
    args = [
        _binary(binary),
        *BASE_FLAGS,
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=10000",
        f"--screenshot={png}",
        Path(html).resolve().as_uri(),
    ]
    out = _run(args, timeout)
    if not png.is_file():
        err = out.stderr[-2000:]
        raise RuntimeError(f"chromium wrote no screenshot (rc {out.returncode}): {err}")
    return png


def dump_dom(html: str | Path, *, binary: str | None = None, timeout: float = 120) -> str:
    """The DOM after the page's scripts ran (``--dump-dom``, 10 s of virtual time)."""
    args = [
        _binary(binary),
        *BASE_FLAGS,
        "--virtual-time-budget=10000",
        "--dump-dom",
        Path(html).resolve().as_uri(),
    ]
    out = _run(args, timeout)
    if out.returncode != 0 or "<html" not in out.stdout:
        err = out.stderr[-2000:]
        raise RuntimeError(f"chromium --dump-dom failed (rc {out.returncode}): {err}")
    return out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json(url: str, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def network_requests(
    html: str | Path, *, binary: str | None = None, settle: float = 3.0, timeout: float = 120
) -> list[str]:
    """Every URL the page requests while it loads (its own ``file://`` URL included), recorded
    through the DevTools protocol until ``settle`` seconds after the load event.

    Chromium starts on a blank ``file://`` page, so that navigating to ``html`` stays in the
    same renderer process (a process swap from ``about:blank`` would drop the Network domain's
    events of the new document's sub-resources)."""

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="unmask-chromium-") as profile:
        blank = Path(profile) / "blank.html"
        blank.write_text("<!doctype html><title>blank</title>")
        proc = subprocess.Popen(
            [
                _binary(binary),
                *BASE_FLAGS,
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}/data",
                blank.as_uri(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return _record(port, Path(html).resolve().as_uri(), settle, timeout)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _record(port: int, url: str, settle: float, timeout: float) -> list[str]:
    from websockets.sync.client import connect  # optional: only the headless-browser check

    deadline = time.monotonic() + timeout
    while True:  # the blank file page must be the current document before we navigate
        targets = _json(f"http://127.0.0.1:{port}/json/list", timeout=30)
        page = next((t for t in targets if t.get("type") == "page"), None)  # type: ignore[union-attr]
        if page is not None and str(page.get("url", "")).startswith("file:"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not open its start page")
        time.sleep(0.2)
    urls: list[str] = []
    with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
        pending: dict[int, str] = {}

        def send(msg_id: int, method: str, **params: object) -> None:
            pending[msg_id] = method
            ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))

        def pump(stop) -> None:
            while time.monotonic() < deadline and not stop():
                try:
                    ev = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                pending.pop(ev.get("id", -1), None)
                on_event(ev)

        loaded: list[float] = []
        navigated: list[bool] = []

        def on_event(ev: dict) -> None:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Network.requestWillBeSent":
                urls.append(params["request"]["url"])
            elif method == "Page.frameNavigated":
                frame = params.get("frame", {})
                if not frame.get("parentId") and frame.get("url") == url:
                    navigated.append(True)
            # only the load of *our* page counts (the blank start page may finish late)
            elif method == "Page.loadEventFired" and navigated and not loaded:
                loaded.append(time.monotonic())

        send(1, "Network.enable")
        send(2, "Page.enable")
        pump(lambda: not pending)  # both domains on before the navigation starts
        # the blank start page must have finished loading: a navigation that interrupts it
        # can swap the renderer and lose the new document's events
        msg_id, ready = 10, ""
        while ready != "complete file:" and time.monotonic() < deadline:
            msg_id += 1
            send(
                msg_id,
                "Runtime.evaluate",
                expression="document.readyState + ' ' + location.protocol",
                returnByValue=True,
            )
            while msg_id in pending and time.monotonic() < deadline:
                try:
                    ev = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                pending.pop(ev.get("id", -1), None)
                if ev.get("id") == msg_id:
                    ready = str(ev.get("result", {}).get("result", {}).get("value", ""))
            if ready != "complete file:":
                time.sleep(0.2)
        loaded.clear()
        send(3, "Page.navigate", url=url)
        pump(lambda: bool(loaded) and time.monotonic() - loaded[0] > settle)
        if not loaded:
            raise TimeoutError(f"the page did not load within {timeout} s")
    return urls


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual check
    import argparse

    ap = argparse.ArgumentParser(description="Check a report in headless Chromium.")
    ap.add_argument("html")
    ap.add_argument("--screenshot", default=None)
    a = ap.parse_args(argv)
    reqs = network_requests(a.html)
    external = [u for u in reqs if not u.startswith(("file:", "data:", "blob:"))]
    print(f"{len(reqs)} requests, {len(external)} external: {external}")
    if a.screenshot:
        print(screenshot(a.html, a.screenshot))


if __name__ == "__main__":  # pragma: no cover
    main()
