"""Browser harness for the Jupyter viewer: one JupyterLab server and one headless Chromium.

The recipe is ../shared/notes/jupyter-widget-testing.md: Debian's ``chromium`` driven by
Playwright (pinned; launched with the system browser, never ``playwright install``), JupyterLab
started here on 127.0.0.1 with ``expose_app_in_browser`` so that the page's ``window.jupyterapp``
can run cells, and Python-side asserts through the page's own kernel connection
(``kernel.requestExecute`` with ``user_expressions``).

Without Playwright or a Chromium the tests skip with the reason; ``CTSTACK_REQUIRE_BROWSER=1``
(set by ``.ci/run``) turns that into a failure.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REQUIRE_BROWSER = "CTSTACK_REQUIRE_BROWSER"
# CTSTACK_WRITE_DOCS_IMAGES=1: the tests that make them also write docs/images/jupyter_*.png
REPO_DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PHANTOM_SHAPE = (40, 150, 190)  # small (level 0 only), not square: a transposed plane cannot fit
TOKEN = "ctstack-browser-tests"
# The real binary: /usr/bin/chromium is a shell wrapper that prints noise on these machines.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
# WebGL2 on SwiftShader without the deprecation warning (Playwright adds it too; be explicit).
BROWSER_ARGS = ("--enable-unsafe-swiftshader",)
VIEWPORT = {"width": 1500, "height": 1100}
TIMEOUT_MS = 60_000
# The open notebook panel of a path, found among the main-area widgets (Lab and Notebook 7).
FIND = "(p) => [...window.jupyterapp.shell.widgets('main')].find(w => w.context?.path === p)"
SETTINGS = {  # JupyterLab user settings: no news toast, no update check, every cell attached
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def _no_browser(why: str) -> None:
    """Skip (a user's machine may have no Chromium) or, when a browser is required, fail."""
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{why}; {REQUIRE_BROWSER}=1 requires it", pytrace=False)
    pytest.skip(why)


def find_chromium() -> str | None:
    """Path of the system Chromium (``CTSTACK_CHROMIUM`` overrides), or None."""
    for name in (os.environ.get("CTSTACK_CHROMIUM", ""), *CHROMIUM_CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, cells: Sequence[str]) -> Path:
    """Write a notebook of code cells (no outputs) for the python3 kernel."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for src in cells
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


class JupyterServer:
    """A JupyterLab (``kind="lab"``) or Notebook 7 (``kind="notebook"``) server of our own.

    Config, data, runtime, settings and workspaces live in a private home, TMPDIR too, so that
    nothing of the user's Jupyter set-up leaks in and nothing is left behind.
    """

    def __init__(self, kind: str, root: Path, home: Path) -> None:
        self.kind, self.root, self.home = kind, root, home
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> JupyterServer:
        """Start the server and wait until ``/api/status`` answers (about 3 s here)."""
        home = self.home
        settings = home / "settings"
        for plugin, values in SETTINGS.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        (home / "tmp").mkdir(exist_ok=True)
        env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(home / "cfg"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "rt"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"),
            TMPDIR=str(home / "tmp"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env.pop("CTSTACK_NO_RUST", None)
        app = "LabApp" if self.kind == "lab" else "JupyterNotebookApp"
        exe = Path(sys.executable).parent / f"jupyter-{self.kind}"
        cmd = [
            str(exe),
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={self.root}",
            f"--{app}.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=self.root
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("/api/status")
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter {self.kind} did not start:\n{self.log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)

    def api(self, path: str, method: str = "GET") -> bytes:
        """Call the REST API with the token."""
        req = urllib.request.Request(
            self.base + path, method=method, headers={"Authorization": f"token {TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return bytes(r.read())

    def url(self, notebook: str) -> str:
        """The page that opens ``notebook`` (Lab ignores a saved layout with ``reset``)."""
        if self.kind == "lab":
            return f"{self.base}/lab/tree/{notebook}?token={TOKEN}&reset"
        return f"{self.base}/notebooks/{notebook}?token={TOKEN}"

    def stop(self) -> None:
        """Shut down cleanly (the server stops its kernels), else SIGTERM/SIGKILL this PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.api("/api/shutdown", "POST")
            self.proc.wait(30)
        except Exception:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Cell:
    """A notebook cell run by the harness; ``sel`` scopes CSS selectors to its outputs."""

    index: int
    tag: str

    @property
    def sel(self) -> str:
        return f'[data-test-cell="{self.tag}"]'

    def canvas(self, view: str) -> str:
        """CSS selector of this cell's pane canvas for ``view`` (``xy``, ``xz``, ``yz``)."""
        return f'{self.sel} canvas[data-view="{view}"]'


class NotebookPage:
    """One notebook open in a browser page, with its kernel: run cells, run Python, read pixels."""

    _tags = itertools.count()

    def __init__(self, page: Any, server: JupyterServer, name: str) -> None:
        self.page, self.server, self.name = page, server, name
        self.errors: list[str] = []  # uncaught JavaScript errors since the notebook opened
        self.startup_errors: list[str] = []  # those of the frontend's own start-up
        self._opened = False
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    # -------------------------------------------------------------- notebook

    def open(self) -> NotebookPage:
        """Load the notebook page and wait until its kernel is ready."""
        self.page.goto(self.server.url(self.name))
        self.page.wait_for_function(
            f"p => window.jupyterapp && !!({FIND})(p)", arg=self.name, timeout=TIMEOUT_MS
        )
        self.page.evaluate(
            f"""async p => {{ const nb = ({FIND})(p);
            await nb.sessionContext.ready; await nb.sessionContext.session.kernel.info;
            window.jupyterapp.shell.activateById(nb.id); }}""",
            self.name,
        )
        if not self._opened:
            # Notebook 7.6 throws "reading 'schema'" while loading its settings, with or
            # without any widget: not ours to check. A reload keeps what it raises.
            self.startup_errors, self.errors[:] = list(self.errors), []
        self._opened = True
        return self

    def run_all(self) -> None:
        """Run every cell (the way a user's Run All does) and wait until the kernel is idle."""
        self.page.evaluate(
            f"""async p => {{ const nb = ({FIND})(p);
            window.jupyterapp.shell.activateById(nb.id);
            await window.jupyterapp.commands.execute('notebook:run-all-cells'); }}""",
            self.name,
        )
        self.wait_idle()
        self.raise_cell_errors()

    def wait_idle(self) -> None:
        """Wait until no cell is queued or running (every cell has an execution count)."""
        self.page.wait_for_function(
            f"""p => {{ const nb = ({FIND})(p);
            return nb.sessionContext.session.kernel.status === 'idle' &&
              [...nb.content.widgets].every(c => c.model.type !== 'code' ||
                 (c.model.executionCount !== null && !c.promptNode?.textContent.includes('*')));
            }}""",
            arg=self.name,
            timeout=TIMEOUT_MS,
        )

    def raise_cell_errors(self) -> None:
        """Fail with the traceback of the first cell whose output is an error."""
        err = self.page.evaluate(
            f"""p => {{ const nb = ({FIND})(p);
            for (const c of nb.content.widgets) {{
              if (c.model.type !== 'code') continue;
              for (const o of c.model.outputs.toJSON())
                if (o.output_type === 'error') return o.ename + ': ' + o.evalue + '\\n' +
                   o.traceback.join('\\n').replace(/\\x1b\\[[0-9;]*m/g, '');
            }} return null; }}""",
            self.name,
        )
        if err:
            raise AssertionError(f"a notebook cell raised:\n{err}")

    def run_cell(self, source: str) -> Cell:
        """Append a code cell, run it, wait for its end; fail on an error output."""
        tag = f"c{next(self._tags)}"
        result = self.page.evaluate(
            f"""async ([p, src, tag]) => {{ const nb = ({FIND})(p);
            const app = window.jupyterapp; app.shell.activateById(nb.id);
            const m = nb.content.model, n = m.cells.length;
            m.sharedModel.insertCell(n, {{cell_type: 'code', source: src}});
            nb.content.activeCellIndex = n; nb.content.deselectAll();
            await app.commands.execute('notebook:run-cell');
            const cell = nb.content.widgets[n]; cell.node.dataset.testCell = tag;
            const errs = cell.model.outputs.toJSON().filter(o => o.output_type === 'error');
            return {{n, err: errs.length ? errs[0].ename + ': ' + errs[0].evalue + '\\n' +
              errs[0].traceback.join('\\n').replace(/\\x1b\\[[0-9;]*m/g, '') : null}}; }}""",
            [self.name, source, tag],
        )
        if result["err"]:
            raise AssertionError(f"cell raised:\n{source}\n{result['err']}")
        return Cell(result["n"], tag)

    def tag_cells(self) -> list[Cell]:
        """Tag every cell of the notebook (after a run-all) and return them in order."""
        tags = self.page.evaluate(
            f"""p => {{ const nb = ({FIND})(p);
            return [...nb.content.widgets].map((c, i) => {{
              c.node.dataset.testCell = 'all' + i; return 'all' + i; }}); }}""",
            self.name,
        )
        return [Cell(i, t) for i, t in enumerate(tags)]

    def save(self) -> None:
        """Save the notebook (its widget outputs then survive a page reload)."""
        self.page.evaluate(
            f"async p => {{ await ({FIND})(p).context.save(); }}",
            self.name,
        )

    # -------------------------------------------------------------- kernel

    def py(self, code: str, expr: str | None = None) -> Any:
        """Run ``code`` in the notebook's kernel; return ``expr`` evaluated after it (via JSON).

        Comm traffic caused by the code (a traitlet set from Python) reaches the views.
        """
        expr_js = f"__import__('json').dumps({expr})" if expr else "None"
        out = self.page.evaluate(
            f"""async ([p, code, expr]) => {{
            const k = ({FIND})(p).sessionContext.session.kernel;
            const r = await k.requestExecute({{code, user_expressions: {{r: expr}},
                                               silent: false, store_history: false}}).done;
            if (r.content.status !== 'ok')
              return {{error: r.content.ename + ': ' + r.content.evalue + '\\n' +
                (r.content.traceback || []).join('\\n').replace(/\\x1b\\[[0-9;]*m/g, '')}};
            const u = r.content.user_expressions.r;
            if (u.status !== 'ok') return {{error: u.ename + ': ' + u.evalue}};
            return {{value: u.data['text/plain']}}; }}""",
            [self.name, code, expr_js],
        )
        if "error" in out:
            raise AssertionError(f"kernel code failed:\n{code}\n{expr}\n{out['error']}")
        return json.loads(_unrepr(out["value"])) if expr else None

    def py_wait(self, expr: str, predicate: Any, timeout: float = 20.0) -> Any:
        """Poll ``expr`` in the kernel until ``predicate(value)`` holds; return the value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.py("", expr)
            if predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} stayed {value!r} for {timeout} s")
            time.sleep(0.1)

    # -------------------------------------------------------------- views

    def attrs(self, selector: str) -> dict[str, str]:
        """The ``data-*`` attributes of the element (dataset)."""
        return dict(
            self.page.evaluate(
                "s => { const e = document.querySelector(s); return e ? {...e.dataset} : null }",
                selector,
            )
            or {}
        )

    def frames(self, selector: str) -> int:
        """The canvas's draw count (0 before the first draw)."""
        return int(self.attrs(selector).get("frames", 0) or 0)

    def wait_view(
        self,
        selector: str,
        *,
        after: int = 0,
        plane: int | None = None,
        complete: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, str]:
        """Wait until the canvas has drawn more than ``after`` frames, shows level-0 plane
        ``plane`` (if given) and, if ``complete``, every visible tile of the wanted level."""
        try:
            self.page.wait_for_function(
                """([s, after, plane, complete]) => { const c = document.querySelector(s);
                if (!c) return false; const d = c.dataset;
                return +(d.frames || 0) > after && (plane === null || +d.plane === plane) &&
                       (!complete || d.complete === '1'); }""",
                arg=[selector, after, plane, complete],
                timeout=timeout * 1000,
                polling=50,
            )
        except Exception as exc:
            raise AssertionError(
                f"{selector}: no frame after {after} with plane={plane}, complete={complete} in "
                f"{timeout} s; attributes now {self.attrs(selector)}; page errors {self.errors}"
            ) from exc
        return self.attrs(selector)

    def image_crop(self, selector: str) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """Greyscale pixels of the canvas region holding the plane image (``data-image-rect``
        clipped to the canvas), from a page screenshot; also the part of the image shown, as
        fractions (top, left, bottom, right) of the whole plane."""
        loc = self.page.locator(selector)
        loc.scroll_into_view_if_needed()
        info = self.page.evaluate(
            """s => { const c = document.querySelector(s); const b = c.getBoundingClientRect();
            return {x: b.x, y: b.y, w: b.width, h: b.height, rect: c.dataset.imageRect}; }""",
            selector,
        )
        rx, ry, rw, rh = (float(v) for v in info["rect"].split(","))
        x0, y0 = max(info["x"] + rx, info["x"]), max(info["y"] + ry, info["y"])
        x1 = min(info["x"] + rx + rw, info["x"] + info["w"])
        y1 = min(info["y"] + ry + rh, info["y"] + info["h"])
        clip = {"x": round(x0), "y": round(y0)}
        clip["width"], clip["height"] = round(x1) - clip["x"], round(y1) - clip["y"]
        assert clip["width"] > 8 and clip["height"] > 8, f"image rect {info} is not on screen"
        png = self.page.screenshot(clip=clip)
        from PIL import Image

        grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32)
        ox, oy = info["x"] + rx, info["y"] + ry
        part = (
            (clip["y"] - oy) / rh,
            (clip["x"] - ox) / rw,
            (clip["y"] + clip["height"] - oy) / rh,
            (clip["x"] + clip["width"] - ox) / rw,
        )
        return grey, part


