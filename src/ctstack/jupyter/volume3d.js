// ---- the 3D pane (issue 16): WebGL2 ray casting of one pyramid level --------------------------
//
// Appended to viewer.js by the kernel (see ADDONS there). The kernel picks the level (`volume`
// traitlet: level, shape, low, high, generation) and, asked once ({"type": "volume"}), sends it
// as z-slab bricks of float16 values normalised to [low, high] ("volume" messages, one buffer
// each). They fill an R16F 3D texture (LINEAR filtering) progressively; the values are also kept
// per widget (VOL3D_STORE, by the widget's model id, `volume.owner`), so a re-layout or another
// display of the same widget in the page does not fetch them again; a widget's values are freed
// VOL3D_KEEP_MS after its last display went (a re-run cell within that time reuses them).
//
// Rendering: a full-pane quad whose fragment shader casts one orthographic ray per pixel through
// the box [0, n0] of level-0 voxel indices (the box is scaled by the voxel size on screen):
//   "mip"  maximum along the ray, then the viewer's window and colormap LUT (as the 2D panes);
//   "iso"  the first point at the model's `threshold` (window middle when unset), refined by
//          bisection, shaded by the gradient (headlight Lambert + a little specular + depth cue).
// Camera (`camera_3d`): "z", "y", "x" look along that axis and orient the image exactly as the
// XY, XZ and YZ panes (AXES); {azimuth, elevation, zoom} turns about the z axis (azimuth 0 =
// the "y" view) and tilts toward it (elevation 90 = the "z" view), zoom 1 = fit. Left-drag
// rotates, the wheel zooms, a double click resets to the default view.
// Overlays (a 2D canvas on top): the volume's box, the three crosshair planes and the ROI box.
// Test hooks on canvas[data-view="3d"] after each draw: data-frames, data-level, data-mode,
// data-complete ("1" once every brick is in and drawn at full resolution), data-camera,
// data-image-rect (CSS px bounding rect of the projected volume), data-roi-rect, data-bricks;
// While dragging (and while bricks arrive) frames are drawn at a lower resolution (down to 1/8)
// with half the samples per ray, then sharp again. root.__ctstack.log3d holds {t, ms, scale, interactive, complete} per frame (ms includes a GPU
// sync); root.__ctstack.first3d = {ms, lastBrickMs, bytes}: display -> first complete frame.

