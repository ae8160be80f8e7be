// ctstack Jupyter viewer: the browser half of `ctstack.view()` (issue 15, see CONTRACT.md).
//
// A plain ES2020 module with no imports, loaded by anywidget, which calls `render({model, el})`.
// The kernel owns the data; this module asks it for the pixel tiles each pane shows, keeps them
// in a bounded LRU cache and draws them with WebGL2 (window/level and colormap in a fragment
// shader) or, where WebGL2 is missing or `force_canvas2d` is set, with Canvas2D (the same maths
// in JS). Every render() is independent: it builds its own DOM, cache and GL contexts, sends
// "ready", and its returned cleanup function stops everything it started.
//
// Mouse, per pane:
//   left click                 move the crosshair to that point (sets the two in-plane axes)
//   left drag                  pan
//   wheel                      zoom about the cursor
//   right drag or Shift+drag   window/level: right = wider window, down = higher level
//   double click               fit the plane in the pane again (camera zoom = null)
//   drag on the histogram      moves the window edge (low or high) nearest the pointer
// Keys on a focused pane: ArrowUp/ArrowRight = next plane, ArrowDown/ArrowLeft = previous,
// PageUp/PageDown = 10 planes. (A double click also clicks twice: the crosshair moves there.)
//
// Tiles: each pane asks for the visible tiles of the level its zoom needs (CONTRACT.md's level
// choice), the coarsest level first when nothing covers the screen yet. At most one new request
// per view per animation frame; requests are pipelined (see "tile requests" below) and the ones
// no longer wanted are cancelled. While idle, the xy view reads its neighbouring planes ahead;
// while z is being stepped, the next planes in the direction of travel.
// Test hooks: data-* attributes on each canvas after every draw, and root.__ctstack.log.

// ---- constants --------------------------------------------------------------------------------

// Indices into [z, y, x]: the axis a view slices, and the axes of its rows (down) and cols (right).
const AXES = {
  xy: { plane: 0, rows: 1, cols: 2 },
  xz: { plane: 1, rows: 0, cols: 2 },
  yz: { plane: 2, rows: 0, cols: 1 },
};
const AXIS_NAMES = ["z", "y", "x"];
// Grid cell of each pane in the ortho layout (col, row); the 4th cell is the free "3d" pane.
const ORTHO_CELLS = { xy: [0, 0], yz: [1, 0], xz: [0, 1] };
const GRID_GAP = 4; // CSS px, matches viewer.css

const LOG_MAX = 2000; // timing-log entries kept
const STATUS_MS = 250; // throttle of the `status` trait
const IDLE_MS = 300; // no input for this long = idle: read ahead neighbouring planes
const REQUEST_TIMEOUT_MS = 8000; // a reply this late is given up (re-requested)
const RETRY_MS = 2000; // after an error reply, wait before asking for those tiles again
const READ_AHEAD = 4; // planes read ahead on each side of the xy plane
const STEP_AHEAD = 2; // while stepping: planes fetched ahead in the direction of travel
const STEP_AHEAD_MS = 1500; // ... for this long after the last z step
const MAX_OUTSTANDING = 3; // unanswered requests per view (the kernel drops superseded ones)
const COARSE_GRACE_MS = 100; // a plane step keeps the sharp image this long before going coarse
const BACKGROUND = [0.07, 0.07, 0.08];
const CROSSHAIR_COLOR = "rgba(255, 200, 40, 0.85)";

// ---- add-ons -----------------------------------------------------------------------------------
// The 3D pane (volume3d.js), the ROI and ruler tools (tools.js) and the export panel (export.js)
// are appended to this module by the kernel (`_widget.py` joins the files) and register a
// factory here at module load: `ADDONS.push((viewer) => new Thing(viewer))`. An add-on's
// hooks are all optional; the viewer calls them as `hook(name, ...args)`:
//   controls()                      -> a DOM node added below the viewer's own controls
//   panesBuilt(freeDiv, size)       after the 2D panes are (re)built; freeDiv is the
//                                   div[data-pane="3d"] (null in the "xy" layout)
//   drawOverlay(pane, ctx, st)      after a 2D pane's crosshair is drawn (CSS px transform set)
//   pointerDown(pane, e, x, y)      true = the add-on takes this drag (it then gets
//   pointerMove(pane, e, x, y)      pointerMove/pointerUp; the pane's capture is already set)
//   pointerUp(pane, e, x, y)
//   onMessage(msg, buffers)         true = handled (custom messages from the kernel)
//   statusParts(parts)              may push extra status-line parts
//   screenshot(msg)                 a Promise<canvas> for a view the 2D panes do not have, or null
//   composeFree(ctx, x, y)          draw the free (3D) cell into a whole-viewer ortho screenshot
//   destroy()
const ADDONS = [];

const DTYPES = { uint8: Uint8Array, uint16: Uint16Array, int16: Int16Array, float32: Float32Array };

// ---- small helpers ----------------------------------------------------------------------------

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const now = () => performance.now();

/** Create an element with attributes (data-*, class, ...) and children. */
function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

/** Notebook 7 matches its command-mode shortcuts against the focused element itself, so every
 * focusable element must carry this attribute (the recipe's pitfall 3). */
function focusable(node) {
  node.setAttribute("data-lm-suppress-shortcuts", "true");
  return node;
}

/** Call fn at most once per `ms`, always with a trailing call (so the last value gets out). */
function throttle(fn, ms) {
  let timer = null;
  let last = -Infinity;
  const run = () => {
    timer = null;
    last = now();
    fn();
  };
  const call = () => {
    if (timer !== null) return;
    timer = setTimeout(run, Math.max(0, last + ms - now()));
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return call;
}

/** A number for people: integers as they are, others with 5 significant digits. */
function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(5)));
}

const tileKey = (gen, view, level, plane, r, c) => `${gen}/${view}/${level}/${plane}/${r}/${c}`;

// ---- colormaps --------------------------------------------------------------------------------

// Matplotlib's maps approximated by 9 evenly spaced control points (linear in between).
const COLORMAP_POINTS = {
  viridis: [[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37]],
  magma: [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
    [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]],
  inferno: [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 142, 9], [248, 201, 50], [252, 255, 164]],
  plasma: [[13, 8, 135], [75, 3, 161], [125, 3, 168], [168, 34, 150], [203, 70, 121],
    [229, 107, 93], [248, 148, 65], [253, 195, 40], [240, 249, 33]],
  gray: [[0, 0, 0], [255, 255, 255]],
  gray_r: [[255, 255, 255], [0, 0, 0]],
};

/** 256 RGBA entries (Uint8Array of 1024) for a colormap name; unknown names fall back to gray. */
function makeLut(name) {
  const pts = COLORMAP_POINTS[name] || COLORMAP_POINTS.gray;
  const lut = new Uint8Array(256 * 4);
  const n = pts.length - 1;
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * n;
    const j = Math.min(n - 1, Math.floor(t));
    const f = t - j;
    for (let ch = 0; ch < 3; ch++) lut[i * 4 + ch] = Math.round(pts[j][ch] * (1 - f) + pts[j + 1][ch] * f);
    lut[i * 4 + 3] = 255;
  }
  return lut;
}

// ---- geometry (CONTRACT.md "Geometry") ----------------------------------------------------------

/** [rows, cols] of a view's plane in a [z, y, x] shape. */
function planeSize(shape, view) {
  const a = AXES[view];
  return [shape[a.rows], shape[a.cols]];
}

/** Physical height / width of one pixel of a view's plane (1 when the voxel size is unknown). */
function aspectOf(voxel, view) {
  if (!Array.isArray(voxel)) return 1;
  const a = AXES[view];
  const r = Number(voxel[a.rows]);
  const c = Number(voxel[a.cols]);
  return r > 0 && c > 0 && Number.isFinite(r / c) ? r / c : 1;
}

/** The contract's level choice: the coarsest level whose pixel spans <= 1 device pixel. */
function chooseLevel(zoom, dpr, nlevels) {
  const k = Math.floor(Math.log2(1 / (zoom * dpr)) + 1e-9);
  return clamp(Number.isFinite(k) ? k : 0, 0, nlevels - 1);
}

/** The effective camera: the model's zoom/center, or "fit" (zoom null) = whole plane, centred.
 * `center` counts in pixel centres (pixel i spans [i - 0.5, i + 0.5)), as the kernel does. */
function resolveCamera(cam, H0, W0, aspect, cssW, cssH) {
  const fit = Math.min(cssW / W0, cssH / (H0 * aspect));
  const centre = [(H0 - 1) / 2, (W0 - 1) / 2];
  if (!cam || !(Number(cam.zoom) > 0)) return { zoom: fit, center: centre, fit, isFit: true };
  const c = Array.isArray(cam.center) && cam.center.length === 2 ? cam.center.map(Number) : centre;
  return { zoom: Number(cam.zoom), center: c, fit, isFit: false };
}

/** Screen mapping of a pane: x = x0 + col * zx, y = y0 + row * zy (CSS px), where (row, col)
 * are level-0 pixel *edges* (pixel i spans [i, i + 1); the camera centre is 0.5 less). */
function makeGeo(cam, aspect, W, H) {
  const zx = cam.zoom;
  const zy = cam.zoom * aspect;
  return { zx, zy, W, H, x0: W / 2 - (cam.center[1] + 0.5) * zx, y0: H / 2 - (cam.center[0] + 0.5) * zy };
}

/** The tiles [r, c] of a level-`lv` plane that intersect the pane, centre ones first. */
function visibleTiles(geo, H0, W0, Hk, Wk, lv, T) {
  const s = 2 ** lv;
  const col0 = Math.max(0, -geo.x0 / geo.zx);
  const col1 = Math.min(W0, (geo.W - geo.x0) / geo.zx);
  const row0 = Math.max(0, -geo.y0 / geo.zy);
  const row1 = Math.min(H0, (geo.H - geo.y0) / geo.zy);
  if (!(col1 > col0 && row1 > row0)) return [];
  const nr = Math.ceil(Hk / T);
  const nc = Math.ceil(Wk / T);
  const r0 = clamp(Math.floor(row0 / s / T), 0, nr - 1);
  const r1 = clamp(Math.ceil(row1 / s / T) - 1, 0, nr - 1);
  const c0 = clamp(Math.floor(col0 / s / T), 0, nc - 1);
  const c1 = clamp(Math.ceil(col1 / s / T) - 1, 0, nc - 1);
  const tiles = [];
  for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) tiles.push([r, c]);
  const mr = (r0 + r1) / 2;
  const mc = (c0 + c1) / 2;
  return tiles.sort((a, b) => Math.hypot(a[0] - mr, a[1] - mc) - Math.hypot(b[0] - mr, b[1] - mc));
}

