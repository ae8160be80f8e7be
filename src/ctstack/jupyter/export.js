// ---- export panel (issue 16): format, level, region, output path; size first, then progress --
//
// Collapsed behind an "Export…" button. Every choice asks the kernel for the plan
// ({"type": "export_plan"}: shape, dtype, files, bytes, or the plan's error in red; no pixel is
// read); "Export" sends {"type": "export"} and the job's progress, result or error arrive in the
// synced `export_state` dict; "Cancel" sends {"type": "export_cancel"}. The output path is on
// the kernel's machine, relative to its working folder; until the user types one, the field
// follows the kernel's default name for the choices. Test hooks: data-field / data-role on the
// elements, and data-state (the export_state's "state") on the panel.

const EXPORT_PLAN_MS = 150; // choices settle this long before the plan is asked for
const EXPORT_BUSY = new Set(["planning", "running", "cancelling"]);

class ExportPanel {
  constructor(viewer) {
    this.viewer = viewer;
    this.client = Math.floor(Math.random() * 2 ** 20);
    this.seq = 0;
    this.asked = null; // id of the plan request whose answer counts
    this.timer = null;
    this.planOk = false;
    this.outEdited = false;
    this.levelKey = "";
    this.formatsKey = "";
  }

  get model() {
    return this.viewer.model;
  }

  controls() {
    const v = this.viewer;
    const field = (tag, attrs) => focusable(h(tag, attrs));
    this.toggle = field("button", { type: "button", "data-role": "export-toggle", text: "Export…", title: "export a region" });
    this.format = field("select", { "data-field": "export-format", title: "output format" });
    this.level = field("select", { "data-field": "export-level", title: "pyramid level (its shape)" });
    this.region = field("select", { "data-field": "export-region", title: "what to export" });
    this.region.append(h("option", { value: "roi", text: "ROI" }), h("option", { value: "full", text: "full volume" }));
    this.out = field("input", { type: "text", "data-field": "export-out", size: 36, spellcheck: "false",
      title: "output path on the kernel's machine (relative to its working folder)" });
    this.overwrite = field("input", { type: "checkbox", "data-field": "export-overwrite" });
    this.window = field("input", { type: "checkbox", "data-field": "export-window" });
    this.windowLabel = h("label", { title: "write 8-bit, scaled from the viewer's window" }, [this.window, " apply window (8-bit)"]);
    this.summary = h("div", { class: "ctstack-export-summary", "data-role": "export-summary" });
    this.start = field("button", { type: "button", "data-role": "export-start", text: "Export" });
    this.cancel = field("button", { type: "button", "data-role": "export-cancel", text: "Cancel" });
    this.bar = h("progress", { "data-role": "export-progress", max: 1, value: 0 });
    this.barLabel = h("span", { class: "ctstack-export-count", "data-role": "export-progress-label" });
    this.progressRow = h("div", { class: "ctstack-export-progress" }, [this.bar, this.barLabel, this.cancel]);
    this.result = h("div", { class: "ctstack-export-result", "data-role": "export-result", "aria-live": "polite" });
    const row = (...kids) => h("div", { class: "ctstack-export-row" }, kids);
    this.body = h("div", { class: "ctstack-export-body" }, [
      row(h("label", {}, ["format ", this.format]), h("label", {}, ["level ", this.level]),
        h("label", {}, ["region ", this.region])),
      row(h("label", { class: "ctstack-export-path" }, ["to ", this.out]),
        h("label", {}, [this.overwrite, " overwrite"]), this.windowLabel),
      row(this.summary, this.start),
      this.progressRow,
      this.result,
    ]);
    this.body.hidden = true;
    this.root = h("div", { class: "ctstack-export", "data-role": "export" }, [this.toggle, this.body]);
    v.listen(this.toggle, "click", () => this.setOpen(this.body.hidden));
    for (const el of [this.format, this.level, this.region, this.overwrite, this.window]) {
      v.listen(el, "change", () => this.choicesChanged());
    }
    v.listen(this.out, "input", () => {
      this.outEdited = this.out.value.trim() !== "";
      this.schedulePlan();
    });
    v.listen(this.start, "click", () => this.startExport());
    v.listen(this.cancel, "click", () => this.cancelExport());
    // what changes a plan: the ROI, the levels (a build finished), the window, the threshold
    for (const name of ["roi", "levels", "window", "threshold"]) v.watch(`change:${name}`, () => this.schedulePlan());
    v.watch("change:export_state", () => this.showState());
    this.showState();
    return this.root;
  }

  setOpen(open) {
    this.body.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    if (open) this.askPlan();
  }

  choicesChanged() {
    this.windowLabel.hidden = ["stl", "ply", "obj"].includes(this.format.value);
    this.schedulePlan();
  }

  /** The panel's choices, as the kernel's export_plan / export messages take them. */
  choices() {
    return {
      format: this.format.value || "tiff",
      level: Number(this.level.value) || 0,
      region: this.region.value || "roi",
      out: this.outEdited ? this.out.value.trim() : "",
      overwrite: this.overwrite.checked,
      window: this.window.checked && !this.windowLabel.hidden,
    };
  }