const VOL3D_STORE = new Map(); // volume.owner -> {key, shape, low, high, data, got, count, views}
const VOL3D_KEEP_MS = 30000;
const VOL3D_DEFAULT_CAMERA = { azimuth: -35, elevation: 25, zoom: 1 };
const VOL3D_NAMED = {
  // right, down, into (x, y, z components): the 2D panes' orientation (AXES)
  z: [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
  y: [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
  x: [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
};
const VOL3D_ANGLES = { z: [0, 90], y: [0, 0], x: [90, 0] };
const VOL3D_ROI_COLOR = "rgba(60, 220, 255, 0.95)";
const VOL3D_BOX_COLOR = "rgba(255, 255, 255, 0.35)";
const VOL3D_CAMERA_MS = 150; // throttle of the camera_3d write-back while dragging
const VOL3D_LOADING_MS = 400; // at most one redraw per this while bricks arrive
const VOL3D_FAST_MS = 40; // a drag frame slower than this halves the drawing resolution
const VOL3D_MAX_STEPS = 4096;
const VOL3D_MIN_SCALE = 0.125; // the lowest drawing resolution while dragging (software GL)

const VOL3D_VS = `#version 300 es
in vec2 a_pos;
void main() { gl_Position = vec4(a_pos * 2.0 - 1.0, 0.0, 1.0); }`;

const VOL3D_FS = `#version 300 es
precision highp float;
precision highp sampler3D;
uniform sampler3D u_vol;
uniform sampler2D u_lut;
uniform vec2 u_canvas;   // drawing buffer size (device px)
uniform vec2 u_css;      // pane size (CSS px)
uniform vec3 u_origin;   // level-0 index point at the pane centre (on the ray's t = 0 plane)
uniform vec3 u_dx;       // index-space step per CSS px to the right
uniform vec3 u_dy;       // ... per CSS px down
uniform vec3 u_dir;      // index-space step along the ray (one sample)
uniform vec3 u_n0;       // level-0 shape (x, y, z)
uniform vec3 u_texspan;  // level-0 voxels covered by the texture (nk * 2^k) per axis
uniform vec3 u_vox;      // voxel size (x, y, z), normalised
uniform vec3 u_into;     // viewing direction in physical space
uniform int u_mode;      // 0 mip, 1 iso
uniform float u_wlo;     // window in normalised units
uniform float u_whi;
uniform float u_iso;     // threshold in normalised units
uniform vec3 u_bg;
out vec4 outColor;

float sampleAt(vec3 p) { return texture(u_vol, p / u_texspan).r; }

void main() {
  vec2 px = vec2(gl_FragCoord.x / u_canvas.x * u_css.x, (u_canvas.y - gl_FragCoord.y) / u_canvas.y * u_css.y);
  vec3 o = u_origin + (px.x - 0.5 * u_css.x) * u_dx + (px.y - 0.5 * u_css.y) * u_dy;
  vec3 d = u_dir;
  vec3 inv = 1.0 / vec3(abs(d.x) < 1e-9 ? 1e-9 : d.x, abs(d.y) < 1e-9 ? 1e-9 : d.y, abs(d.z) < 1e-9 ? 1e-9 : d.z);
  vec3 t0 = (vec3(0.0) - o) * inv;
  vec3 t1 = (u_n0 - o) * inv;
  vec3 tmin = min(t0, t1);
  vec3 tmax = max(t0, t1);
  float tn = max(max(tmin.x, tmin.y), tmin.z);
  float tf = min(min(tmax.x, tmax.y), tmax.z);
  if (tf <= tn) { outColor = vec4(u_bg, 1.0); return; }
  int n = int(min(ceil(tf - tn), float(${VOL3D_MAX_STEPS})));
  if (u_mode == 0) {
    float m = -1e30;
    for (int i = 0; i < ${VOL3D_MAX_STEPS}; i++) {
      if (i >= n) break;
      m = max(m, sampleAt(o + (tn + float(i) + 0.5) * d));
      if (m >= u_whi) break; // saturated: nothing brighter can show
    }
    float t = clamp((m - u_wlo) / (u_whi - u_wlo), 0.0, 1.0);
    outColor = texture(u_lut, vec2((t * 255.0 + 0.5) / 256.0, 0.5));
    return;
  }
  float prevT = tn;
  for (int i = 0; i < ${VOL3D_MAX_STEPS}; i++) {
    if (i >= n) break;
    float t = tn + float(i) + 0.5;
    float v = sampleAt(o + t * d);
    if (v >= u_iso) {
      float a = prevT;
      float b = t;
      for (int j = 0; j < 5; j++) { // bisection to the crossing
        float c = 0.5 * (a + b);
        if (sampleAt(o + c * d) >= u_iso) b = c; else a = c;
      }
      vec3 p = o + b * d;
      vec3 e = u_texspan / vec3(textureSize(u_vol, 0)); // one texel in level-0 voxels
      vec3 g = vec3(
        sampleAt(p + vec3(e.x, 0, 0)) - sampleAt(p - vec3(e.x, 0, 0)),
        sampleAt(p + vec3(0, e.y, 0)) - sampleAt(p - vec3(0, e.y, 0)),
        sampleAt(p + vec3(0, 0, e.z)) - sampleAt(p - vec3(0, 0, e.z))) / (e * u_vox);
      vec3 nrm = length(g) > 1e-12 ? -normalize(g) : -u_into;
      float diff = abs(dot(nrm, -u_into));
      float spec = pow(diff, 24.0) * 0.35;
      float depth = 1.0 - 0.35 * clamp((b - tn) / max(float(n), 1.0), 0.0, 1.0);
      vec3 base = vec3(0.93, 0.87, 0.76);
      outColor = vec4((base * (0.18 + 0.82 * diff) + spec) * depth, 1.0);
      return;
    }
    prevT = t;
  }
  outColor = vec4(u_bg, 1.0);
}`;

/** Round-trip helpers for vectors (x, y, z order). */
const vol3dDot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const vol3dNorm = (a) => {
  const l = Math.hypot(a[0], a[1], a[2]) || 1;
  return a.map((v) => v / l);
};

/** The model's camera_3d as {name, az, el, zoom}: a named view or free angles (degrees). */
function vol3dCamera(value) {
  if (typeof value === "string" && VOL3D_NAMED[value]) {
    const [az, el] = VOL3D_ANGLES[value];
    return { name: value, az, el, zoom: 1 };
  }
  const c = value && typeof value === "object" ? value : VOL3D_DEFAULT_CAMERA;
  const num = (v, d) => (Number.isFinite(Number(v)) ? Number(v) : d);
  return {
    name: null,
    az: num(c.azimuth, VOL3D_DEFAULT_CAMERA.azimuth),
    el: clamp(num(c.elevation, VOL3D_DEFAULT_CAMERA.elevation), -90, 90),
    zoom: Math.max(1e-3, num(c.zoom, 1)),
  };
}

/** [right, down, into] unit vectors (physical x, y, z) of a camera. */
function vol3dBasis(cam) {
  if (cam.name) return VOL3D_NAMED[cam.name];
  const a = (cam.az * Math.PI) / 180;
  const e = (cam.el * Math.PI) / 180;
  const h = [Math.sin(a), -Math.cos(a), 0];
  const into = [Math.cos(e) * h[0], Math.cos(e) * h[1], Math.sin(e)];
  const down = [-Math.sin(e) * h[0], -Math.sin(e) * h[1], Math.cos(e)];
  return [[Math.cos(a), Math.sin(a), 0], down, into];
}

class Vol3DPane {
  constructor(viewer) {
    this.viewer = viewer;
    this.model = viewer.model;
    this.div = null;
    this.gl = null;
    this.frames = 0;
    this.rafId = 0;
    this.dirty = false;
    this.lastLoadDraw = 0;
    this.scale = 1;
    this.drag = null;
    this.localCamera = null; // while dragging: the camera shown (the model's lags behind)
    this.previewThreshold = null; // while the threshold slider moves
    this.reqId = 0;
    this.asked = ""; // the store key last asked for
    this.uploaded = new Set(); // brick indices in this context's texture
    this.texKey = "";
    this.message = "";
    this.log = [];
    this.tCreated = now();
    viewer.root.__ctstack.log3d = this.log;
    viewer.root.__ctstack.vol3d = this; // for tests and benchmarks
    this.saveCamera = throttle(() => this.flushCamera(), VOL3D_CAMERA_MS);
    const dirty = () => this.markDirty();
    for (const name of ["window", "colormap", "threshold", "render_3d", "overlays_3d", "voxel", "crosshair", "roi"]) {
      viewer.watch(`change:${name}`, dirty);
    }
    viewer.watch("change:camera_3d", () => {
      if (!this.drag) this.markDirty();
    });
    viewer.watch("change:volume", () => this.onVolume());
    viewer.watch("change:render_3d", () => this.refreshControls());
    viewer.watch("change:threshold", () => this.refreshControls());
    viewer.watch("change:histogram", () => this.refreshControls());
  }

  // -- model values --

  /** The widget whose volume the store holds (its model id, from the kernel). */
  get owner() {
    const v = this.model.get("volume");
    return v && v.owner ? String(v.owner) : "";
  }

  /** This display no longer uses its widget's store (onVolume counts it in); the store goes
   * some time after the widget's last display went. */
  releaseStore() {
    const owner = this.owner;
    const s = VOL3D_STORE.get(owner);
    if (!s) return;
    s.views.delete(this);
    if (s.views.size) return;
    setTimeout(() => {
      const now3 = VOL3D_STORE.get(owner);
      if (now3 === s && !s.views.size) VOL3D_STORE.delete(owner);
    }, VOL3D_KEEP_MS);
  }

  get volume() {
    const v = this.model.get("volume");
    if (!v || !Array.isArray(v.shape) || v.shape.length !== 3) return null;
    return v;
  }

  get mode() {
    return this.model.get("render_3d") === "iso" ? "iso" : "mip";
  }

  camera() {
    return this.localCamera || vol3dCamera(this.model.get("camera_3d"));
  }

  storeKey(v) {
    return `${v.generation}/${v.level}/${v.shape.join("x")}/${v.low}/${v.high}`;
  }

  store() {
    const v = this.volume;
    if (!v) return null;
    const s = VOL3D_STORE.get(this.owner);
    return s && s.key === this.storeKey(v) ? s : null;
  }

  /** The iso value in data units and whether it is the model's (else the window's middle). */
  threshold() {
    if (this.previewThreshold !== null) return { value: this.previewThreshold, set: true };
    const t = this.model.get("threshold");
    if (t !== null && t !== undefined && Number.isFinite(Number(t))) return { value: Number(t), set: true };
    const [lo, hi] = this.viewer.window;
    return { value: (lo + hi) / 2, set: false };
  }

  // -- pane --

  panesBuilt(free, size) {
    this.teardown();
    if (!free) return;
    this.div = free;
    this.size = size;
    this.dpr = window.devicePixelRatio || 1;
    this.canvas = h("canvas", { "data-view": "3d", class: "ctstack-canvas ctstack-vol3d-canvas" });
    this.overlay = h("canvas", { class: "ctstack-overlay" });
    this.label = h("div", { class: "ctstack-pane-label" });
    this.note = h("div", { class: "ctstack-vol3d-message", "data-role": "vol3d-message" });
    this.note.hidden = true;
    for (const c of [this.canvas, this.overlay]) {
      c.width = Math.round(size * this.dpr);
      c.height = Math.round(size * this.dpr);
      c.style.width = c.style.height = `${size}px`;
    }
    free.title = "3D view: drag to rotate, wheel to zoom, double-click to reset";
    free.append(this.canvas, this.overlay, this.label, this.buildControls(), this.note);
    this.canvas.dataset.frames = "0";
    this.canvas.dataset.complete = "0";
    if (this.model.get("force_canvas2d")) {
      this.fail("3D needs WebGL2: it is off here (renderer=\"canvas2d\"); the 2D panes work as usual");
    } else if (!this.initGl()) {
      this.fail("3D needs WebGL2, which this browser does not offer; the 2D panes work as usual");
    }
    this.bindPointer();
    this.refreshControls();
    this.onVolume();
    this.markDirty();
  }

  buildControls() {
    this.modeSelect = focusable(h("select", { "data-field": "render_3d", title: "3D rendering" }));
    for (const [v, text] of [["mip", "MIP"], ["iso", "iso-surface"]]) this.modeSelect.append(h("option", { value: v, text }));
    this.isoInput = focusable(h("input", { type: "range", "data-field": "threshold", title: "iso threshold", min: 0, max: 1, step: "any" }));
    this.isoValue = h("span", { class: "ctstack-vol3d-iso-value" });
    this.isoBox = h("label", { class: "ctstack-vol3d-iso" }, ["threshold ", this.isoInput, this.isoValue]);
    this.overlayBox = focusable(h("input", { type: "checkbox", "data-field": "overlays_3d", title: "crosshair planes and ROI box" }));
    const bar = h("div", { class: "ctstack-vol3d-controls" }, [
      this.modeSelect, this.isoBox, h("label", { title: "crosshair planes and ROI box" }, [this.overlayBox, " planes"]),
    ]);
    const v = this.viewer;
    v.listen(this.modeSelect, "change", () => v.setModel({ render_3d: this.modeSelect.value }));
    v.listen(this.isoInput, "input", () => {
      this.previewThreshold = Number(this.isoInput.value);
      this.isoValue.textContent = fmt(this.previewThreshold);
      this.markDirty();
    });
    v.listen(this.isoInput, "change", () => {
      const value = Number(this.isoInput.value);
      this.previewThreshold = null;
      v.setModel({ threshold: value });
    });
    v.listen(this.overlayBox, "change", () => v.setModel({ overlays_3d: this.overlayBox.checked }));
    for (const el of [bar]) v.listen(el, "pointerdown", (e) => e.stopPropagation());
    return bar;
  }

  refreshControls() {
    if (!this.div) return;
    this.modeSelect.value = this.mode;
    this.isoBox.hidden = this.mode !== "iso";
    this.overlayBox.checked = this.model.get("overlays_3d") !== false;
    const hist = this.model.get("histogram") || {};
    const v = this.volume || {};
    const lo = Number.isFinite(Number(hist.low)) ? Number(hist.low) : Number(v.low) || 0;
    const hi = Number.isFinite(Number(hist.high)) ? Number(hist.high) : Number(v.high) || 1;
    this.isoInput.min = String(lo);
    this.isoInput.max = String(hi > lo ? hi : lo + 1);
    this.isoInput.step = String((hi - lo) / 1000 || "any");
    if (this.previewThreshold === null) {
      const t = this.threshold();
      this.isoInput.value = String(t.value);
      this.isoValue.textContent = t.set ? fmt(t.value) : `${fmt(t.value)} (window middle)`;
    }
  }

  /** Show a failure in the pane instead of the volume. `kind`: "gl" (no WebGL2: for good),
   * "lost" (until the context is restored), "volume" (until another level is chosen). */
  fail(text, kind = "gl") {
    this.failKind = kind;
    this.message = text;
    this.note.textContent = text;
    this.note.hidden = false;
    this.canvas.dataset.error = text;
    this.viewer.updateStatus();
  }

  clearFail() {
    this.message = "";
    this.failKind = "";
    if (this.note) this.note.hidden = true;
    if (this.canvas) delete this.canvas.dataset.error;
  }

  teardown() {
    cancelAnimationFrame(this.rafId);
    this.rafId = 0;
    if (this.gl) {
      const gl = this.gl;
      if (!gl.isContextLost()) {
        gl.deleteTexture(this.tex);
        gl.deleteTexture(this.lutTex);
        gl.deleteProgram(this.prog);
      }
      this.canvas.removeEventListener("webglcontextlost", this.onLost);
      this.canvas.removeEventListener("webglcontextrestored", this.onRestored);
    }
    this.gl = null;
    this.div = null;
    this.message = "";
    this.failKind = "";
    this.uploaded = new Set();
    this.texKey = "";
  }

  // -- WebGL --

  initGl() {
    let gl = null;
    try {
      gl = this.canvas.getContext("webgl2", {
        alpha: false, antialias: false, depth: false, stencil: false, premultipliedAlpha: false, preserveDrawingBuffer: false,
      });
    } catch (err) {
      gl = null;
    }
    if (!gl) return false;
    this.gl = gl;
    this.onLost = (e) => {
      e.preventDefault(); // allows a restore
      this.fail("the 3D pane lost its WebGL context; waiting for the browser to restore it", "lost");
    };
    this.onRestored = () => {
      this.clearFail();
      this.setupGl();
      this.markDirty();
    };
    this.canvas.addEventListener("webglcontextlost", this.onLost);
    this.canvas.addEventListener("webglcontextrestored", this.onRestored);
    try {
      this.setupGl();
    } catch (err) {
      console.warn("ctstack: 3D setup failed", err);
      this.gl = null;
      return false;
    }
    return true;
  }

  setupGl() {
    const gl = this.gl;
    const p = linkProgram(gl, VOL3D_VS, VOL3D_FS);
    this.prog = p;
    this.loc = {};
    for (const n of ["u_vol", "u_lut", "u_canvas", "u_css", "u_origin", "u_dx", "u_dy", "u_dir", "u_n0", "u_texspan",
      "u_vox", "u_into", "u_mode", "u_wlo", "u_whi", "u_iso", "u_bg"]) this.loc[n] = gl.getUniformLocation(p, n);
    gl.useProgram(p);
    gl.uniform1i(this.loc.u_vol, 0);
    gl.uniform1i(this.loc.u_lut, 1);
    [this.vao] = unitQuad(gl);
    this.lutTex = gl.createTexture();
    this.lutOf = null;
    this.tex = null;
    this.texKey = "";
    this.uploaded = new Set();
    this.maxSide = gl.getParameter(gl.MAX_3D_TEXTURE_SIZE);
  }

  setLut(lut) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.lutTex);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, lut);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.NEAREST], [gl.TEXTURE_MAG_FILTER, gl.NEAREST],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, k, v);
    this.lutOf = lut;
  }

  /** Upload the bricks of the store that this context does not have yet. */
  syncTexture(s) {
    const gl = this.gl;
    const [nz, ny, nx] = s.shape;
    if (this.texKey !== s.key) {
      if (this.tex) gl.deleteTexture(this.tex);
      this.tex = null;
      this.uploaded = new Set();
      if (Math.max(nx, ny, nz) > this.maxSide) {
        this.fail(`3D level ${this.volume.level} (${nx}×${ny}×${nz}) exceeds this browser's 3D texture size `
          + `(${this.maxSide}); lower level_3d or texture_mb`, "volume");
        return false;
      }
      this.tex = gl.createTexture();
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_3D, this.tex);
      gl.texStorage3D(gl.TEXTURE_3D, 1, gl.R16F, nx, ny, nz);
      for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
        [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_R, gl.CLAMP_TO_EDGE]]) {
        gl.texParameteri(gl.TEXTURE_3D, k, v);
      }
      this.texKey = s.key;
    }
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_3D, this.tex);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    for (const [i, [z0, z1]] of s.got) {
      if (this.uploaded.has(i)) continue;
      const part = s.data.subarray(z0 * ny * nx, z1 * ny * nx);
      gl.texSubImage3D(gl.TEXTURE_3D, 0, 0, 0, z0, nx, ny, z1 - z0, gl.RED, gl.HALF_FLOAT, part);
      this.uploaded.add(i);
    }
    return true;
  }

  // -- the volume's transport --

  /** Ask the kernel for the chosen level unless this page holds it (or is fetching it). */
  onVolume() {
    const v = this.volume;
    this.refreshControls();
    this.markDirty();
    if (!v || !this.div) return;
    const key = this.storeKey(v);
    if (this.failKind === "volume" && key !== this.failedKey) this.clearFail(); // another level
    this.failedKey = key;
    const s = VOL3D_STORE.get(this.owner);
    if (s) s.views.add(this);
    if (s && s.key === key && (s.got.size === s.count || s.pending)) return;
    const n = v.shape[0] * v.shape[1] * v.shape[2];
    VOL3D_STORE.set(this.owner, {
      views: new Set([...(s ? s.views : []), this]),
      key, shape: v.shape.map(Number), low: Number(v.low), high: Number(v.high),
      data: new Uint16Array(n), got: new Map(), count: -1, pending: true, t0: now(), bytes: 0,
    });
    this.asked = key;
    this.reqId += 1;
    this.viewer.send({ type: "volume", id: this.reqId, generation: v.generation, level: v.level });
  }

  onMessage(msg, buffers) {
    if (msg.type === "volume_error") {
      const s = VOL3D_STORE.get(this.owner);
      if (s) s.pending = false;
      this.fail(`3D volume not loaded: ${msg.message}`, "volume");
      return true;
    }
    if (msg.type !== "volume") return false;
    const s = VOL3D_STORE.get(this.owner);
    const key = this.storeKey({ generation: msg.generation, level: msg.level, shape: msg.shape || [], low: msg.low, high: msg.high });
    if (!s || s.key !== key || !buffers[0]) return true; // an older level or generation
    const buf = buffers[0];
    const [, ny, nx] = s.shape;
    const src = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    const off = msg.z0 * ny * nx * 2;
    if (src.byteLength !== (msg.z1 - msg.z0) * ny * nx * 2 || off + src.byteLength > s.data.byteLength) return true;
    new Uint8Array(s.data.buffer).set(src, off);
    s.got.set(msg.index, [msg.z0, msg.z1]);
    s.count = msg.count;
    s.bytes += src.byteLength;
    if (s.got.size === s.count) {
      s.pending = false;
      s.t1 = now();
    }
    this.markDirty();
    return true;
  }

  // -- camera --

  /** CSS px per physical unit for a camera (1 = the box's face fits for named views, the box's
   * diagonal fits for free angles). */
  scaleOf(cam, dims) {
    const size = this.size;
    if (cam.name) {
      const [r, d] = VOL3D_NAMED[cam.name];
      const w = Math.abs(vol3dDot(r, dims));
      const hgt = Math.abs(vol3dDot(d, dims));
      return cam.zoom * Math.min(size / w, size / hgt);
    }
    return (cam.zoom * size) / (Math.hypot(dims[0], dims[1], dims[2]) || 1);
  }

  /** Geometry of the current camera: basis, scale, voxel sizes, the level-0 box. */
  geometry() {
    const shape0 = this.viewer.shape; // z, y, x
    const n0 = [shape0[2], shape0[1], shape0[0]];
    const vz = this.viewer.voxel;
    let vox = Array.isArray(vz) ? [Number(vz[2]), Number(vz[1]), Number(vz[0])] : [1, 1, 1];
    if (!vox.every((v) => v > 0 && Number.isFinite(v))) vox = [1, 1, 1];
    const vmin = Math.min(...vox);
    vox = vox.map((v) => v / vmin);
    const dims = n0.map((n, i) => n * vox[i]);
    const cam = this.camera();
    const [right, down, into] = vol3dBasis(cam);
    const s = this.scaleOf(cam, dims);
    const centre = dims.map((d) => d / 2);
    // physical point -> CSS px
    const project = (p) => {
      const rel = p.map((v, i) => v - centre[i]);
      return [this.size / 2 + s * vol3dDot(rel, right), this.size / 2 + s * vol3dDot(rel, down)];
    };
    return { n0, vox, dims, cam, right, down, into, s, centre, project };
  }

  /** From the current camera to free angles with the same on-screen scale. */
  freeCamera() {
    const g = this.geometry();
    const cam = g.cam;
    if (!cam.name) return { ...cam };
    const free = { name: null, az: cam.az, el: cam.el, zoom: 1 };
    free.zoom = g.s / this.scaleOf(free, g.dims);
    return free;
  }

  setLocalCamera(cam) {
    this.localCamera = cam;
    this.saveCamera();
    this.markDirty();
  }

  flushCamera() {
    const c = this.localCamera;
    if (!c || this.viewer.destroyed) return;
    const value = {
      azimuth: Number((((c.az % 360) + 540) % 360 - 180).toFixed(2)),
      elevation: Number(c.el.toFixed(2)),
      zoom: Number(c.zoom.toPrecision(5)),
    };
    this.viewer.setModel({ camera_3d: value });
    if (!this.drag) this.localCamera = null;
  }

  bindPointer() {
    const v = this.viewer;
    const el = this.div;
    v.listen(el, "pointerdown", (e) => {
      if (e.button !== 0 || !this.gl) return;
      el.setPointerCapture(e.pointerId);
      this.drag = { x: e.clientX, y: e.clientY, cam: this.freeCamera(), moved: false };
      // start at the resolution whose frame should take <= VOL3D_FAST_MS (time ~ pixels)
      const full = this.lastFullMs || 0;
      this.scale = [1, 0.5].find((f) => full * f * f / 2 <= VOL3D_FAST_MS) || 0.25;
      e.preventDefault();
    });
    v.listen(el, "pointermove", (e) => {
      const d = this.drag;
      if (!d) return;
      const dx = e.clientX - d.x;
      const dy = e.clientY - d.y;
      if (!d.moved && Math.hypot(dx, dy) < 2) return;
      d.moved = true;
      this.setLocalCamera({ ...d.cam, az: d.cam.az - dx * 0.5, el: clamp(d.cam.el + dy * 0.5, -90, 90) });
    });
    const end = (e) => {
      const d = this.drag;
      if (!d) return;
      this.drag = null;
      if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
      this.scale = 1;
      if (d.moved) {
        this.saveCamera.cancel();
        this.flushCamera();
      }
      this.markDirty();
    };
    v.listen(el, "pointerup", end);
    v.listen(el, "pointercancel", end);
    v.listen(el, "wheel", (e) => {
      if (!this.gl) return;
      e.preventDefault();
      const c = this.localCamera || this.freeCamera();
      this.setLocalCamera({ ...c, zoom: clamp(c.zoom * Math.exp(-e.deltaY * 0.0015), 0.05, 50) });
      this.lastWheel = now();
      v.later(() => {
        if (!this.drag && now() - this.lastWheel >= 250) {
          this.saveCamera.cancel();
          this.flushCamera();
        }
      }, 300);
    }, { passive: false });
    v.listen(el, "dblclick", (e) => {
      e.preventDefault();
      this.localCamera = null;
      this.saveCamera.cancel();
      v.setModel({ camera_3d: { ...VOL3D_DEFAULT_CAMERA } });
    });
  }

  // -- frames --

  markDirty() {
    if (!this.div) return;
    this.dirty = true;
    if (this.canvas) this.canvas.dataset.complete = "0";
    if (!this.rafId && !this.viewer.destroyed) this.rafId = requestAnimationFrame(() => this.frame());
  }

  frame() {
    this.rafId = 0;
    if (!this.dirty || !this.div) return;
    const s = this.store();
    const loading = !!s && s.got.size !== s.count;
    const wait = VOL3D_LOADING_MS - (now() - this.lastLoadDraw);
    if (loading && !this.drag && wait > 0) {
      this.viewer.later(() => this.markDirty(), wait + 1); // bricks are still coming
      return;
    }
    this.dirty = false;
    this.draw();
    this.viewer.updateStatus();
  }

  /** Draw the volume and the overlays; `forShot` draws at full resolution, not logged. */
  draw(forShot = false) {
    const t0 = now();
    const s = this.store();
    const complete = !!s && s.got.size === s.count;
    const interactive = !forShot && (!!this.drag || (!!this.localCamera && !complete));
    let scale = 1;
    if (!forShot && this.drag) scale = this.scale;
    else if (!forShot && !complete) scale = 0.25; // a preview while bricks arrive: cheap
    // while dragging or loading: half the samples along each ray too
    const drawn = this.gl && !this.message ? this.drawGl(s, scale, scale < 1) : false;
    if (!complete) this.lastLoadDraw = now();
    this.drawOverlay3d();
    if (forShot || !drawn) return;
    if (this.gl) {
      const px = new Uint8Array(4); // wait for the GPU: the frame time includes the drawing
      this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
    }
    const ms = now() - t0;
    if (this.drag) {
      if (ms > VOL3D_FAST_MS && this.scale > VOL3D_MIN_SCALE) this.scale /= 2;
      else if (ms < VOL3D_FAST_MS / 3 && this.scale < 1) this.scale *= 2;
    }
    this.frames += 1;
    if (scale === 1) this.lastFullMs = ms;
    this.log.push({ t: t0, ms, scale, interactive, complete });
    if (this.log.length > LOG_MAX) this.log.splice(0, this.log.length - LOG_MAX);
    const d = this.canvas.dataset;
    const g = this.geometry();
    d.frames = String(this.frames);
    d.level = String(this.volume ? this.volume.level : -1);
    d.mode = this.mode;
    d.camera = g.cam.name || `${fmt(g.cam.az)},${fmt(g.cam.el)},${fmt(g.cam.zoom)}`;
    d.bricks = s ? `${s.got.size}/${Math.max(s.count, 0)}` : "0/0";
    d.threshold = this.mode === "iso" ? String(this.threshold().value) : "";
    d.complete = complete && scale === 1 && !this.dirty ? "1" : "0";
    if (d.complete === "1" && !this.viewer.root.__ctstack.first3d) {
      // display -> first complete frame, and when the last brick came (for the benchmark)
      this.viewer.root.__ctstack.first3d = { ms: now() - this.tCreated, lastBrickMs: s.t1 - this.tCreated, bytes: s.bytes };
    }
  }

  drawGl(s, scale, coarse = false) {
    const gl = this.gl;
    if (gl.isContextLost()) return false;
    const W = Math.max(1, Math.round(this.size * this.dpr * scale));
    if (this.canvas.width !== W) this.canvas.width = this.canvas.height = W;
    gl.viewport(0, 0, W, W);
    const bg = BACKGROUND;
    if (!s || !s.got.size || !this.syncTexture(s)) {
      gl.clearColor(bg[0], bg[1], bg[2], 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      return !!s && !this.message;
    }
    if (this.lutOf !== this.viewer.lut) this.setLut(this.viewer.lut);
    const g = this.geometry();
    const L = this.loc;
    const [nz, ny, nx] = s.shape;
    const f = 2 ** (this.volume ? this.volume.level : 0);
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_3D, this.tex);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.lutTex);
    // physical -> level-0 index: divide by vox; the ray's step is one texel of the level
    const toIdx = (p) => p.map((v, i) => v / g.vox[i]);
    const origin = toIdx(g.centre);
    const dx = toIdx(g.right).map((v) => v / g.s);
    const dy = toIdx(g.down).map((v) => v / g.s);
    let dir = vol3dNorm(toIdx(g.into)); // unit length in level-0 voxels ...
    const step = (this.mode === "iso" ? 0.5 : 1) * (coarse ? 2 : 1);
    dir = dir.map((v) => v * f * step); // ... times the level's voxel (half of it for iso)
    const span = [nx * f, ny * f, nz * f];
    const [lo, hi] = this.viewer.window;
    const norm = (v) => (v - s.low) / (s.high - s.low);
    gl.uniform2f(L.u_canvas, W, W);
    gl.uniform2f(L.u_css, this.size, this.size);
    gl.uniform3fv(L.u_origin, origin);
    gl.uniform3fv(L.u_dx, dx);
    gl.uniform3fv(L.u_dy, dy);
    gl.uniform3fv(L.u_dir, dir);
    gl.uniform3fv(L.u_n0, g.n0);
    gl.uniform3fv(L.u_texspan, span);
    gl.uniform3fv(L.u_vox, g.vox);
    gl.uniform3fv(L.u_into, g.into);
    gl.uniform1i(L.u_mode, this.mode === "iso" ? 1 : 0);
    gl.uniform1f(L.u_wlo, norm(lo));
    gl.uniform1f(L.u_whi, Math.max(norm(hi), norm(lo) + 1e-6));
    gl.uniform1f(L.u_iso, norm(this.threshold().value));
    gl.uniform3fv(L.u_bg, bg);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    return true;
  }

  /** The volume's box, the crosshair planes and the ROI box, projected (CSS px). */
  drawOverlay3d() {
    const ctx = this.overlay.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.size, this.size);
    const g = this.geometry();
    const d = this.canvas.dataset;
    const boxRect = this.rectOf(g, [0, 0, 0], g.n0);
    d.imageRect = boxRect.map((v) => v.toFixed(2)).join(",");
    const mode = this.mode === "iso" ? "iso" : "MIP";
    const v = this.volume;
    const s = this.store();
    let text = `3D · ${mode}${v ? ` · level ${v.level}` : ""}`;
    if (s && s.got.size !== s.count) text += ` · loading ${s.got.size}/${s.count > 0 ? s.count : "…"}`;
    this.label.textContent = text;
    delete d.roiRect;
    if (this.model.get("overlays_3d") === false || this.message) return;
    ctx.lineWidth = 1;
    this.drawBox(ctx, g, [0, 0, 0], g.n0, VOL3D_BOX_COLOR, null);
    // the crosshair planes (x, y, z order), at the voxel centres
    const ch = this.viewer.crosshair; // z, y, x
    const c = [ch[2] + 0.5, ch[1] + 0.5, ch[0] + 0.5];
    for (let axis = 0; axis < 3; axis++) {
      const lo = [0, 0, 0];
      const hi = [...g.n0];
      lo[axis] = hi[axis] = c[axis];
      this.drawBox(ctx, g, lo, hi, CROSSHAIR_COLOR, "rgba(255, 200, 40, 0.07)");
    }
    const roi = this.model.get("roi");
    if (roi && Array.isArray(roi.z) && Array.isArray(roi.y) && Array.isArray(roi.x)) {
      const lo = [Number(roi.x[0]), Number(roi.y[0]), Number(roi.z[0])];
      const hi = [Number(roi.x[1]), Number(roi.y[1]), Number(roi.z[1])];
      if (lo.every(Number.isFinite) && hi.every(Number.isFinite) && lo.every((a, i) => hi[i] > a)) {
        ctx.lineWidth = 2;
        const whole = lo.every((a) => a <= 0) && hi.every((b, i) => b >= g.n0[i]);
        if (!whole) this.drawBox(ctx, g, lo, hi, VOL3D_ROI_COLOR, null); // whole = the box itself
        d.roiRect = this.rectOf(g, lo, hi).map((q) => q.toFixed(2)).join(",");
      }
    }
  }

  /** The 8 corners of a level-0 index box, projected to CSS px. */
  corners(g, lo, hi) {
    const out = [];
    for (let i = 0; i < 8; i++) {
      const p = [i & 1 ? hi[0] : lo[0], i & 2 ? hi[1] : lo[1], i & 4 ? hi[2] : lo[2]];
      out.push(g.project(p.map((q, k) => q * g.vox[k])));
    }
    return out;
  }

  /** [x, y, w, h] CSS px bounding the projected box. */
  rectOf(g, lo, hi) {
    const pts = this.corners(g, lo, hi);
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs);
    const y0 = Math.min(...ys);
    return [x0, y0, Math.max(...xs) - x0, Math.max(...ys) - y0];
  }

  drawBox(ctx, g, lo, hi, stroke, fill) {
    const p = this.corners(g, lo, hi);
    ctx.strokeStyle = stroke;
    ctx.beginPath();
    for (let i = 0; i < 8; i++) {
      for (const bit of [1, 2, 4]) {
        if (i & bit) continue;
        const j = i | bit;
        if (p[i][0] === p[j][0] && p[i][1] === p[j][1]) continue; // a flat box's zero edge
        ctx.moveTo(p[i][0], p[i][1]);
        ctx.lineTo(p[j][0], p[j][1]);
      }
    }
    ctx.stroke();
    if (fill) {
      // a flat box (a plane): fill its outline (corners 0, 1|2|4 ordering by the two spanning bits)
      const flat = [0, 1, 2].find((a) => lo[a] === hi[a]);
      if (flat !== undefined) {
        const [a, b] = [1, 2, 4].filter((bit, k) => k !== flat);
        ctx.fillStyle = fill;
        ctx.beginPath();
        for (const i of [0, a, a | b, b]) ctx.lineTo(p[i][0], p[i][1]);
        ctx.closePath();
        ctx.fill();
      }
    }
  }

  // -- hooks --

  statusParts(parts) {
    if (!this.div) return;
    if (this.message) parts.push(this.message); // each names the 3D pane
    else if (this.mode === "iso" && !this.threshold().set) {
      parts.push(`3D iso at the window's middle (${fmt(this.threshold().value)}): threshold not set`);
    }
  }

  /** The 3D pane alone, with its overlays (view "3d", or the whole "3d" layout). */
  screenshot(msg) {
    if (!this.div || !(msg.view === "3d" || (!msg.view && this.viewer.layout === "3d"))) return null;
    return Promise.resolve(this.snapshot());
  }

  /** Draw the 3D pane into a whole-viewer screenshot (ortho layout: its cell at x, y). */
  composeFree(ctx, x, y) {
    if (this.div) ctx.drawImage(this.snapshot(), x, y);
  }

  snapshot() {
    const W = Math.round(this.size * this.dpr);
    const out = document.createElement("canvas");
    out.width = out.height = W;
    const ctx = out.getContext("2d");
    ctx.fillStyle = `rgb(${BACKGROUND.map((v) => Math.round(v * 255)).join(",")})`;
    ctx.fillRect(0, 0, W, W);
    if (this.gl && !this.message) {
      this.drawGl(this.store(), 1); // same task as the copy: WebGL keeps no drawing buffer
      ctx.drawImage(this.canvas, 0, 0, W, W);
    }
    this.drawOverlay3d();
    ctx.drawImage(this.overlay, 0, 0, W, W);
    if (this.message) {
      ctx.fillStyle = "#ddd";
      ctx.font = `${Math.round(13 * this.dpr)}px sans-serif`;
      ctx.fillText(this.message, 8 * this.dpr, W / 2, W - 16 * this.dpr);
    }
    this.markDirty(); // the pane may have been drawn at a lower resolution
    return out;
  }

  destroy() {
    this.saveCamera.cancel();
    this.releaseStore();
    this.teardown();
  }
}

ADDONS.push((viewer) => new Vol3DPane(viewer));