// ---- tile data --------------------------------------------------------------------------------

/** A typed array of `n` values of `dtype` over a message buffer (DataView or ArrayBuffer).
 * Copies when the offset is misaligned for the type, and zero-pads a short buffer. */
function typedFrom(buf, dtype, n) {
  const Ctor = DTYPES[dtype];
  if (!Ctor) throw new Error(`unsupported dtype ${dtype}`);
  const ab = buf instanceof ArrayBuffer ? buf : buf.buffer;
  const off = buf instanceof ArrayBuffer ? 0 : buf.byteOffset;
  const len = buf.byteLength;
  const size = Ctor.BYTES_PER_ELEMENT;
  if (off % size === 0 && len >= n * size) return new Ctor(ab, off, n);
  const out = new Ctor(n);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(new Uint8Array(ab, off, Math.min(len, n * size)));
  return out;
}

/** Client tile cache: LRU by bytes (Map order = recency). Tiles drawn in the current frame are
 * pinned so that a tiny budget cannot evict what is on screen (it may then run over a little). */
class TileCache {
  constructor(maxBytes, onEvict, isPinned) {
    this.map = new Map();
    this.bytes = 0;
    this.max = maxBytes;
    this.onEvict = onEvict;
    this.isPinned = isPinned;
  }

  get(key) {
    const e = this.map.get(key);
    if (e) {
      this.map.delete(key);
      this.map.set(key, e);
    }
    return e;
  }

  peek(key) {
    return this.map.get(key);
  }

  has(key) {
    return this.map.has(key);
  }

  put(entry) {
    if (this.map.has(entry.key)) this.remove(entry.key);
    this.map.set(entry.key, entry);
    this.bytes += entry.bytes;
    this.evict();
  }

  remove(key) {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.bytes -= e.bytes;
    this.onEvict(e);
  }

  evict() {
    if (this.bytes <= this.max) return;
    for (const key of [...this.map.keys()]) {
      if (this.bytes <= this.max) break;
      if (!this.isPinned(key)) this.remove(key);
    }
  }

  /** Drop every entry for which pred(entry) is true (e.g. an older generation). */
  dropWhere(pred) {
    for (const [key, e] of [...this.map]) if (pred(e)) this.remove(key);
  }
}

// ---- WebGL2 renderer --------------------------------------------------------------------------

const VERTEX_SHADER = `#version 300 es
in vec2 a_pos;
uniform vec4 u_rect; // clip-space x, y of the top-left corner, then width, height (negative)
out vec2 v_uv;
void main() {
  v_uv = a_pos;
  gl_Position = vec4(u_rect.xy + a_pos * u_rect.zw, 0.0, 1.0);
}`;

/** Window/level then the LUT; one program per sampler kind (unsigned, signed, float). */
function fragmentShader(sampler) {
  return `#version 300 es
precision highp float;
precision highp int;
uniform highp ${sampler} u_tex;
uniform sampler2D u_lut;
uniform float u_lo;
uniform float u_hi;
in vec2 v_uv;
out vec4 outColor;
void main() {
  float v = float(texture(u_tex, v_uv).r);
  float t = clamp((v - u_lo) / (u_hi - u_lo), 0.0, 1.0);
  outColor = texture(u_lut, vec2((t * 255.0 + 0.5) / 256.0, 0.5));
}`;
}

// Texture formats per tile dtype: integer textures are read raw (no normalisation), so the
// window applies to the data values themselves, exactly as in the Canvas2D path.
const GL_FORMATS = {
  uint8: { internal: "R8UI", format: "RED_INTEGER", type: "UNSIGNED_BYTE", kind: "u" },
  uint16: { internal: "R16UI", format: "RED_INTEGER", type: "UNSIGNED_SHORT", kind: "u" },
  int16: { internal: "R16I", format: "RED_INTEGER", type: "SHORT", kind: "i" },
  float32: { internal: "R32F", format: "RED", type: "FLOAT", kind: "f" },
};
const SAMPLERS = { u: "usampler2D", i: "isampler2D", f: "sampler2D" };

/** Compile and link a WebGL2 program (attribute 0 is `a_pos`); throws the driver's log. */
function linkProgram(gl, vsSource, fsSource) {
  const compile = (type, src) => {
    const sh = gl.createShader(type);
    gl.shaderSource(sh, src);
    gl.compileShader(sh);
    if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
    return sh;
  };
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl.VERTEX_SHADER, vsSource));
  gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fsSource));
  gl.bindAttribLocation(p, 0, "a_pos");
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  return p;
}

/** A bound vertex array with the unit square as a triangle strip in attribute 0: [vao, buffer]. */
function unitQuad(gl) {
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const quad = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, quad);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([0, 0, 1, 0, 0, 1, 1, 1]), gl.STATIC_DRAW);
  gl.enableVertexAttribArray(0);
  gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
  return [vao, quad];
}

class GLRenderer {
  /** A renderer for `canvas`, or null when WebGL2 is missing or unusable. */
  static create(canvas) {
    let gl = null;
    try {
      gl = canvas.getContext("webgl2", {
        alpha: false, antialias: false, depth: false, stencil: false,
        premultipliedAlpha: false, preserveDrawingBuffer: false,
      });
    } catch (err) {
      gl = null;
    }
    if (!gl) return null;
    try {
      return new GLRenderer(canvas, gl);
    } catch (err) {
      console.warn("ctstack: WebGL2 setup failed, using Canvas2D", err);
      return null;
    }
  }

  constructor(canvas, gl) {
    this.kind = "webgl2";
    this.canvas = canvas;
    this.gl = gl;
    this.lut = makeLut("gray");
    this.lost = false;
    this.onLost = (e) => {
      e.preventDefault(); // allows a restore
      this.lost = true;
    };
    this.onRestored = () => {
      this.lost = false;
      this.init();
      if (this.onRestore) this.onRestore();
    };
    canvas.addEventListener("webglcontextlost", this.onLost);
    canvas.addEventListener("webglcontextrestored", this.onRestored);
    this.init();
  }

  /** (Re)create programs, the quad and the LUT; textures of an older epoch are invalid. */
  init() {
    const gl = this.gl;
    this.epoch = {};
    this.programs = {};
    for (const [kind, sampler] of Object.entries(SAMPLERS)) {
      this.programs[kind] = this.link(VERTEX_SHADER, fragmentShader(sampler));
    }
    [this.vao, this.quad] = unitQuad(gl);
    this.lutTex = gl.createTexture();
    this.setLut(this.lut);
  }

  link(vsSource, fsSource) {
    const gl = this.gl;
    const p = linkProgram(gl, vsSource, fsSource);
    const loc = (n) => gl.getUniformLocation(p, n);
    const prog = { p, rect: loc("u_rect"), lo: loc("u_lo"), hi: loc("u_hi") };
    gl.useProgram(p);
    gl.uniform1i(loc("u_tex"), 0);
    gl.uniform1i(loc("u_lut"), 1);
    return prog;
  }

