"""The harness itself, on a tiny anywidget defined in the test notebook (no ctstack viewer).

It checks what every viewer test relies on: cells run, Python values come back, a canvas's
``data-*`` attributes are waited for, and the ``data-image-rect`` crop of a page screenshot
matches the plane that was sent (and a mirrored one does not).
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import REQUIRE_BROWSER, _no_browser, assert_shows, match_scores, notebook_page

PROBE = r'''
import anywidget, numpy as np, traitlets

class Probe(anywidget.AnyWidget):
    """Draws plane z of a uint8 volume, scaled 2x, at an offset inside a larger canvas."""
    _esm = """
    function render({ model, el }) {
      const c = document.createElement("canvas");
      c.dataset.view = "xy"; c.dataset.frames = "0";
      el.appendChild(c);
      model.on("msg:custom", (msg, buffers) => {
        const { h, w, z } = msg, b = buffers[0];
        const u8 = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
        const rgba = new Uint8ClampedArray(w * h * 4);
        for (let i = 0; i < w * h; i++) {
          rgba[4*i] = rgba[4*i+1] = rgba[4*i+2] = u8[i]; rgba[4*i+3] = 255; }
        const off = new OffscreenCanvas(w, h);
        off.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
        c.width = 2 * w + 30; c.height = 2 * h + 20;
        const g = c.getContext("2d"); g.fillStyle = "#000"; g.fillRect(0, 0, c.width, c.height);
        g.imageSmoothingEnabled = false; g.drawImage(off, 17, 9, 2 * w, 2 * h);
        Object.assign(c.dataset, { plane: String(z), complete: "1", renderer: "canvas2d",
          imageRect: `17,9,${2 * w},${2 * h}`, frames: String(+c.dataset.frames + 1) });
      });
      model.send({ type: "ready" });
    }
    export default { render };
    """
    z = traitlets.Int(0).tag(sync=True)

    def __init__(self, vol):
        super().__init__()
        self.vol = vol
        self.on_msg(lambda w, msg, buffers: self.draw() if msg.get("type") == "ready" else None)
        self.observe(lambda change: self.draw(), "z")

    def draw(self):
        p = np.ascontiguousarray(self.vol[self.z])
        self.send({"z": self.z, "h": p.shape[0], "w": p.shape[1]}, [p.tobytes()])

rng = np.random.default_rng(1)
vol = np.zeros((3, 50, 70), np.uint8)
vol[:, 5:20, 8:40] = 200  # an off-centre block: a mirrored image does not fit
vol += rng.integers(0, 40, vol.shape, dtype=np.uint8)
vol[1] = np.roll(vol[1], 25, axis=1)  # plane 1 differs from plane 0
'''


def test_harness_on_an_inline_widget(browser, lab):
    """Run cells, read Python values, wait for a frame, crop and correlate, move a slider."""
    with notebook_page(browser, lab, "harness.ipynb", [PROBE]) as nb:
        nb.run_all()
        assert nb.py("x = 6 * 7", "[x, vol.shape]") == [42, [3, 50, 70]]
        vol = np.asarray(nb.py("", "vol.tolist()"), np.uint8)
        cell = nb.run_cell("w = Probe(vol)\nw")
        sel = cell.canvas("xy")
        nb.wait_view(sel, plane=0)
        s = assert_shows(nb, sel, vol[0], (0, 255))
        assert s["same"] > 0.99 and s["mad"] < 2, s
        grey, part = nb.image_crop(sel)
        assert grey.shape == (100, 140) and part == (0.0, 0.0, 1.0, 1.0)
        wrong = match_scores(grey, np.kron(vol[0][::-1], np.ones((2, 2))))
        assert wrong["same"] < 0.5 and wrong["anti_ud"] < -0.9, wrong
        before = nb.frames(sel)
        nb.py("w.z = 1")  # Python -> browser
        nb.wait_view(sel, after=before, plane=1)
        assert_shows(nb, sel, vol[1], (0, 255))
        assert nb.errors == []


def test_missing_browser_skips_or_fails_when_required(monkeypatch):
    """Without a Chromium the tests skip with the reason; CTSTACK_REQUIRE_BROWSER=1 fails."""
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        _no_browser("no Chromium found")
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="CTSTACK_REQUIRE_BROWSER=1 requires it"):
        _no_browser("no Chromium found")
