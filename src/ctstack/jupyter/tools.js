// ctstack Jupyter viewer add-on: the ROI and ruler tools of the 2D panes (issue 16).
//
// Appended to viewer.js by the kernel (see ADDONS there); no imports, top-level names prefixed
// "Tools". A tool bar picks the left-drag tool: "navigate" (the viewer's own click/pan), "roi"
// or "ruler" (keys r / m on a focused pane, Escape back to navigate).
//
// ROI: a drag draws the box in the pane's two axes (xy: y/x, xz: z/x, yz: z/y); a drag on an
// edge or corner of the box moves that edge, inside it moves the box. Two sliders set z
// start/stop. While dragging only this view changes; on release the `roi` trait is set once
// (level-0, half-open), and the kernel's model commits roi.json. "Auto" asks the kernel for
// ctstack.roi.suggest (its progress and outcome come back as `tool_status`), "Full" resets.
// The box is drawn dashed in every 2D pane while it is not the whole volume or the tool is on.
//
// Ruler: a drag draws a line in the pane's plane; on release it is sent to the kernel, whose
// model measures it (physical units from the voxel size) into `measurements`. Each measurement
// is drawn, with its length, in the panes whose plane holds it; a list shows them with delete
// buttons. Test hooks: data-tool on the viewer root, data-roi (the drawn box, CSS px
// "x,y,w,h") and data-measurements (count drawn) on each overlay canvas.

const TOOLS_ROI_COLOR = "rgb(60, 220, 255)"; // cyan: apart from the amber crosshair
const TOOLS_RULER_COLOR = "rgb(120, 255, 110)";
const TOOLS_DIM = "rgba(0, 0, 0, 0.35)"; // over the image outside the ROI
const TOOLS_GRAB_PX = 6; // an ROI edge this near the pointer (CSS px) is grabbed
const TOOLS_NAMES = [["navigate", "Navigate", "click: crosshair, drag: pan"],
  ["roi", "ROI", "drag: draw the box; drag an edge or the inside to change it (key r)"],
  ["ruler", "Ruler", "drag: measure a line (key m)"]];
const TOOLS_METRES = { nanometer: 1e-9, micrometer: 1e-6, millimeter: 1e-3, centimeter: 1e-2, meter: 1 };

/** A length as napari's ruler and the CSV label write it (ctstack.measurements.format_length). */
function toolsFormatLength(length, unit) {
  if (!Number.isFinite(length)) return "";
  const g = (v) => String(Number(v.toPrecision(4)));
  if (!unit || unit === "pixel" || unit === "pixels") return `${g(length)} pixels`;
  const f = TOOLS_METRES[unit];
  if (f === undefined) return `${g(length)} ${unit}`;
  const m = length * f;
  return m >= 1e-3 ? `${g(m / 1e-3)} mm` : `${g(m / 1e-6)} µm`;
}

class ToolsAddon {
  constructor(viewer) {
    this.v = viewer;
    this.tool = "navigate";
    this.draft = null; // the ROI while a drag or a slider moves it: {z, y, x} ranges
    this.drag = null; // {kind: "roi" | "ruler", pane, ...}
    this.line = null; // the ruler line being drawn: {start, end} level-0 points
    const w = (name, fn) => viewer.watch(name, fn);
    w("change:roi", () => this.refresh());
    w("change:shape", () => this.refresh());
    w("change:voxel", () => this.refresh());
    w("change:measurements", () => this.refresh());
    w("change:tool_status", () => this.refresh());
    viewer.listen(viewer.root, "keydown", (e) => this.onKey(e));
  }

  // -- values --

  /** The ROI on screen: the draft while one is being edited, else the model's, clamped. */
  roi() {
    if (this.draft) return this.draft;
    const shape = this.v.shape;
    const r = this.v.model.get("roi") || {};
    const out = {};
    ["z", "y", "x"].forEach((a, i) => {
      const p = Array.isArray(r[a]) ? r[a].map(Number) : [0, shape[i]];
      const lo = clamp(Number.isFinite(p[0]) ? Math.round(p[0]) : 0, 0, shape[i] - 1);
      const hi = clamp(Number.isFinite(p[1]) ? Math.round(p[1]) : shape[i], lo + 1, shape[i]);
      out[a] = [lo, hi];
    });
    return out;
  }