  /** The colormap as a 256x1 RGBA texture (NEAREST: the same rounding as the Canvas2D path). */
  setLut(lut) {
    this.lut = lut;
    if (this.lost) return;
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.lutTex);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, lut);
    this.nearest(gl.TEXTURE_2D);
  }

  nearest(target) {
    const gl = this.gl;
    gl.texParameteri(target, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(target, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texParameteri(target, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(target, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  }

  /** Upload a tile's values as an integer (or R32F) texture, once per context epoch. */
  upload(entry) {
    if (this.lost || entry.texEpoch === this.epoch) return;
    const gl = this.gl;
    const f = GL_FORMATS[entry.dtype];
    const tex = gl.createTexture();
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, tex);
    this.nearest(gl.TEXTURE_2D);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1); // uint8 rows of odd width
    gl.texImage2D(gl.TEXTURE_2D, 0, gl[f.internal], entry.w, entry.h, 0, gl[f.format], gl[f.type],
      entry.data);
    entry.tex = tex;
    entry.texEpoch = this.epoch;
  }

  release(entry) {
    if (entry.texEpoch === this.epoch && !this.lost) this.gl.deleteTexture(entry.tex);
    entry.tex = null;
    entry.texEpoch = null;
  }

  /** Start a frame: clear, then clip every tile to the plane's image rect (device px). */
  begin(W, H, clip) {
    const gl = this.gl;
    if (this.lost) return;
    gl.viewport(0, 0, W, H);
    gl.disable(gl.SCISSOR_TEST);
    gl.clearColor(BACKGROUND[0], BACKGROUND[1], BACKGROUND[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    const x0 = clamp(Math.floor(clip[0]), 0, W);
    const y0 = clamp(Math.floor(clip[1]), 0, H);
    const x1 = clamp(Math.ceil(clip[0] + clip[2]), 0, W);
    const y1 = clamp(Math.ceil(clip[1] + clip[3]), 0, H);
    gl.enable(gl.SCISSOR_TEST);
    gl.scissor(x0, H - y1, x1 - x0, y1 - y0); // GL's y goes up
    gl.bindVertexArray(this.vao);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.lutTex);
    this.W = W;
    this.H = H;
    this.current = null;
  }

  /** One tile as a quad over `rect` (device px: x, y, w, h) with window [lo, hi]. */
  drawTile(entry, rect, win) {
    if (this.lost) return;
    const gl = this.gl;
    this.upload(entry);
    const prog = this.programs[GL_FORMATS[entry.dtype].kind];
    if (this.current !== prog) {
      gl.useProgram(prog.p);
      this.current = prog;
    }
    const [x, y, w, h] = rect;
    gl.uniform4f(prog.rect, (x / this.W) * 2 - 1, 1 - (y / this.H) * 2, (w / this.W) * 2, -(h / this.H) * 2);
    gl.uniform1f(prog.lo, win[0]);
    gl.uniform1f(prog.hi, win[1]);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, entry.tex);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  }

  /** Block until the GPU is done, so that t_drawn means "pixels are in the buffer". */
  finish() {
    if (!this.lost) this.gl.finish();
  }

  destroy() {
    this.canvas.removeEventListener("webglcontextlost", this.onLost);
    this.canvas.removeEventListener("webglcontextrestored", this.onRestored);
    const ext = this.gl.getExtension("WEBGL_lose_context");
    if (ext) ext.loseContext(); // frees the context now instead of at GC (browsers cap contexts)
  }
}

// ---- Canvas2D renderer (fallback) -------------------------------------------------------------

class Canvas2DRenderer {
  static create(canvas) {
    const ctx = canvas.getContext("2d");
    return ctx ? new Canvas2DRenderer(canvas, ctx) : null;
  }

  constructor(canvas, ctx) {
    this.kind = "canvas2d";
    this.canvas = canvas;
    this.ctx = ctx;
    this.tables = new Map(); // dtype -> {sig, table} value-to-colour tables for integer types
    this.setLut(makeLut("gray"));
  }

  setLut(lut) {
    this.lut32 = new Uint32Array(lut.slice().buffer); // RGBA bytes read as one uint32 per entry
    this.lutId = (this.lutId || 0) + 1;
    this.tables.clear();
  }

  upload() {} // colouring needs the window: done lazily in bitmap()

  release(entry) {
    entry.c2d = null;
    entry.c2dSig = null;
  }

  begin(W, H, clip) {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = `rgb(${BACKGROUND.map((v) => Math.round(v * 255)).join(",")})`;
    ctx.fillRect(0, 0, W, H);
    ctx.save();
    ctx.beginPath();
    ctx.rect(clip[0], clip[1], clip[2], clip[3]);
    ctx.clip();
    ctx.imageSmoothingEnabled = false;
  }

  /** Rounded edges so that neighbouring tiles share exact pixel borders (no seams). */
  drawTile(entry, rect, win) {
    const bmp = this.bitmap(entry, win);
    const x0 = Math.round(rect[0]);
    const y0 = Math.round(rect[1]);
    const x1 = Math.round(rect[0] + rect[2]);
    const y1 = Math.round(rect[1] + rect[3]);
    this.ctx.drawImage(bmp, 0, 0, entry.w, entry.h, x0, y0, x1 - x0, y1 - y0);
  }

  finish() {
    this.ctx.restore();
  }

  /** The tile coloured with this window and LUT, cached on the entry until either changes. */
  bitmap(entry, win) {
    const sig = `${win[0]}/${win[1]}/${this.lutId}`;
    if (entry.c2d && entry.c2dSig === sig) return entry.c2d;
    const cv = entry.c2d || document.createElement("canvas");
    cv.width = entry.w;
    cv.height = entry.h;
    const img = new ImageData(entry.w, entry.h);
    this.colorize(entry, new Uint32Array(img.data.buffer), win);
    cv.getContext("2d").putImageData(img, 0, 0);
    entry.c2d = cv;
    entry.c2dSig = sig;
    return cv;
  }

  colorize(entry, out, win) {
    const data = entry.data;
    const n = entry.w * entry.h;
    if (entry.dtype === "float32") {
      const lut = this.lut32;
      const scale = 255 / (win[1] - win[0]);
      for (let i = 0; i < n; i++) {
        const t = (data[i] - win[0]) * scale;
        out[i] = lut[t > 0 ? (t < 255 ? (t + 0.5) | 0 : 255) : 0];
      }
      return;
    }
    const { table, offset } = this.table(entry.dtype, win);
    for (let i = 0; i < n; i++) out[i] = table[data[i] + offset];
  }

  /** Integer types: one colour per possible value (<= 65536), shared by all tiles. */
  table(dtype, win) {
    const sig = `${win[0]}/${win[1]}`;
    const hit = this.tables.get(dtype);
    if (hit && hit.sig === sig) return hit;
    const [size, offset] = dtype === "uint8" ? [256, 0] : dtype === "int16" ? [65536, 32768] : [65536, 0];
    const table = new Uint32Array(size);
    const scale = 255 / (win[1] - win[0]);
    for (let i = 0; i < size; i++) {
      const t = (i - offset - win[0]) * scale;
      table[i] = this.lut32[t > 0 ? (t < 255 ? (t + 0.5) | 0 : 255) : 0];
    }
    const made = { sig, table, offset };
    this.tables.set(dtype, made);
    return made;
  }

  destroy() {}
}

// ---- a pane: one view's canvas, camera and mouse --------------------------------------------

class Pane {
  constructor(viewer, view, size) {
    this.viewer = viewer;
    this.view = view;
    this.axes = AXES[view];
    this.cssW = size;
    this.cssH = size;
    this.dpr = window.devicePixelRatio || 1;
    this.devW = Math.round(size * this.dpr);
    this.devH = Math.round(size * this.dpr);
    this.frames = 0;
    this.dirty = true;
    this.overlayDirty = true;
    this.causeT = now();
    this.pinned = new Set();
    this.state = null;
    this.hover = null;
    this.drag = null;
    this.drawnLevel = -1;
    this.buildDom();
  }

  buildDom() {
    const v = this.view;
    this.canvas = h("canvas", { "data-view": v, class: "ctstack-canvas", width: this.devW, height: this.devH });
    this.overlay = h("canvas", { class: "ctstack-overlay", width: this.devW, height: this.devH });
    this.label = h("div", { class: "ctstack-pane-label" });
    this.wrap = focusable(h("div", {
      class: "ctstack-pane", "data-pane": v, tabindex: 0, "aria-label": `${v.toUpperCase()} view`,
    }, [this.canvas, this.overlay, this.label]));
    for (const c of [this.wrap, this.canvas, this.overlay]) {
      c.style.width = `${this.cssW}px`;
      c.style.height = `${this.cssH}px`;
    }
  }

  /** Choose WebGL2 unless forced or missing; Canvas2D otherwise. */
  createRenderer(forceCanvas2d) {
    if (this.renderer) this.renderer.destroy();
    this.renderer = forceCanvas2d ? null : GLRenderer.create(this.canvas);
    if (!this.renderer) {
      this.freshCanvas(); // a canvas that handed out a WebGL context cannot give a 2D one
      this.renderer = Canvas2DRenderer.create(this.canvas);
    }
    this.canvas.dataset.renderer = this.renderer.kind;
    this.renderer.onRestore = () => this.viewer.markDirty(this);
    return this.renderer.kind;
  }

  /** Replace the canvas by a new one with the same attributes and size. */
  freshCanvas() {
    const old = this.canvas;
    this.canvas = h("canvas", { "data-view": this.view, class: "ctstack-canvas", width: this.devW, height: this.devH });
    this.canvas.style.cssText = old.style.cssText;
    old.replaceWith(this.canvas);
  }

  /** Everything a draw or a request needs, from the model's current values; `p0Override`
   * (a level-0 plane) gives the state of another plane without making it the pane's. */
  computeState(p0Override = undefined) {
    const v = this.viewer;
    const shapes = v.shapesFor(this.view);
    const T = v.tile;
    const [H0, W0] = planeSize(shapes[0], this.view);
    const aspect = aspectOf(v.voxel, this.view);
    const cam = resolveCamera(v.cameraOf(this.view), H0, W0, aspect, this.cssW, this.cssH);
    const geo = makeGeo(cam, aspect, this.cssW, this.cssH);
    const K = shapes.length - 1;
    const k = chooseLevel(cam.zoom, this.dpr, shapes.length);
    const p0 = p0Override === undefined ? v.crosshair[this.axes.plane] : p0Override;
    const planes = [];
    const tiles = [];
    for (let lv = 0; lv <= K; lv++) {
      const sh = shapes[lv];
      planes[lv] = clamp(Math.floor(p0 / 2 ** lv), 0, sh[this.axes.plane] - 1);
      const [Hk, Wk] = planeSize(sh, this.view);
      tiles[lv] = lv >= k ? visibleTiles(geo, H0, W0, Hk, Wk, lv, T) : [];
    }
    const st = { H0, W0, aspect, cam, geo, k, K, p0, planes, tiles, shapes, T, gen: v.gen };
    if (p0Override === undefined) this.state = st;
    return st;
  }

  key(st, lv, r, c) {
    return tileKey(st.gen, this.view, lv, st.planes[lv], r, c);
  }

  /** The plane's image rect in CSS px (x, y, w, h), as in data-image-rect. */
  imageRect(st) {
    const g = st.geo;
    return [g.x0, g.y0, st.W0 * g.zx, st.H0 * g.zy];
  }

  /** Device-px rect of tile (r, c) of level lv (its real h, w; level-k pixel j = level-0 j*2^k). */
  tileRect(st, lv, r, c, entry) {
    const s = 2 ** lv;
    const g = st.geo;
    const x = (g.x0 + c * st.T * s * g.zx) * this.dpr;
    const y = (g.y0 + r * st.T * s * g.zy) * this.dpr;
    return [x, y, entry.w * s * g.zx * this.dpr, entry.h * s * g.zy * this.dpr];
  }

  /** CSS px in the pane -> level-0 (row, col) as floats. */
  toImage(x, y) {
    const g = (this.state || this.computeState()).geo;
    return [(y - g.y0) / g.zy, (x - g.x0) / g.zx];
  }

  /** Draw the crosshair lines (the two in-plane coordinates) on the overlay canvas. */
  drawOverlay() {
    const st = this.state || this.computeState();
    const ctx = this.overlay.getContext("2d");
    const g = st.geo;
    const ch = this.viewer.crosshair;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.cssW, this.cssH);
    const x = Math.round((g.x0 + (ch[this.axes.cols] + 0.5) * g.zx) * this.dpr) / this.dpr + 0.5 / this.dpr;
    const y = Math.round((g.y0 + (ch[this.axes.rows] + 0.5) * g.zy) * this.dpr) / this.dpr + 0.5 / this.dpr;
    ctx.strokeStyle = CROSSHAIR_COLOR;
    ctx.lineWidth = 1 / this.dpr;
    ctx.beginPath();
    ctx.moveTo(x, Math.max(0, g.y0));
    ctx.lineTo(x, Math.min(this.cssH, g.y0 + st.H0 * g.zy));
    ctx.moveTo(Math.max(0, g.x0), y);
    ctx.lineTo(Math.min(this.cssW, g.x0 + st.W0 * g.zx), y);
    ctx.stroke();
    this.viewer.hook("drawOverlay", this, ctx, st);
    this.label.textContent = `${this.view.toUpperCase()}  ${AXIS_NAMES[this.axes.plane]} ${st.p0}`;
    this.overlayDirty = false;
  }

  destroy() {
    if (this.renderer) this.renderer.destroy();
    this.wrap.remove();
  }
}