def _unrepr(text: str) -> str:
    """The text/plain repr of a JSON string back to the JSON text."""
    import ast

    return str(ast.literal_eval(text))


# ------------------------------------------------------------------ pixel comparison


def windowed(plane: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Grey levels 0..255 of ``plane`` under a linear window [low, high] (the grey colormap)."""
    lo, hi = float(window[0]), float(window[1])
    g = (plane.astype(np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(g, 0.0, 1.0) * 255.0


def expected_on_screen(
    plane: np.ndarray,
    window: Sequence[float],
    shape: tuple[int, int],
    part: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> np.ndarray:
    """The windowed plane resampled (nearest) to the crop's ``shape``; ``part`` is the shown
    fraction of the plane (top, left, bottom, right)."""
    h, w = shape
    top, left, bottom, right = part
    rows = np.clip(((top + (np.arange(h) + 0.5) / h * (bottom - top)) * plane.shape[0]), 0, None)
    cols = np.clip(((left + (np.arange(w) + 0.5) / w * (right - left)) * plane.shape[1]), 0, None)
    r = np.minimum(rows.astype(int), plane.shape[0] - 1)
    c = np.minimum(cols.astype(int), plane.shape[1] - 1)
    return windowed(plane, window)[np.ix_(r, c)]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped images (0 when either is flat)."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def match_scores(grey: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """How well the screen matches the expected plane, and its flipped versions.

    ``same``: correlation with the expected image; ``flip_ud``/``flip_lr``: with the image
    flipped. ``anti_ud``/``anti_lr``: correlation of the antisymmetric parts (image minus its
    mirror): +1 for the right orientation, -1 for a flipped one, whatever the symmetry of the
    scene (the phantom is nearly mirror-symmetric, so its plain flipped correlation stays high).
    """
    out = {"same": corr(grey, expected)}
    for name, f in (("ud", np.flipud), ("lr", np.fliplr)):
        out[f"flip_{name}"] = corr(grey, f(expected))
        out[f"anti_{name}"] = corr(grey - f(grey), expected - f(expected))
    return out


def assert_shows(
    nb: NotebookPage,
    selector: str,
    plane: np.ndarray,
    window: Sequence[float],
    *,
    min_corr: float = 0.85,
    margin: float = 0.0,
    min_anti: float = 0.2,
    max_mad: float = 15.0,
) -> dict[str, float]:
    """Assert that the canvas shows ``plane`` under ``window`` the right way round: high
    correlation, lower for the flipped plane, a positive antisymmetric correlation
    (a mirrored image gives a negative one), and grey levels within ``max_mad`` on average.

    Measured here: correlation 0.90-0.99, once 0.898 for the phantom's YZ plane after a click
    moved the crosshair lines across it (grey levels still within 6 on average), hence 0.85;
    (flipped phantom 0.82-0.93, flipped head CT below
    0.6), antisymmetric 0.48-0.98, mean absolute difference 1-9 grey levels (the crosshair
    lines and the renderers' nearest-pixel rounding account for it). The phantom's XZ plane is
    nearly symmetric in z (flipped 0.915 against 0.952 seen once), so the plain flip check only
    asks for lower; the antisymmetric one is what tells a mirror apart (a mirror gives about
    -1, so a floor of 0.2 leaves room for noise on near-symmetric planes)."""
    grey, part = nb.image_crop(selector)
    expected = expected_on_screen(plane, window, grey.shape, part)
    s = match_scores(grey, expected)
    s["mad"] = float(np.abs(grey - expected).mean())
    assert s["same"] > min_corr, f"{selector}: correlation {s} below {min_corr}"
    for k in ("ud", "lr"):
        assert s[f"flip_{k}"] < s["same"] - margin, f"{selector}: flipped fits as well: {s}"
        assert s[f"anti_{k}"] > min_anti, f"{selector}: mirrored ({k}): {s}"
    assert s["mad"] < max_mad, f"{selector}: grey levels off by {s['mad']:.1f} on average: {s}"
    return s


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium's path; skips (or fails under CTSTACK_REQUIRE_BROWSER=1) without it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _no_browser("Playwright is not installed (pip install -e '.[test]')")
    path = find_chromium()
    if path is None:
        _no_browser("no Chromium found (apt-get install chromium, or set CTSTACK_CHROMIUM)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def playwright_instance(chromium: str) -> Iterator[Any]:
    """The Playwright driver (one node process for the session)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch(playwright: Any, chromium: str, *extra: str) -> Any:
    """A headless Chromium (the system binary) with the recipe's flags plus ``extra``."""
    return playwright.chromium.launch(executable_path=chromium, args=[*BROWSER_ARGS, *extra])


@pytest.fixture(scope="session")
def browser(playwright_instance: Any, chromium: str) -> Iterator[Any]:
    """The session's WebGL2-capable browser."""
    b = launch(playwright_instance, chromium)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JupyterLab server's root: notebooks and the stacks they open go here."""
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="session")
def lab(
    chromium: str, lab_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """One JupyterLab server for the session, stopped (with its kernels) at the end."""
    server = JupyterServer("lab", lab_root, tmp_path_factory.mktemp("lab-home"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def phantom(lab_root: Path) -> tuple[str, np.ndarray]:
    """The sample phantom written as a TIFF folder into the server root (10 µm voxels):
    its name relative to the root (the kernels' working directory) and its volume."""
    from ctstack.sample import phantom as make
    from ctstack.sample import write_phantom_stack

    write_phantom_stack(lab_root / "phantom", PHANTOM_SHAPE, voxel_size_um=10.0)
    return "phantom", make(PHANTOM_SHAPE)


@contextlib.contextmanager
def notebook_page(
    browser: Any, server: JupyterServer, name: str, cells: Sequence[str] | Path
) -> Iterator[NotebookPage]:
    """Write ``name`` into the server root (code ``cells``, or a copy of a notebook file), open
    it in a new page and yield it; close the page and shut its kernel down afterwards."""
    if isinstance(cells, Path):
        shutil.copyfile(cells, server.root / name)
    else:
        write_notebook(server.root / name, cells)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    nb = NotebookPage(page, server, name)
    try:
        yield nb.open()
    finally:
        page.close()
        with contextlib.suppress(Exception):
            for s in json.loads(server.api("/api/sessions")):
                if s.get("path") == name:
                    server.api(f"/api/sessions/{s['id']}", "DELETE")