  isFull(roi) {
    return this.v.shape.every((n, i) => roi["zyx"[i]][0] === 0 && roi["zyx"[i]][1] === n);
  }

  measurements() {
    const m = this.v.model.get("measurements");
    return Array.isArray(m) ? m.filter((x) => x && Array.isArray(x.start) && Array.isArray(x.end)) : [];
  }

  /** Physical size text of an ROI ("4 x 12 x 9.6 mm"), or "" when the voxel size is unknown. */
  physicalSize(roi) {
    const vox = this.v.voxel;
    const unit = this.v.model.get("unit") || "pixel";
    if (!Array.isArray(vox) || unit === "pixel") return "";
    return `${["z", "y", "x"].map((a, i) => fmt(Number(((roi[a][1] - roi[a][0]) * Number(vox[i])).toPrecision(4)))).join(" x ")} ${unit}`;
  }

  roiText(roi) {
    const n = ["z", "y", "x"].map((a) => roi[a][1] - roi[a][0]);
    const phys = this.physicalSize(roi);
    return `ROI ${n.join(" x ")} voxels${phys ? `, ${phys}` : ""}`;
  }

  /** Length of a level-0 line in the viewer's display unit ("12.5 mm"; pixels without a voxel size). */
  lineText(line) {
    const vox = this.v.voxel;
    const unit = this.v.model.get("unit") || "pixel";
    const known = Array.isArray(vox) && unit !== "pixel";
    const d = [0, 1, 2].map((i) => (line.end[i] - line.start[i]) * (known ? Number(vox[i]) : 1));
    const len = Math.hypot(...d);
    return `ruler ${fmt(Number(len.toPrecision(4)))} ${known ? unit : "pixels"}`;
  }

  // -- controls --

  controls() {
    const button = (attrs, text, fn) => {
      const b = focusable(h("button", { type: "button", class: "ctstack-tool-button", ...attrs, text }));
      this.v.listen(b, "click", fn);
      return b;
    };
    this.toolButtons = TOOLS_NAMES.map(([name, text, title]) =>
      button({ "data-tool": name, title, "aria-pressed": "false" }, text, () => this.setTool(name)));
    this.autoButton = button({ "data-action": "roi-auto", title: "find the object (ctstack.roi.suggest)" },
      "Auto", () => this.v.send({ type: "roi_auto" }));
    this.fullButton = button({ "data-action": "roi-full", title: "the whole volume" }, "Full", () => this.commitFull());
    const slider = (field, title) => {
      const s = focusable(h("input", { type: "range", "data-field": field, min: 0, max: 1, step: 1, value: 0, title }));
      this.v.listen(s, "input", () => this.onZSlider(s, false));
      this.v.listen(s, "change", () => this.onZSlider(s, true));
      return s;
    };
    this.z0 = slider("roi-z0", "ROI z start (first slice)");
    this.z1 = slider("roi-z1", "ROI z stop (one past the last slice)");
    this.roiInfo = h("span", { class: "ctstack-roi-info", "data-role": "roi-info" });
    this.message = h("span", { class: "ctstack-tool-status", "data-role": "tool-status" });
    this.list = h("ol", { class: "ctstack-measurements", "data-role": "measurements" });
    this.clearButton = button({ "data-action": "measure-clear", title: "delete every measurement" }, "Clear",
      () => this.v.send({ type: "measure", op: "clear" }));
    const bar = h("div", { class: "ctstack-toolbar" }, [
      ...this.toolButtons, h("span", { class: "ctstack-tool-sep" }), this.autoButton, this.fullButton, this.message,
    ]);
    const zrow = h("div", { class: "ctstack-roi-z" }, [
      h("span", { class: "ctstack-axis-name", text: "ROI z" }), this.z0, this.z1, this.roiInfo,
    ]);
    this.ruler = h("div", { class: "ctstack-ruler-list" }, [this.list, this.clearButton]);
    this.panel = h("div", { class: "ctstack-tools", "data-role": "tools" }, [bar, zrow, this.ruler]);
    this.refresh();
    return this.panel;
  }