// ---- the viewer: model binding, requests, frames ----------------------------------------------

class Viewer {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.client = Math.floor(Math.random() * 2 ** 20); // unique ids across re-displays
    this.seq = 0;
    this.destroyed = false;
    this.panes = [];
    this.requests = new Map(); // id -> request, until answered (or long expired)
    this.failed = new Map(); // tile key -> time when it may be asked again
    this.listeners = [];
    this.domListeners = [];
    this.timers = new Set();
    this.rafId = 0;
    this.frameNo = 0;
    this.lastInput = 0;
    this.stepDir = 1;
    this.lastError = "";
    this.hoverPane = null;
    this.log = [];
    this.stats = { requests: 0, replies: 0, cancels: 0, bytes: 0, tiles: 0, errors: 0 };
    this.lut = makeLut(this.colormapName());
    this.cache = new TileCache(this.cacheLimit(), (e) => this.releaseEntry(e), (key) => this.isPinned(key));
    this.statusSave = throttle(() => this.flushStatus(), STATUS_MS);
    this.prevCrosshair = this.crosshair;
    this.addons = [];
    this.buildRoot();
    this.addons = ADDONS.map((make) => make(this));
    for (const node of this.hookAll("controls")) if (node) this.root.insertBefore(node, this.progress);
    this.buildPanes();
    this.bindModel();
    this.refreshControls();
    this.send({ type: "ready" });
    this.scheduleFrame();
  }

  // -- model values (read fresh each time; Python may change any of them) --

  get gen() {
    return Number(this.model.get("generation")) || 0;
  }

  get tile() {
    return Number(this.model.get("tile")) || 256;
  }

  get voxel() {
    return this.model.get("voxel") || null;
  }

  get shape() {
    const s = this.model.get("shape");
    return Array.isArray(s) && s.length === 3 ? s.map((n) => Math.max(1, Number(n) || 1)) : [1, 1, 1];
  }

  get layout() {
    const l = this.model.get(this.layoutTrait());
    return l === "xy" || l === "3d" ? l : "ortho";
  }

  /** The synced trait holding "xy" | "ortho". The contract names it `layout`, but ipywidgets'
   * DOMWidgetView reads `layout` as its CSS Layout model reference (and fails on a string),
   * so a kernel may sync it as `pane_layout` instead: use that one when it exists. */
  layoutTrait() {
    return typeof this.model.get("pane_layout") === "string" ? "pane_layout" : "layout";
  }

  /** Crosshair as level-0 ints inside the shape (the centre when unset). */
  get crosshair() {
    const s = this.shape;
    const c = this.model.get("crosshair");
    return s.map((n, i) => {
      const v = Array.isArray(c) ? Math.round(Number(c[i])) : NaN;
      return clamp(Number.isFinite(v) ? v : Math.floor(n / 2), 0, n - 1);
    });
  }

  get window() {
    const w = this.model.get("window");
    let lo = Array.isArray(w) ? Number(w[0]) : 0;
    let hi = Array.isArray(w) ? Number(w[1]) : 1;
    if (!Number.isFinite(lo)) lo = 0;
    if (!Number.isFinite(hi) || hi <= lo) hi = lo + 1;
    return [lo, hi];
  }

  colormapName() {
    return this.model.get("colormap") || "gray";
  }

  cacheLimit() {
    const mb = Number(this.model.get("client_cache_mb"));
    return (mb > 0 ? mb : 256) * 1024 * 1024;
  }

  paneSize() {
    const s = Number(this.model.get("size"));
    return s > 0 ? s : this.layout === "xy" ? 640 : 360;
  }

  /** Level shapes usable for a view: level 0, then the cache levels while their plane is non-empty. */
  shapesFor(view) {
    const levels = this.model.get("levels");
    const shapes = [this.shape];
    if (Array.isArray(levels)) {
      for (const lv of levels.slice(1)) {
        const s = lv && Array.isArray(lv.shape) ? lv.shape.map(Number) : null;
        if (!s || s.length !== 3 || s.some((n) => !(n >= 1))) break;
        shapes.push(s);
      }
    }
    return shapes;
  }

  cameraOf(view) {
    const cam = this.model.get("camera");
    return cam && typeof cam === "object" ? cam[view] : null;
  }

  // -- DOM --

  buildRoot() {
    // JupyterLab opens its own context menu unless the target sits inside this attribute:
    // right-drag is window/level here.
    this.root = h("div", { class: "ctstack-viewer", "data-jp-suppress-context-menu": "" });
    this.root.__ctstack = { renderer: "", log: this.log, stats: this.stats };
    // Keys typed in the widget must not reach JupyterLab's shortcuts (pitfall 3).
    this.listen(this.root, "keydown", (e) => e.stopPropagation());
    this.grid = h("div", { class: "ctstack-grid" });
    this.controls = this.buildControls();
    this.progress = this.buildProgress();
    this.statusEl = h("div", { class: "ctstack-status", "data-role": "status", "aria-live": "polite" });
    this.root.append(this.grid, this.controls, this.progress, this.statusEl);
    this.el.append(this.root);
  }

  buildControls() {
    this.sliders = AXIS_NAMES.map((name, axis) => this.buildSlider(name, axis));
    const sliderBox = h("div", { class: "ctstack-sliders" }, this.sliders.map((s) => s.row));
    this.lowField = this.numberField("low");
    this.highField = this.numberField("high");
    this.presetSelect = focusable(h("select", { "data-field": "preset", title: "window preset" }));
    this.colormapSelect = focusable(h("select", { "data-field": "colormap", title: "colormap" }));
    this.layoutSelect = focusable(h("select", { "data-field": "layout", title: "layout" }));
    for (const l of ["ortho", "xy", "3d"]) this.layoutSelect.append(h("option", { value: l, text: l }));
    this.histogram = h("canvas", { class: "ctstack-histogram", "data-role": "histogram", width: 256, height: 56 });
    this.bindHistogram();
    this.listen(this.presetSelect, "change", () => this.onPreset());
    this.listen(this.colormapSelect, "change", () => this.setModel({ colormap: this.colormapSelect.value }));
    this.listen(this.layoutSelect, "change", () => this.setModel({ [this.layoutTrait()]: this.layoutSelect.value }));
    const fields = h("div", { class: "ctstack-window" }, [
      h("label", {}, ["low ", this.lowField]), h("label", {}, ["high ", this.highField]),
      this.presetSelect, this.colormapSelect, this.layoutSelect,
    ]);
    const contrast = h("div", { class: "ctstack-contrast" }, [fields, this.histogram]);
    return h("div", { class: "ctstack-controls" }, [sliderBox, contrast]);
  }

  buildSlider(name, axis) {
    const input = focusable(h("input", { type: "range", "data-axis": name, min: 0, max: 0, step: 1, value: 0 }));
    const info = h("span", { class: "ctstack-axis-info" });
    this.listen(input, "input", () => this.setCrosshairAxis(axis, Number(input.value)));
    const row = h("label", { class: "ctstack-slider" }, [h("span", { class: "ctstack-axis-name", text: name }), input, info]);
    return { input, info, row };
  }

  numberField(field) {
    const input = focusable(h("input", { type: "number", "data-field": field, step: "any", title: `window ${field}` }));
    this.listen(input, "change", () => this.onWindowField());
    return input;
  }

  buildProgress() {
    this.progressBar = h("progress", { max: 1, value: 0 });
    this.progressLabel = h("span", { class: "ctstack-progress-label" });
    const box = h("div", { class: "ctstack-progress", "data-role": "progress" }, [this.progressBar, this.progressLabel]);
    box.hidden = true;
    return box;
  }

  /** (Re)build the panes for the layout, size and renderer in the model. */
  buildPanes() {
    for (const e of this.cache.map.values()) this.forgetGpu(e); // textures belong to the old contexts
    const old = new Set(this.panes.map((p) => p.wrap));
    this.domListeners = this.domListeners.filter(([t, type, fn, opts]) => {
      if (old.has(t)) t.removeEventListener(type, fn, opts);
      return !old.has(t);
    });
    for (const p of this.panes) p.destroy();
    this.cancelAll();
    this.grid.textContent = "";
    const layout = this.layout;
    const size = this.paneSize();
    this.grid.dataset.layout = layout;
    const views = layout === "xy" ? ["xy"] : layout === "3d" ? [] : ["xy", "yz", "xz"];
    const force = !!this.model.get("force_canvas2d");
    this.panes = views.map((v) => new Pane(this, v, size));
    let kind = "";
    for (const p of this.panes) {
      kind = p.createRenderer(force || kind === "canvas2d");
      p.renderer.setLut(this.lut);
      this.bindPane(p);
      this.grid.append(p.wrap);
    }
    if (kind === "canvas2d") {
      // one pane failed WebGL2 after others got it: use Canvas2D everywhere, for consistency
      for (const p of this.panes) {
        if (p.renderer.kind === "canvas2d") continue;
        p.createRenderer(true);
        p.renderer.setLut(this.lut);
      }
    }
    let free = null;
    if (layout !== "xy") {
      free = h("div", { class: "ctstack-pane ctstack-free", "data-pane": "3d" });
      free.style.width = free.style.height = `${size}px`;
      this.grid.append(free);
    }
    this.grid.style.setProperty("--ctstack-pane", `${size}px`);
    this.root.__ctstack.renderer = kind;
    if (this.model.get("renderer") !== kind) this.setModel({ renderer: kind });
    this.layoutSelect.value = layout;
    this.hook("panesBuilt", free, size);
  }

  // -- add-on hooks (see ADDONS) --

  /** Call `name` on every add-on that has it. */
  hook(name, ...args) {
    this.hookAll(name, ...args);
  }

  /** The results of `name` on every add-on that has it (undefined where it threw: one
   * add-on's error is logged and shown in the status line, and never stops the others). */
  hookAll(name, ...args) {
    return this.addons.filter((a) => typeof a[name] === "function").map((a) => this.callHook(a, name, args));
  }

  /** The first add-on whose `name` returns a truthy value (null when none does). */
  hookFirst(name, ...args) {
    for (const a of this.addons) if (typeof a[name] === "function" && this.callHook(a, name, args)) return a;
    return null;
  }

  callHook(addon, name, args) {
    try {
      return addon[name](...args);
    } catch (err) {
      console.error(`ctstack: ${addon.constructor.name}.${name} failed`, err);
      this.lastError = `${name}: ${(err && err.message) || err}`;
      return undefined;
    }
  }

  /** Listen to a model event until the viewer is destroyed (for add-ons). */
  watch(name, fn) {
    this.model.on(name, fn);
    this.listeners.push([name, fn]);
  }

  // -- model binding --

  bindModel() {
    const on = (name, fn) => this.watch(name, fn);
    on("change:crosshair", () => this.onCrosshair());
    on("change:window", () => this.onWindow());
    on("change:window_preset", () => this.refreshWindowControls());
    on("change:colormap", () => this.onColormap());
    const relayout = () => {
      if (this.layout !== this.grid.dataset.layout) this.rebuild();
    };
    on("change:layout", relayout);
    on("change:pane_layout", relayout);
    on("change:size", () => this.rebuild());
    on("change:force_canvas2d", () => this.rebuild());
    on("change:camera", () => this.dirtyAll());
    on("change:generation", () => this.onGeneration());
    on("change:levels", () => this.onGeneration());
    on("change:shape", () => this.onGeneration());
    on("change:tile", () => this.onGeneration());
    on("change:voxel", () => this.dirtyAll());
    on("change:unit", () => this.refreshControls());
    on("change:file_numbers", () => this.refreshSliders());
    on("change:presets", () => this.refreshWindowControls());
    on("change:colormaps", () => this.refreshWindowControls());
    on("change:histogram", () => this.drawHistogram());
    on("change:progress", () => this.refreshProgress());
    on("change:warning", () => this.updateStatus());
    on("change:client_cache_mb", () => {
      this.cache.max = this.cacheLimit();
      this.cache.evict();
    });
    on("msg:custom", (msg, buffers) => this.onMessage(msg, buffers || []));
  }

  /** Set model values from a user action and save at once. Not throttled on purpose: the
   * kernel echoes each update, and ipywidgets drops stale echoes only for values already
   * sent; a value set but not yet saved would be reverted by the echo of an older one (a
   * held key lost steps that way). ipywidgets itself merges saves while one is in flight. */
  setModel(values) {
    for (const [k, v] of Object.entries(values)) this.model.set(k, v);
    if (!this.destroyed) this.model.save_changes();
  }

  send(msg, buffers) {
    if (this.destroyed) return;
    try {
      this.model.send(msg, undefined, buffers);
    } catch (err) {
      console.warn("ctstack: message not sent (widget closed?)", err); // e.g. a closed comm
    }
  }

  rebuild() {
    this.buildPanes();
    this.refreshControls();
    this.dirtyAll();
  }

  refreshControls() {
    this.refreshSliders();
    this.refreshWindowControls();
    this.drawHistogram();
    this.refreshProgress();
    this.updateStatus();
  }

  onCrosshair() {
    const ch = this.crosshair;
    const prev = this.prevCrosshair || ch;
    if (ch[0] !== prev[0]) {
      this.stepDir = Math.sign(ch[0] - prev[0]);
      this.lastStep = now();
    }
    for (const p of this.panes) {
      p.overlayDirty = true;
      if (p.state && ch[p.axes.plane] === p.state.p0) continue; // its plane did not move
      this.markDirty(p);
      p.planeStep = true;
      // Act now rather than at the next animation frame (saves up to a frame per step):
      // draw at once when the new plane is cached, else ask for it.
      const st = p.computeState();
      if (this.complete(p, st, st.k)) this.drawPane(p, null);
      else if (p.sentFrame !== this.frameNo) this.planRequest(p);
    }
    this.prevCrosshair = ch;
    this.noteInput();
    this.refreshSliders();
    this.scheduleFrame();
  }

  onWindow() {
    this.refreshWindowControls();
    this.drawHistogram();
    this.dirtyAll();
  }

  onColormap() {
    this.lut = makeLut(this.colormapName());
    for (const p of this.panes) p.renderer.setLut(this.lut);
    this.refreshWindowControls();
    this.drawHistogram();
    this.dirtyAll();
  }

  /** New pyramid levels (or a new shape): tiles of older generations are dropped. */
  onGeneration() {
    const gen = this.gen;
    this.cache.dropWhere((e) => e.gen !== gen || e.tile !== this.tile);
    this.cancelAll();
    this.failed.clear();
    this.refreshSliders();
    this.dirtyAll();
  }

  // -- controls --

  refreshSliders() {
    const shape = this.shape;
    const ch = this.crosshair;
    this.sliders.forEach((s, axis) => {
      s.input.max = String(shape[axis] - 1);
      if (Number(s.input.value) !== ch[axis]) s.input.value = String(ch[axis]);
      s.info.textContent = this.axisInfo(axis, ch[axis]);
    });
  }

  /** "12/511 · file 13 · 3.4 mm": index, DESIGN file number (slice folders), physical position. */
  axisInfo(axis, index) {
    const parts = [`${index}/${this.shape[axis] - 1}`];
    const files = this.model.get("file_numbers");
    if (axis === 0 && Array.isArray(files) && files[index] !== undefined && files[index] !== null) {
      parts.push(`file ${files[index]}`);
    }
    const pos = this.physical(axis, index);
    if (pos !== null) parts.push(pos);
    return parts.join(" · ");
  }

  physical(axis, index) {
    const vox = this.voxel;
    const unit = this.model.get("unit") || "pixel";
    if (!Array.isArray(vox) || !(Number(vox[axis]) > 0) || unit === "pixel") return null;
    return `${fmt(Number((index * Number(vox[axis])).toFixed(4)))} ${unit}`;
  }

  refreshWindowControls() {
    const [lo, hi] = this.window;
    if (document.activeElement !== this.lowField) this.lowField.value = fmt(lo);
    if (document.activeElement !== this.highField) this.highField.value = fmt(hi);
    const fill = (select, names, current, blank) => {
      const wanted = [...(blank ? [[blank, ""]] : []), ...names.map((n) => [n, n])];
      const have = [...select.options].map((o) => [o.textContent, o.value]);
      if (JSON.stringify(have) !== JSON.stringify(wanted)) {
        select.textContent = "";
        for (const [text, value] of wanted) select.append(h("option", { value, text }));
      }
      select.value = current;
    };
    const presets = this.model.get("presets") || [];
    const preset = this.model.get("window_preset");
    fill(this.presetSelect, presets, preset || "", "custom");
    const cmaps = this.model.get("colormaps") || Object.keys(COLORMAP_POINTS);
    const cmap = this.colormapName();
    fill(this.colormapSelect, cmaps.includes(cmap) ? cmaps : [...cmaps, cmap], cmap, null);
  }

  onPreset() {
    const name = this.presetSelect.value;
    if (name) this.setModel({ window_preset: name }); // the kernel computes the window
  }

  onWindowField() {
    let lo = Number(this.lowField.value);
    let hi = Number(this.highField.value);
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return this.refreshWindowControls();
    if (hi < lo) [lo, hi] = [hi, lo];
    if (hi === lo) hi = lo + 1;
    this.setModel({ window: [lo, hi] });
  }

  /** Bars of the coarsest level's histogram (log counts), the window shaded, the LUT under it. */
  drawHistogram() {
    const cv = this.histogram;
    const ctx = cv.getContext("2d");
    const W = cv.width;
    const H = cv.height;
    ctx.clearRect(0, 0, W, H);
    const hist = this.model.get("histogram") || {};
    const counts = Array.isArray(hist.counts) ? hist.counts : [];
    const a = Number(hist.low);
    const b = Number(hist.high);
    const barH = H - 8;
    if (counts.length && b > a) {
      const top = Math.log1p(Math.max(...counts));
      ctx.fillStyle = "rgba(160, 170, 185, 0.9)";
      counts.forEach((n, i) => {
        const x0 = (i / counts.length) * W;
        const x1 = ((i + 1) / counts.length) * W;
        const bh = top > 0 ? (Math.log1p(n) / top) * barH : 0;
        ctx.fillRect(x0, barH - bh, Math.max(1, x1 - x0), bh);
      });
    }
    const [lo, hi] = this.window;
    const xOf = (v) => (counts.length && b > a ? ((v - a) / (b - a)) * W : v === lo ? 0 : W);
    const xl = xOf(lo);
    const xh = xOf(hi);
    ctx.fillStyle = "rgba(255, 200, 40, 0.18)";
    ctx.fillRect(xl, 0, xh - xl, barH);
    ctx.strokeStyle = CROSSHAIR_COLOR;
    ctx.beginPath();
    ctx.moveTo(Math.round(xl) + 0.5, 0);
    ctx.lineTo(Math.round(xl) + 0.5, barH);
    ctx.moveTo(Math.round(xh) - 0.5, 0);
    ctx.lineTo(Math.round(xh) - 0.5, barH);
    ctx.stroke();
    for (let x = 0; x < W; x++) { // colour bar: what each value maps to under this window
      const t = clamp((x - xl) / Math.max(1e-9, xh - xl), 0, 1);
      const i = Math.round(t * 255) * 4;
      ctx.fillStyle = `rgb(${this.lut[i]},${this.lut[i + 1]},${this.lut[i + 2]})`;
      ctx.fillRect(x, H - 6, 1, 6);
    }
  }

  /** Drag on the histogram: the window edge nearest the pointer follows it. */
  bindHistogram() {
    const cv = this.histogram;
    const valueAt = (e) => {
      const hist = this.model.get("histogram") || {};
      const a = Number(hist.low);
      const b = Number(hist.high);
      if (!(b > a)) return null;
      const r = cv.getBoundingClientRect();
      return a + clamp((e.clientX - r.left) / r.width, 0, 1) * (b - a);
    };
    const move = (e) => {
      const v = valueAt(e);
      if (v === null || !this.histDrag) return;
      const [lo, hi] = this.window;
      const value = this.model.get("dtype") === "float32" ? v : Math.round(v);
      const next = this.histDrag === "low" ? [Math.min(value, hi - 1e-6), hi] : [lo, Math.max(value, lo + 1e-6)];
      this.setModel({ window: next });
    };
    this.listen(cv, "pointerdown", (e) => {
      const v = valueAt(e);
      if (v === null) return;
      const [lo, hi] = this.window;
      this.histDrag = Math.abs(v - lo) <= Math.abs(v - hi) ? "low" : "high";
      cv.setPointerCapture(e.pointerId);
      move(e);
    });
    this.listen(cv, "pointermove", move);
    this.listen(cv, "pointerup", () => { this.histDrag = null; });
    this.listen(cv, "pointercancel", () => { this.histDrag = null; });
  }

  refreshProgress() {
    const p = this.model.get("progress") || {};
    const total = Number(p.total) || 0;
    const active = !!(p.label || total);
    this.progress.hidden = !active;
    if (!active) return;
    this.progressBar.max = Math.max(1, total);
    this.progressBar.value = clamp(Number(p.done) || 0, 0, Math.max(1, total));
    this.progressLabel.textContent = `${p.label || ""}${total ? ` ${p.done || 0}/${total}` : ""}`;
  }

  // -- pane interaction --

  bindPane(pane) {
    const w = pane.wrap;
    this.listen(w, "pointerdown", (e) => this.onPointerDown(pane, e));
    this.listen(w, "pointermove", (e) => this.onPointerMove(pane, e));
    this.listen(w, "pointerup", (e) => this.onPointerUp(pane, e));
    this.listen(w, "pointercancel", () => { pane.drag = null; });
    this.listen(w, "pointerleave", () => {
      pane.hover = null;
      this.updateStatus();
    });
    this.listen(w, "wheel", (e) => this.onWheel(pane, e), { passive: false });
    this.listen(w, "dblclick", (e) => {
      e.preventDefault();
      this.setCamera(pane, null, null);
    });
    this.listen(w, "contextmenu", (e) => e.preventDefault()); // right-drag is window/level
    this.listen(w, "keydown", (e) => this.onPaneKey(pane, e));
  }

  /** Position of a pointer event in the pane's CSS px. */
  local(pane, e) {
    const r = pane.wrap.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  onPointerDown(pane, e) {
    if (e.button !== 0 && e.button !== 2) return;
    e.preventDefault();
    e.stopPropagation();
    pane.wrap.focus({ preventScroll: true });
    pane.wrap.setPointerCapture(e.pointerId);
    const [x, y] = this.local(pane, e);
    const st = pane.computeState();
    const addon = e.button === 0 ? this.hookFirst("pointerDown", pane, e, x, y) : null;
    if (addon) {
      pane.drag = { mode: "addon", addon, x, y, moved: false };
      return this.noteInput();
    }
    const mode = e.button === 2 || e.shiftKey ? "window" : "pan";
    pane.drag = { mode, x, y, moved: false, center: st.cam.center.slice(), zoom: st.cam.zoom, win: this.window };
    return this.noteInput();
  }

  onPointerMove(pane, e) {
    const [x, y] = this.local(pane, e);
    pane.hover = [x, y];
    this.hoverPane = pane;
    const d = pane.drag;
    if (d && d.mode === "addon") {
      d.moved = true;
      this.noteInput();
      if (typeof d.addon.pointerMove === "function") d.addon.pointerMove(pane, e, x, y);
    } else if (d) {
      const dx = x - d.x;
      const dy = y - d.y;
      if (!d.moved && Math.hypot(dx, dy) < 3) return this.updateStatus();
      d.moved = true;
      this.noteInput();
      if (d.mode === "pan") {
        const aspect = pane.state.aspect;
        this.setCamera(pane, d.zoom, [d.center[0] - dy / (d.zoom * aspect), d.center[1] - dx / d.zoom]);
      } else {
        this.dragWindow(d, dx, dy);
      }
    }
    this.updateStatus();
  }

  onPointerUp(pane, e) {
    const d = pane.drag;
    pane.drag = null;
    if (!d) return;
    if (pane.wrap.hasPointerCapture(e.pointerId)) pane.wrap.releasePointerCapture(e.pointerId);
    if (d.mode === "addon") {
      const [x, y] = this.local(pane, e);
      if (typeof d.addon.pointerUp === "function") d.addon.pointerUp(pane, e, x, y);
    } else if (!d.moved && d.mode === "pan") this.clickCrosshair(pane, d.x, d.y);
  }

  /** A click sets the two coordinates shown by this pane (e.g. xz: row = z, col = x). */
  clickCrosshair(pane, x, y) {
    const [row, col] = pane.toImage(x, y);
    const st = pane.state;
    if (row < 0 || col < 0 || row >= st.H0 || col >= st.W0) return;
    const ch = this.crosshair;
    ch[pane.axes.rows] = Math.floor(row);
    ch[pane.axes.cols] = Math.floor(col);
    this.setModel({ crosshair: ch });
  }

  /** Window/level drag: right widens the window, down raises the level (centre). One pane
   * width of motion spans the histogram's value range (or 4 windows when there is none). */
  dragWindow(d, dx, dy) {
    const hist = this.model.get("histogram") || {};
    const [lo0, hi0] = d.win;
    const span = Number(hist.high) - Number(hist.low) > 0 ? Number(hist.high) - Number(hist.low) : 4 * (hi0 - lo0);
    const per = span / (this.panes[0] ? this.panes[0].cssW : 360);
    const width = Math.max(per, hi0 - lo0 + dx * per);
    const centre = (lo0 + hi0) / 2 + dy * per;
    const integer = this.model.get("dtype") !== "float32";
    let lo = centre - width / 2;
    let hi = centre + width / 2;
    if (integer) {
      lo = Math.round(lo);
      hi = Math.max(lo + 1, Math.round(hi));
    }
    this.setModel({ window: [lo, hi] });
  }

  onWheel(pane, e) {
    e.preventDefault();
    e.stopPropagation();
    this.noteInput();
    const [x, y] = this.local(pane, e);
    const st = pane.computeState();
    const lines = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const factor = Math.exp((-e.deltaY * lines) / 500);
    const zoom = clamp(st.cam.zoom * factor, st.cam.fit / 8, Math.max(64, st.cam.fit * 4));
    const [row, col] = pane.toImage(x, y);
    // keep the image point under the cursor where it is (edges -> centre convention: -0.5)
    const centre = [row - 0.5 - (y - pane.cssH / 2) / (zoom * st.aspect), col - 0.5 - (x - pane.cssW / 2) / zoom];
    this.setCamera(pane, zoom, centre);
  }

  onPaneKey(pane, e) {
    const steps = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
    const step = steps[e.key];
    if (!step) return;
    e.preventDefault();
    const ch = this.crosshair;
    ch[pane.axes.plane] = clamp(ch[pane.axes.plane] + step, 0, this.shape[pane.axes.plane] - 1);
    this.setModel({ crosshair: ch });
  }

  setCrosshairAxis(axis, value) {
    const ch = this.crosshair;
    ch[axis] = clamp(Math.round(value), 0, this.shape[axis] - 1);
    this.setModel({ crosshair: ch });
  }

  /** Write one pane's camera (zoom null = fit); a new object, so that Backbone sees a change. */
  setCamera(pane, zoom, center) {
    const cam = { ...(this.model.get("camera") || {}) };
    cam[pane.view] = zoom === null ? { zoom: null, center: null } : {
      zoom: Number(zoom.toPrecision(6)),
      center: center.map((v) => Number(v.toFixed(2))),
    };
    this.setModel({ camera: cam });
  }

  // -- frames --

  noteInput() {
    this.lastInput = now();
    // wake up once the user is idle, for the read-ahead
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.scheduleFrame(), IDLE_MS + 20);
  }

  markDirty(pane) {
    if (!pane.dirty) pane.causeT = now();
    pane.dirty = true;
    pane.canvas.dataset.complete = "0"; // the screen is behind the state until the next draw
    pane.overlayDirty = true;
    this.scheduleFrame();
  }

  dirtyAll() {
    for (const p of this.panes) this.markDirty(p);
    this.updateStatus();
  }

  scheduleFrame() {
    if (this.rafId || this.destroyed) return;
    this.rafId = requestAnimationFrame(() => this.frame());
  }

  /** One animation frame: at most one new request per view (sent first, so that the kernel
   * reads while we draw), then draw what changed, then read ahead if idle. */
  frame() {
    this.rafId = 0;
    if (this.destroyed) return;
    if (this.panes.length && (window.devicePixelRatio || 1) !== this.panes[0].dpr) {
      this.rebuild(); // browser zoom or another screen: canvases need the new device pixels
      return;
    }
    this.frameNo += 1;
    this.expireRequests();
    for (const p of this.panes) this.planRequest(p);
    for (const p of this.panes) if (p.dirty) this.drawPane(p, null);
    if (this.isIdle()) this.planReadAhead();
    else this.planStepAhead();
    for (const p of this.panes) if (p.overlayDirty) p.drawOverlay();
    this.updateStatus();
  }

  /** Draw a pane: per level from the finest fully cached one (coarser ones would be hidden)
   * down to the wanted level, so coarse tiles show until the fine ones arrive. `reply` carries
   * the timing of the reply that caused the draw; `quiet` (screenshots) leaves the data-*
   * attributes and the log alone; `p0` draws another plane than the crosshair's (a plane
   * passed while a key is held). */
  drawPane(pane, reply, quiet = false, p0 = undefined) {
    const st = pane.computeState(p0);
    const found = st.tiles.map((list, lv) => list.map(([row, col]) => this.cache.get(pane.key(st, lv, row, col))));
    if (!quiet && p0 === undefined && this.holdImage(pane, st, found, reply)) return;
    const finest = this.paint(pane, st, found);
    if (quiet) return; // a screenshot: the next real draw still updates attributes and log
    if (p0 === undefined) pane.dirty = false;
    else pane.causeT = now(); // a sharp plane just showed: the coarse grace starts again
    this.publish(pane, st, finest, p0 === undefined && finest === st.k, reply);
  }

  /** Whether to keep the image on screen instead of drawing now: when nothing of this plane
   * is cached at any level (no blank flash), or, for a plane step, while the sharp image of
   * the previous plane is still better than a coarse one (COARSE_GRACE_MS, then coarse). */
  holdImage(pane, st, found, reply) {
    if (pane.frames === 0 || !st.tiles[st.k].length) return false;
    if (!found.some((list) => list.some(Boolean))) return true;
    const wanted = found[st.k].every(Boolean);
    const waited = now() - pane.causeT;
    if (!reply && !wanted && pane.planeStep && pane.sharp && waited < COARSE_GRACE_MS) {
      this.later(() => this.scheduleFrame(), COARSE_GRACE_MS - waited + 1);
      return true;
    }
    return false;
  }

  /** Paint the cached tiles; returns the finest level fully drawn (-1: none). */
  paint(pane, st, found) {
    let base = st.K;
    for (let lv = st.k; lv <= st.K; lv++) {
      if (found[lv].every(Boolean)) {
        base = lv;
        break;
      }
    }
    const r = pane.renderer;
    const win = this.window;
    r.begin(pane.devW, pane.devH, pane.imageRect(st).map((v) => v * pane.dpr));
    pane.pinned.clear();
    let finest = -1;
    for (let lv = base; lv >= st.k; lv--) {
      found[lv].forEach((e, i) => {
        if (!e) return;
        const [row, col] = st.tiles[lv][i];
        r.drawTile(e, pane.tileRect(st, lv, row, col, e), win);
        pane.pinned.add(e.key);
      });
      if (found[lv].every(Boolean)) finest = lv;
    }
    r.finish();
    return finest;
  }

  /** After a draw: the canvas's data-* attributes (CONTRACT.md "DOM") and the timing log. */
  publish(pane, st, finest, complete, reply) {
    const tDrawn = now();
    pane.frames += 1;
    pane.drawnLevel = finest;
    pane.shownP0 = st.p0;
    pane.sharp = finest === st.k;
    if (complete) pane.planeStep = false;
    const ds = pane.canvas.dataset;
    ds.frames = String(pane.frames);
    ds.plane = String(st.p0);
    ds.level = String(finest);
    ds.renderer = pane.renderer.kind;
    ds.complete = complete ? "1" : "0";
    ds.imageRect = pane.imageRect(st).map((v) => Number(v.toFixed(2))).join(",");
    this.logDraw(pane, st, finest, complete, reply, tDrawn);
  }

  /** The benchmark's timing log (CONTRACT.md "DOM"): t_frame = the second animation frame. */
  logDraw(pane, st, level, complete, reply, tDrawn) {
    const entry = {
      view: pane.view, plane: st.p0, level, complete,
      bytes: reply ? reply.bytes : 0,
      t_request: reply ? reply.t_request : pane.causeT,
      t_reply: reply ? reply.t_reply : null,
      t_drawn: tDrawn, t_frame: null,
      t_input: reply ? reply.t_input : pane.causeT,
    };
    this.log.push(entry);
    if (this.log.length > LOG_MAX) this.log.splice(0, this.log.length - LOG_MAX);
    requestAnimationFrame(() => requestAnimationFrame(() => {
      entry.t_frame = now();
    }));
  }

  // -- tile requests --
  //
  // Requests are pipelined: one new request per view per animation frame, several may be out.
  // The kernel reads them in order and answers a queued request that a newer one of the same
  // view superseded with an empty "dropped" reply, so a held key costs one read at a time and
  // the newest plane is always next. The browser cancels what it no longer wants.

  /** Unanswered, uncancelled, unexpired requests of a view. */
  outstanding(view) {
    return [...this.requests.values()].filter((r) => r.view === view && !r.cancelled && !r.expired);
  }

  /** The tiles a pane needs next: the coarsest level first when nothing coarser covers the
   * screen yet, else the missing tiles of the wanted level. Tiles cached, already asked for,
   * or failed a moment ago are not needed. Null when nothing is missing. */
  neededRequest(pane) {
    const st = pane.state;
    const t = now();
    const pending = new Set();
    for (const r of this.outstanding(pane.view)) {
      for (const [row, col] of r.tiles) pending.add(tileKey(r.gen, r.view, r.level, r.plane, row, col));
    }
    const missing = (lv) => st.tiles[lv].filter(([r, c]) => {
      const key = pane.key(st, lv, r, c);
      return !this.cache.has(key) && !pending.has(key) && !((this.failed.get(key) || 0) > t);
    });
    const want = missing(st.k);
    if (!want.length) return null;
    if (st.K > st.k) {
      let covered = false;
      for (let lv = st.k + 1; lv <= st.K && !covered; lv++) covered = this.complete(pane, st, lv);
      const coarse = covered ? [] : missing(st.K);
      if (coarse.length) return { level: st.K, plane: st.planes[st.K], tiles: coarse };
    }
    return { level: st.k, plane: st.planes[st.k], tiles: want };
  }

  /** Whether every visible tile of level lv (current plane) is cached. */
  complete(pane, st, lv) {
    return st.tiles[lv].every(([r, c]) => this.cache.has(pane.key(st, lv, r, c)));
  }

  /** A request still worth its reply: same generation, the wanted (or coarse) level, tiles still
   * on screen, and the current plane or, at the wanted level, a plane on the way to it from
   * the one shown (drawn when it comes, while a key is held). */
  isUseful(req, pane) {
    const st = pane.state;
    if (req.gen !== st.gen || (req.level !== st.k && req.level !== st.K)) return false;
    const visible = new Set(st.tiles[req.level].map(([r, c]) => `${r}/${c}`));
    if (!req.tiles.some(([r, c]) => visible.has(`${r}/${c}`))) return false;
    if (req.plane === st.planes[req.level]) return true;
    return req.level === st.k && between(req.p0, pane.shownP0, st.p0);
  }

  planRequest(pane) {
    pane.computeState();
    if (pane.sentFrame === this.frameNo) return; // one new request per view per frame
    const need = this.neededRequest(pane);
    if (!need) return; // replies to requests no longer useful still fill the cache
    const mine = this.outstanding(pane.view);
    const stale = mine.filter((r) => !this.isUseful(r, pane));
    if (stale.length) this.cancel(stale);
    if (mine.length - stale.length >= MAX_OUTSTANDING) return;
    this.sendRequest(pane.view, need, "view", pane.causeT, pane.state.p0);
    pane.sentFrame = this.frameNo;
  }

  sendRequest(view, need, kind, cause, p0) {
    const id = this.client * 2 ** 21 + (++this.seq % 2 ** 21);
    const req = {
      id, view, kind, level: need.level, plane: need.plane, tiles: need.tiles, gen: this.gen, p0,
      tile: this.tile, t: now(), cause, cancelled: false, expired: false,
    };
    this.requests.set(id, req);
    this.stats.requests += 1;
    this.send({
      type: "tiles", id, view, level: need.level, plane: need.plane, tiles: need.tiles,
      generation: req.gen, client: this.client,
    });
  }

  /** Tell the kernel to drop requests; a reply that comes anyway still fills the cache. */
  cancel(reqs) {
    for (const r of reqs) r.cancelled = true;
    this.stats.cancels += reqs.length;
    this.send({ type: "cancel", ids: reqs.map((r) => r.id) });
  }

  cancelAll() {
    const live = [...this.requests.values()].filter((r) => !r.cancelled && !r.expired);
    if (live.length) this.cancel(live);
  }

  /** Stop waiting for replies that are very late (lost): they must not block a view. */
  expireRequests() {
    const t = now();
    for (const [id, req] of this.requests) {
      const age = t - req.t;
      if (age > REQUEST_TIMEOUT_MS) req.expired = true;
      if (age > 4 * REQUEST_TIMEOUT_MS) this.requests.delete(id);
    }
    for (const [key, until] of this.failed) if (until < t) this.failed.delete(key);
  }

  isIdle() {
    return now() - this.lastInput > IDLE_MS && ![...this.requests.values()].some((r) => !r.cancelled && !r.expired);
  }

  /** While idle, fetch the xy view's neighbouring planes (further out only in the last step
   * direction),
   * as many as a quarter of the cache holds, at the wanted level; the coarsest level too. */
  planReadAhead() {
    const pane = this.panes.find((p) => p.view === "xy");
    if (!pane || !pane.state || pane.dirty) return;
    const st = pane.state;
    if (!st.tiles[st.k].length) return;
    const bpe = DTYPES[this.model.get("dtype")] ? DTYPES[this.model.get("dtype")].BYTES_PER_ELEMENT : 2;
    const planeBytes = st.tiles[st.k].length * st.T * st.T * bpe;
    const n = Math.min(READ_AHEAD, Math.floor(this.cache.max / 4 / (2 * planeBytes)));
    const levels = st.K > st.k ? [st.k, st.K] : [st.k];
    for (let d = 1; d <= n; d++) {
      for (const lv of levels) {
        // Both neighbours first; further out only in the direction of travel once there is
        // one, so a jump with the slider does not fetch 2 * READ_AHEAD full planes.
        const dir = this.stepDir || 1;
        for (const sign of d === 1 || !this.stepDir ? [dir, -dir] : [dir]) {
          const plane = st.planes[lv] + sign * d;
          if (plane < 0 || plane >= st.shapes[lv][0]) continue;
          const tiles = lv === st.k ? st.tiles[lv] : visibleTilesAt(pane, st, lv);
          const missing = tiles.filter(([r, c]) => !this.cache.has(tileKey(st.gen, "xy", lv, plane, r, c)));
          if (!missing.length) continue;
          pane.sentFrame = this.frameNo;
          return this.sendRequest("xy", { level: lv, plane, tiles: missing }, "ahead", now(), plane * 2 ** lv);
        }
      }
    }
    return undefined;
  }

  /** While slices are stepped through (never idle for IDLE_MS), fetch the next planes in the
   * direction of travel as soon as the current one is drawn and no xy request is on the way,
   * so that the next step finds its plane cached. */
  planStepAhead() {
    const pane = this.panes.find((p) => p.view === "xy");
    if (!pane || !pane.state || pane.dirty || !this.stepDir || now() - (this.lastStep || 0) > STEP_AHEAD_MS) return undefined;
    if (this.outstanding("xy").length) return undefined;
    const st = pane.state;
    for (let d = 1; d <= STEP_AHEAD; d++) {
      const plane = st.planes[st.k] + this.stepDir * d;
      if (plane < 0 || plane >= st.shapes[st.k][0]) break;
      const missing = st.tiles[st.k].filter(([r, c]) => !this.cache.has(tileKey(st.gen, "xy", st.k, plane, r, c)));
      if (!missing.length) continue;
      pane.sentFrame = this.frameNo;
      return this.sendRequest("xy", { level: st.k, plane, tiles: missing }, "ahead", now(), plane * 2 ** st.k);
    }
    return undefined;
  }

  // -- messages from the kernel --

  onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (this.hookFirst("onMessage", msg, buffers)) return;
    if (msg.type === "tiles") this.onTiles(msg, buffers);
    else if (msg.type === "error") this.onError(msg);
    else if (msg.type === "screenshot") this.onScreenshot(msg);
  }

  onTiles(msg, buffers) {
    const req = this.requests.get(msg.id);
    if (!req) return; // another display's request, or expired
    const tReply = now();
    this.requests.delete(msg.id);
    this.stats.replies += 1;
    // stale generation, or a request the kernel dropped (superseded): nothing to draw
    if (msg.generation !== this.gen || req.tile !== this.tile || msg.dropped) return this.scheduleFrame();
    const pane = this.panes.find((p) => p.view === msg.view);
    let bytes = 0;
    (msg.tiles || []).forEach((t, i) => {
      const buf = buffers[i];
      if (!buf) return;
      bytes += buf.byteLength;
      this.storeTile(msg, t, buf, pane);
    });
    this.stats.bytes += bytes;
    if (!msg.dropped) this.lastError = "";
    this.root.__ctstack.cache = { bytes: this.cache.bytes, entries: this.cache.map.size, max: this.cache.max };
    const timing = { bytes, t_request: req.t, t_reply: tReply, t_input: req.cause };
    if (pane && this.showsNow(pane, msg.level, msg.plane)) {
      this.drawPane(pane, timing);
    } else if (pane && this.onTheWay(pane, req)) {
      this.drawPane(pane, timing, false, req.p0); // a plane passed while a key is held
    }
    this.scheduleFrame();
    return undefined;
  }

  storeTile(msg, t, buf, pane) {
    const dtype = t.dtype || msg.dtype || this.model.get("dtype") || "uint16";
    const n = t.h * t.w;
    const data = typedFrom(buf, dtype, n);
    const rgba = pane && pane.renderer.kind === "canvas2d" ? 4 * n : 0; // the coloured copy
    const entry = {
      key: tileKey(msg.generation, msg.view, msg.level, msg.plane, t.r, t.c),
      gen: msg.generation, tile: this.tile, view: msg.view, level: msg.level, plane: msg.plane,
      r: t.r, c: t.c, h: t.h, w: t.w, dtype, data, missing: !!t.missing,
      bytes: data.byteLength + rgba, tex: null, texEpoch: null, c2d: null, c2dSig: null,
    };
    this.cache.put(entry);
    this.stats.tiles += 1;
    // upload now: for read-ahead tiles this happens while the user is idle
    if (pane && this.cache.has(entry.key)) pane.renderer.upload(entry);
  }

  /** A reply for a plane between the one on screen and the current one, at the wanted level,
   * while the current one is not drawn yet: showing it keeps a held key moving. */
  onTheWay(pane, req) {
    const st = pane.computeState();
    return pane.dirty && !req.cancelled && req.kind === "view" && req.level === st.k
      && req.p0 !== pane.shownP0 && between(req.p0, pane.shownP0, st.p0);
  }

  /** Whether a level/plane is part of what the pane draws right now. */
  showsNow(pane, level, plane) {
    const st = pane.computeState();
    return level >= st.k && level <= st.K && st.planes[level] === plane;
  }

  onError(msg) {
    const req = this.requests.get(msg.id);
    if (!req) return;
    this.requests.delete(msg.id);
    this.stats.errors += 1;
    this.lastError = String(msg.message || "tile request failed");
    const until = now() + RETRY_MS;
    for (const [r, c] of req.tiles) this.failed.set(tileKey(req.gen, req.view, req.level, req.plane, r, c), until);
    this.later(() => this.scheduleFrame(), RETRY_MS + 10);
    this.updateStatus();
  }

  // -- screenshots --

  /** Reply with a PNG of one pane, or of all panes laid out as on screen. The canvases are
   * redrawn and copied in the same task (WebGL keeps no drawing buffer between tasks). */
  async onScreenshot(msg) {
    try {
      const own = await Promise.all(this.hookAll("screenshot", msg));
      const made = own.find((c) => c);
      if (made) {
        const b = await new Promise((resolve) => made.toBlob(resolve, "image/png"));
        if (!b) throw new Error("the browser could not encode the PNG");
        this.send({ type: "screenshot", id: msg.id }, [await b.arrayBuffer()]);
        return;
      }
      const panes = msg.view ? this.panes.filter((p) => p.view === msg.view) : this.panes;
      if (!panes.length) throw new Error(`no ${msg.view} pane in the ${this.layout} layout`);
      const canvas = this.compose(panes, !msg.view);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      if (!blob) throw new Error("the browser could not encode the PNG");
      this.send({ type: "screenshot", id: msg.id }, [await blob.arrayBuffer()]);
    } catch (err) {
      this.send({ type: "screenshot", id: msg.id, error: String((err && err.message) || err) });
    }
  }

  compose(panes, grid) {
    const p0 = panes[0];
    const dpr = p0.dpr;
    const cell = (p) => (grid && this.layout === "ortho" ? ORTHO_CELLS[p.view] : [0, 0]);
    const cols = grid && this.layout === "ortho" ? 2 : 1;
    const step = p0.devW + Math.round(GRID_GAP * dpr);
    const out = document.createElement("canvas");
    out.width = cols * step - (cols > 1 ? Math.round(GRID_GAP * dpr) : 0);
    out.height = cols * step - (cols > 1 ? Math.round(GRID_GAP * dpr) : 0);
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    for (const p of panes) {
      this.drawPane(p, null, true);
      p.drawOverlay();
      const [cx, cy] = cell(p);
      ctx.drawImage(p.canvas, cx * step, cy * step);
      ctx.drawImage(p.overlay, cx * step, cy * step);
    }
    if (grid && this.layout === "ortho") this.hook("composeFree", ctx, step, step); // the 3D cell
    return out;
  }

  // -- status line --

  /** "XY · level 1 (1/2 resolution) · z 12 y 340 x 200 · value 1234 · (24, 340, 200) mm · warning". */
  statusText() {
    const pane = (this.hoverPane && this.hoverPane.hover && this.panes.includes(this.hoverPane) && this.hoverPane)
      || this.panes[0];
    const parts = [];
    let point = this.crosshair;
    let value = null;
    if (pane && pane.state) {
      const st = pane.state;
      const lv = pane.drawnLevel >= 0 ? pane.drawnLevel : st.k;
      parts.push(`${pane.view.toUpperCase()} · level ${lv} (${lv ? `1/${2 ** lv}` : "full"} resolution)`);
      if (pane.hover) {
        const [row, col] = pane.toImage(pane.hover[0], pane.hover[1]);
        if (row >= 0 && col >= 0 && row < st.H0 && col < st.W0) {
          point = this.crosshair;
          point[pane.axes.rows] = Math.floor(row);
          point[pane.axes.cols] = Math.floor(col);
          value = this.valueAt(pane, st, Math.floor(row), Math.floor(col));
        }
      }
    }
    parts.push(`z ${point[0]} y ${point[1]} x ${point[2]}`);
    if (value) parts.push(`value ${value.level ? "≈" : ""}${fmt(value.v)}${value.level ? ` (level ${value.level})` : ""}`);
    const vox = this.voxel;
    const unit = this.model.get("unit") || "pixel";
    if (Array.isArray(vox) && unit !== "pixel") {
      parts.push(`(${point.map((i, a) => fmt(Number((i * Number(vox[a])).toFixed(4)))).join(", ")}) ${unit}`);
    }
    this.hook("statusParts", parts);
    const warning = this.model.get("warning");
    if (warning) parts.push(`⚠ ${warning}`);
    if (this.lastError) parts.push(`error: ${this.lastError}`);
    return parts.join(" · ");
  }

  /** The voxel value at level-0 (row, col) of the pane's plane, from the finest cached tile. */
  valueAt(pane, st, row, col) {
    for (let lv = 0; lv <= st.K; lv++) {
      const s = 2 ** lv;
      const rk = Math.floor(row / s);
      const ck = Math.floor(col / s);
      const r = Math.floor(rk / st.T);
      const c = Math.floor(ck / st.T);
      const e = this.cache.peek(pane.key(st, lv, r, c));
      if (!e) continue;
      const i = (rk - r * st.T) * e.w + (ck - c * st.T);
      if (i >= 0 && i < e.data.length) return { v: e.data[i], level: lv };
    }
    return null;
  }

  updateStatus() {
    const text = this.statusText();
    if (text === this.statusEl.textContent) return;
    this.statusEl.textContent = text;
    this.statusSave();
  }

  flushStatus() {
    if (this.destroyed) return;
    this.model.set("status", this.statusEl.textContent);
    this.model.save_changes();
  }

  // -- resources --

  releaseEntry(e) {
    this.forgetGpu(e);
  }

  /** Free an entry's texture / coloured copy in the pane that made it (if it still exists). */
  forgetGpu(e) {
    const pane = this.panes.find((p) => p.view === e.view);
    if (pane) pane.renderer.release(e);
    e.tex = null;
    e.texEpoch = null;
    e.c2d = null;
  }

  isPinned(key) {
    return this.panes.some((p) => p.pinned.has(key));
  }

  listen(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.domListeners.push([target, type, fn, opts]);
  }

  later(fn, ms) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      if (!this.destroyed) fn();
    }, ms);
    this.timers.add(id);
  }

  destroy() {
    this.hook("destroy");
    this.cancelAll();
    this.destroyed = true;
    cancelAnimationFrame(this.rafId);
    clearTimeout(this.idleTimer);
    for (const id of this.timers) clearTimeout(id);
    this.statusSave.cancel();
    for (const [name, fn] of this.listeners) this.model.off(name, fn);
    for (const [t, type, fn, opts] of this.domListeners) t.removeEventListener(type, fn, opts);
    for (const e of this.cache.map.values()) this.forgetGpu(e);
    for (const p of this.panes) p.destroy();
    this.panes = [];
    this.cache.map.clear();
    this.root.remove();
  }
}

/** Whether p lies between a (excluded unless equal to b) and b, inclusive of b. */
function between(p, a, b) {
  if (a === undefined || a === null) return false;
  return (p - a) * (p - b) <= 0;
}

/** Visible tiles of level lv for a pane state (levels finer than the wanted one have none). */
function visibleTilesAt(pane, st, lv) {
  const [Hk, Wk] = planeSize(st.shapes[lv], pane.view);
  return visibleTiles(st.geo, st.H0, st.W0, Hk, Wk, lv, st.T);
}

function render({ model, el }) {
  const viewer = new Viewer(model, el);
  return () => viewer.destroy();
}

export default { render };