  schedulePlan() {
    if (this.body.hidden) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.askPlan(), EXPORT_PLAN_MS);
  }

  askPlan() {
    clearTimeout(this.timer);
    this.asked = `${this.client}-${++this.seq}`;
    this.planOk = false;
    this.summary.dataset.pending = "1";
    this.updateButtons();
    this.viewer.send({ type: "export_plan", id: this.asked, ...this.choices() });
  }

  onMessage(msg) {
    if (msg.type !== "export_plan") return false;
    if (msg.id !== this.asked) return true; // another display's, or superseded
    this.fillChoices(msg);
    delete this.summary.dataset.pending;
    if (msg.error) {
      this.planOk = false;
      this.summary.textContent = msg.error;
      this.summary.dataset.error = "1";
    } else {
      const p = msg.plan || {};
      this.planOk = true;
      this.summary.textContent = `${p.summary || ""} → ${p.out || ""}`;
      delete this.summary.dataset.error;
      this.summary.dataset.shape = (p.shape || []).join(",");
      this.summary.dataset.bytes = p.bytes === null || p.bytes === undefined ? "" : String(p.bytes);
      this.summary.dataset.files = String(p.files ?? "");
      this.summary.dataset.out = p.out || "";
    }
    this.updateButtons();
    return true;
  }

  /** Formats and level shapes from the kernel (kept when unchanged; the choice is kept). */
  fillChoices(msg) {
    const formats = Array.isArray(msg.formats) ? msg.formats : [];
    if (formats.join() !== this.formatsKey && formats.length) {
      const keep = this.format.value || "tiff";
      this.format.textContent = "";
      for (const f of formats) this.format.append(h("option", { value: f, text: f }));
      this.format.value = formats.includes(keep) ? keep : formats[0];
      this.formatsKey = formats.join();
    }
    const levels = Array.isArray(msg.levels) ? msg.levels : [];
    const key = JSON.stringify(levels);
    if (key !== this.levelKey && levels.length) {
      const keep = this.level.value || "0";
      this.level.textContent = "";
      levels.forEach((s, i) => this.level.append(h("option", { value: i, text: `${i}: ${s.join(" × ")}` })));
      this.level.value = Number(keep) < levels.length ? keep : "0";
      this.levelKey = key;
    }
    if (!this.outEdited && typeof msg.default_out === "string") this.out.value = msg.default_out;
    this.out.title = `output path on the kernel's machine (relative to ${msg.cwd || "its working folder"})`;
    this.windowLabel.hidden = ["stl", "ply", "obj"].includes(this.format.value);
  }

  startExport() {
    if (!this.planOk || this.busy) return;
    this.result.textContent = "";
    delete this.result.dataset.error;
    this.viewer.send({ type: "export", ...this.choices() });
  }

  cancelExport() {
    this.viewer.send({ type: "export_cancel" });
  }

  get state() {
    const s = this.model.get("export_state");
    return s && typeof s === "object" ? s : { state: "idle" };
  }

  get busy() {
    return EXPORT_BUSY.has(this.state.state);
  }

  updateButtons() {
    const busy = this.busy;
    this.start.disabled = busy || !this.planOk;
    this.cancel.disabled = !busy || this.state.state === "cancelling";
  }

  /** Progress, result or error from `export_state`. */
  showState() {
    const s = this.state;
    const kind = s.state || "idle";
    this.root.dataset.state = kind;
    const busy = EXPORT_BUSY.has(kind);
    this.progressRow.hidden = !busy && kind !== "cancelled" && kind !== "done";
    const total = Number(s.total) || 0;
    const done = Number(s.done) || 0;
    this.bar.max = Math.max(1, total);
    this.bar.value = kind === "done" ? this.bar.max : Math.min(done, this.bar.max);
    this.barLabel.textContent = total ? `${done} / ${total} planes` : s.message || "";
    if (busy) {
      this.result.textContent = kind === "running" ? `exporting to ${s.out || ""}` : s.message || "";
      delete this.result.dataset.error;
    } else if (kind === "done") {
      const r = s.result || {};
      const files = `${r.files} file${r.files === 1 ? "" : "s"}`;
      this.result.textContent = `done: ${files}, ${r.human || `${r.bytes} B`} in ${fmt(r.seconds)} s → ${r.path || s.out}`;
      delete this.result.dataset.error;
    } else if (kind === "failed" || kind === "cancelled") {
      this.result.textContent = kind === "cancelled" ? `cancelled: ${s.message || ""}` : `export failed: ${s.message || ""}`;
      if (kind === "failed") this.result.dataset.error = "1";
      else delete this.result.dataset.error;
    }
    this.updateButtons();
    if (!busy && kind !== "idle") this.schedulePlan(); // e.g. the output exists now
  }

  destroy() {
    clearTimeout(this.timer);
  }
}

ADDONS.push((viewer) => new ExportPanel(viewer));