  setTool(name) {
    if (!TOOLS_NAMES.some(([n]) => n === name)) return;
    this.tool = name;
    this.cancelDrag();
    this.refresh();
  }

  onKey(e) {
    if (!e.target || !e.target.classList || !e.target.classList.contains("ctstack-pane")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.toLowerCase();
    const name = key === "r" ? "roi" : key === "m" ? "ruler" : key === "escape" ? "navigate" : null;
    if (!name) return;
    e.preventDefault();
    this.setTool(this.tool === name && name !== "navigate" ? "navigate" : name);
  }

  /** Bring the panel, the overlays and the status line up to date. */
  refresh() {
    if (!this.panel) return;
    this.v.root.dataset.tool = this.tool;
    for (const b of this.toolButtons) {
      const on = b.dataset.tool === this.tool;
      b.setAttribute("aria-pressed", String(on));
      b.classList.toggle("ctstack-pressed", on);
    }
    const roi = this.roi();
    const nz = this.v.shape[0];
    for (const [s, value] of [[this.z0, roi.z[0]], [this.z1, roi.z[1]]]) {
      s.max = String(nz);
      if (document.activeElement !== s || !this.draft) s.value = String(value);
    }
    this.roiInfo.textContent = `${roi.z[0]}–${roi.z[1] - 1} · ${this.roiText(roi)}`;
    const status = String(this.v.model.get("tool_status") || "");
    this.message.textContent = status;
    this.message.title = this.message.textContent;
    this.autoButton.disabled = status.startsWith("finding the object");
    this.refreshList();
    this.redraw();
  }

  refreshList() {
    const ms = this.measurements();
    const sig = JSON.stringify(ms);
    if (sig === this.listSig) return;
    this.listSig = sig;
    this.list.textContent = "";
    ms.forEach((m, i) => {
      const p = (pt) => `(${pt.map((v) => fmt(Number(Number(v).toFixed(1)))).join(", ")})`;
      const del = focusable(h("button", { type: "button", class: "ctstack-tool-button", "data-action": "measure-delete",
        "data-index": i, title: "delete this measurement", text: "✕" }));
      this.v.listen(del, "click", () => this.v.send({ type: "measure", op: "remove", index: i }));
      this.list.append(h("li", { "data-index": i }, [
        h("span", { class: "ctstack-measure-length", text: toolsFormatLength(Number(m.length), m.unit) }),
        h("span", { class: "ctstack-measure-points", text: ` ${p(m.start)} → ${p(m.end)} ` }), del,
      ]));
    });
    this.ruler.hidden = !ms.length;
  }

  redraw() {
    for (const p of this.v.panes) p.overlayDirty = true;
    this.v.scheduleFrame();
    this.v.updateStatus();
  }

  // -- ROI edits --

  /** A z handle moved (`done`: released); the other one gives way so at least one slice stays. */
  onZSlider(moved, done) {
    const nz = this.v.shape[0];
    const roi = { ...this.roi() };
    let a = clamp(Math.round(Number(this.z0.value)), 0, nz - 1);
    let b = clamp(Math.round(Number(this.z1.value)), 1, nz);
    if (b <= a) {
      if (moved === this.z0) b = a + 1;
      else a = b - 1;
    }
    roi.z = [a, b];
    this.draft = roi;
    if (done) this.commit();
    else this.refresh();
  }

  commit() {
    const roi = this.draft;
    this.draft = null;
    if (!roi) return;
    const old = this.roi();
    if (["z", "y", "x"].some((a) => roi[a][0] !== old[a][0] || roi[a][1] !== old[a][1])) {
      this.v.setModel({ roi: { z: roi.z, y: roi.y, x: roi.x, source: "user", reason: "" } });
    }
    this.refresh();
  }

  commitFull() {
    const s = this.v.shape;
    this.draft = { z: [0, s[0]], y: [0, s[1]], x: [0, s[2]] };
    this.commit();
  }

  cancelDrag() {
    this.drag = null;
    this.line = null;
    this.draft = null;
  }

  // -- pointer hooks --

  panesBuilt() {
    for (const p of this.v.panes) {
      this.v.listen(p.wrap, "pointermove", (e) => this.hover(p, e));
      this.v.listen(p.wrap, "pointercancel", () => {
        if (this.drag && this.drag.pane === p) {
          this.cancelDrag();
          this.refresh();
        }
      });
    }
  }

  /** The ROI tool's cursor: what a press here would grab (an edge, a corner, the box). */
  hover(pane, e) {
    let cursor = "";
    if (this.tool === "roi" && !this.drag) {
      const r = pane.wrap.getBoundingClientRect();
      const { mode, edges: ed } = this.roiHit(pane, e.clientX - r.left, e.clientY - r.top);
      if (mode === "move") cursor = "move";
      else if (mode === "edges") {
        const v = ed.top || ed.bottom;
        const hz = ed.left || ed.right;
        if (v && hz) cursor = (ed.top && ed.left) || (ed.bottom && ed.right) ? "nwse-resize" : "nesw-resize";
        else cursor = v ? "ns-resize" : "ew-resize";
      }
    }
    if (pane.wrap.style.cursor !== cursor) pane.wrap.style.cursor = cursor;
  }

  /** Level-0 (row, col) edge coordinates of a pointer, clamped to the plane. */
  point(pane, x, y) {
    const st = pane.state || pane.computeState();
    const [row, col] = pane.toImage(x, y);
    return [clamp(row, 0, st.H0), clamp(col, 0, st.W0)];
  }

  pointerDown(pane, e, x, y) {
    if (this.tool === "roi") return this.roiDown(pane, x, y);
    if (this.tool === "ruler") {
      const [row, col] = this.point(pane, x, y);
      const st = pane.state;
      const start = [0, 0, 0];
      start[pane.axes.plane] = st.p0;
      start[pane.axes.rows] = clamp(row - 0.5, -0.5, st.H0 - 0.5);
      start[pane.axes.cols] = clamp(col - 0.5, -0.5, st.W0 - 0.5);
      this.drag = { kind: "ruler", pane };
      this.line = { start, end: start.slice() };
      this.redraw();
      return true;
    }
    return false;
  }

  /** What a press at (x, y) would grab: {mode: "new" | "edges" | "move", edges}. */
  roiHit(pane, x, y) {
    const st = pane.state || pane.computeState();
    const g = st.geo;
    const roi = this.roi();
    const ra = "zyx"[pane.axes.rows];
    const ca = "zyx"[pane.axes.cols];
    const sx0 = g.x0 + roi[ca][0] * g.zx;
    const sx1 = g.x0 + roi[ca][1] * g.zx;
    const sy0 = g.y0 + roi[ra][0] * g.zy;
    const sy1 = g.y0 + roi[ra][1] * g.zy;
    const near = (a, b) => Math.abs(a - b) <= TOOLS_GRAB_PX;
    const inX = x >= sx0 - TOOLS_GRAB_PX && x <= sx1 + TOOLS_GRAB_PX;
    const inY = y >= sy0 - TOOLS_GRAB_PX && y <= sy1 + TOOLS_GRAB_PX;
    const shown = !this.isFull(roi) || this.tool === "roi";
    const edges = {
      top: shown && inX && near(y, sy0), bottom: shown && inX && near(y, sy1),
      left: shown && inY && near(x, sx0), right: shown && inY && near(x, sx1),
    };
    if (edges.top && edges.bottom) edges[Math.abs(y - sy0) <= Math.abs(y - sy1) ? "bottom" : "top"] = false;
    if (edges.left && edges.right) edges[Math.abs(x - sx0) <= Math.abs(x - sx1) ? "right" : "left"] = false;
    let mode = "new";
    if (edges.top || edges.bottom || edges.left || edges.right) mode = "edges";
    else if (shown && x > sx0 && x < sx1 && y > sy0 && y < sy1 && !this.isFull(roi)) mode = "move";
    return { mode, edges, roi, ra, ca };
  }

  roiDown(pane, x, y) {
    const { mode, edges, roi, ra, ca } = this.roiHit(pane, x, y);
    const [row, col] = this.point(pane, x, y);
    this.drag = { kind: "roi", pane, mode, edges, anchor: [row, col], start: roi, ra, ca, x, y, moved: false };
    this.draft = { z: roi.z.slice(), y: roi.y.slice(), x: roi.x.slice() };
    if (mode === "new") this.roiMove(pane, x, y);
    this.refresh();
    return true;
  }

  pointerMove(pane, e, x, y) {
    const d = this.drag;
    if (!d || d.pane !== pane) return;
    if (Math.hypot(x - (d.x ?? x), y - (d.y ?? y)) >= 3) d.moved = true;
    if (d.kind === "roi") this.roiMove(pane, x, y);
    else {
      const st = pane.state;
      const [row, col] = this.point(pane, x, y);
      const end = this.line.start.slice();
      end[pane.axes.rows] = clamp(row - 0.5, -0.5, st.H0 - 0.5);
      end[pane.axes.cols] = clamp(col - 0.5, -0.5, st.W0 - 0.5);
      this.line.end = end;
    }
    this.refresh();
  }

  roiMove(pane, x, y) {
    const d = this.drag;
    const st = pane.state;
    const [row, col] = this.point(pane, x, y);
    const size = { [d.ra]: st.H0, [d.ca]: st.W0 };
    const draft = { z: d.start.z.slice(), y: d.start.y.slice(), x: d.start.x.slice() };
    const span = (a, b, n) => {
      const lo = clamp(Math.floor(Math.min(a, b)), 0, n - 1);
      return [lo, clamp(Math.ceil(Math.max(a, b)), lo + 1, n)];
    };
    if (d.mode === "new") {
      draft[d.ra] = span(d.anchor[0], row, size[d.ra]);
      draft[d.ca] = span(d.anchor[1], col, size[d.ca]);
    } else if (d.mode === "move") {
      for (const [a, delta] of [[d.ra, row - d.anchor[0]], [d.ca, col - d.anchor[1]]]) {
        const [lo, hi] = d.start[a];
        const shift = clamp(Math.round(delta), -lo, size[a] - hi);
        draft[a] = [lo + shift, hi + shift];
      }
    } else {
      const edge = (a, value, which) => { // the box keeps at least one voxel
        const [lo, hi] = d.start[a];
        const v = Math.round(value);
        draft[a] = which === 0 ? [clamp(v, 0, hi - 1), hi] : [lo, clamp(v, lo + 1, size[a])];
      };
      if (d.edges.top) edge(d.ra, row, 0);
      if (d.edges.bottom) edge(d.ra, row, 1);
      if (d.edges.left) edge(d.ca, col, 0);
      if (d.edges.right) edge(d.ca, col, 1);
    }
    this.draft = draft;
  }

  pointerUp(pane, e, x, y) {
    const d = this.drag;
    if (!d) return;
    this.pointerMove(pane, e, x, y);
    this.drag = null;
    if (d.kind === "roi") {
      if (d.mode === "new" && !d.moved) this.draft = null; // a click draws no box
      this.commit();
      return;
    }
    const line = this.line;
    this.line = null;
    const st = pane.state;
    const dr = (line.end[pane.axes.rows] - line.start[pane.axes.rows]) * st.geo.zy;
    const dc = (line.end[pane.axes.cols] - line.start[pane.axes.cols]) * st.geo.zx;
    if (Math.hypot(dr, dc) >= 3) { // a click is not a measurement
      const r = (p) => p.map((v) => Number(v.toFixed(3)));
      this.v.send({ type: "measure", op: "add", start: r(line.start), end: r(line.end) });
    }
    this.refresh();
  }

  // -- drawing --

  drawOverlay(pane, ctx, st) {
    const g = st.geo;
    const roi = this.roi();
    const ra = "zyx"[pane.axes.rows];
    const ca = "zyx"[pane.axes.cols];
    const pa = "zyx"[pane.axes.plane];
    delete pane.overlay.dataset.roi;
    if (!this.isFull(roi) || this.tool === "roi" || this.draft) {
      const x0 = g.x0 + roi[ca][0] * g.zx;
      const y0 = g.y0 + roi[ra][0] * g.zy;
      const w = (roi[ca][1] - roi[ca][0]) * g.zx;
      const hh = (roi[ra][1] - roi[ra][0]) * g.zy;
      const inside = st.p0 >= roi[pa][0] && st.p0 < roi[pa][1]; // this plane crosses the box
      ctx.save();
      if (!this.isFull(roi)) { // dim the image outside the box
        ctx.fillStyle = TOOLS_DIM;
        ctx.beginPath();
        ctx.rect(g.x0, g.y0, st.W0 * g.zx, st.H0 * g.zy);
        ctx.rect(x0, y0, w, hh);
        ctx.fill("evenodd");
      }
      ctx.strokeStyle = TOOLS_ROI_COLOR;
      ctx.globalAlpha = inside ? 1 : 0.5;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([6, 4]);
      ctx.strokeRect(x0 + 0.75, y0 + 0.75, Math.max(0, w - 1.5), Math.max(0, hh - 1.5));
      if (this.tool === "roi") { // grab handles at the corners and edge middles
        ctx.setLineDash([]);
        ctx.fillStyle = TOOLS_ROI_COLOR;
        for (const fx of [0, 0.5, 1]) {
          for (const fy of [0, 0.5, 1]) {
            if (fx === 0.5 && fy === 0.5) continue;
            ctx.fillRect(x0 + fx * w - 3, y0 + fy * hh - 3, 6, 6);
          }
        }
      }
      ctx.restore();
      pane.overlay.dataset.roi = [x0, y0, w, hh].map((v) => Number(v.toFixed(2))).join(",");
    }
    let drawn = 0;
    for (const m of this.measurements()) {
      if (this.drawLine(pane, ctx, st, m.start, m.end, toolsFormatLength(Number(m.length), m.unit))) drawn += 1;
    }
    if (this.line && this.drag && this.drag.pane === pane) {
      this.drawLine(pane, ctx, st, this.line.start, this.line.end, this.lineText(this.line).slice(6));
    }
    pane.overlay.dataset.measurements = String(drawn);
  }

  /** A line between level-0 points (voxel centres at integers) if this pane's plane holds it. */
  drawLine(pane, ctx, st, a, b, label) {
    const p = pane.axes.plane;
    if (Math.abs(Number(a[p]) - st.p0) > 0.5 || Math.abs(Number(b[p]) - st.p0) > 0.5) return false;
    const g = st.geo;
    const sx = (pt) => g.x0 + (Number(pt[pane.axes.cols]) + 0.5) * g.zx;
    const sy = (pt) => g.y0 + (Number(pt[pane.axes.rows]) + 0.5) * g.zy;
    const [x0, y0, x1, y1] = [sx(a), sy(a), sx(b), sy(b)];
    ctx.save();
    ctx.strokeStyle = TOOLS_RULER_COLOR;
    ctx.fillStyle = TOOLS_RULER_COLOR;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    for (const [x, y] of [[x0, y0], [x1, y1]]) {
      ctx.beginPath();
      ctx.arc(x, y, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (label) {
      ctx.font = "12px system-ui, sans-serif";
      const tw = ctx.measureText(label).width;
      const lx = clamp((x0 + x1) / 2 + 6, 2, pane.cssW - tw - 6);
      const ly = clamp((y0 + y1) / 2 - 6, 14, pane.cssH - 4);
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fillRect(lx - 3, ly - 12, tw + 6, 16);
      ctx.fillStyle = TOOLS_RULER_COLOR;
      ctx.fillText(label, lx, ly);
    }
    ctx.restore();
    return true;
  }

  statusParts(parts) {
    if (this.drag && this.drag.kind === "roi" && this.draft) parts.push(this.roiText(this.draft));
    else if (this.drag && this.drag.kind === "ruler" && this.line) parts.push(this.lineText(this.line));
    else if (this.tool === "roi" || this.draft) parts.push(this.roiText(this.roi()));
    const status = String(this.v.model.get("tool_status") || "");
    if (status) parts.push(status);
  }

  destroy() {
    this.cancelDrag();
  }
}

ADDONS.push((viewer) => new ToolsAddon(viewer));
