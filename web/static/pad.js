/**
 * One drawable canvas.
 *
 * Pointer Events give mouse, touch and pen one code path (the tutorial listened to mouse events only, so
 * touch screens did nothing). Strokes are quadratic curves through the midpoints of successive samples,
 * with round caps and joins, so fast writing gives smooth lines instead of scattered dots. The backing
 * store is devicePixelRatio times the CSS size, so strokes stay sharp on high-DPI screens.
 */

const INK = "#000";
const MIN_STEP_PX = 0.75; // samples closer than this add nothing but jitter

export class DrawingPad extends EventTarget {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{brushWidth: (cssWidth: number, cssHeight: number) => number}} options
   *        brush width in CSS px for the canvas's current size, so the ink keeps its proportion to the
   *        box when the layout shrinks on a phone
   */
  constructor(canvas, { brushWidth }) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.brushWidth = brushWidth;
    this.tool = "brush";
    this.hasInk = false;
    this.stroke = null; // {pointerId, erase, width, points, rect}
    this.cssSize = { width: 0, height: 0 };

    canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    canvas.addEventListener("pointermove", (e) => this.onMove(e));
    canvas.addEventListener("pointerup", (e) => this.onUp(e));
    canvas.addEventListener("pointercancel", (e) => this.onUp(e));
    canvas.addEventListener("lostpointercapture", (e) => this.onUp(e));
    canvas.addEventListener("contextmenu", (e) => e.preventDefault()); // long-press on touch
    // Chromium's touch adjustment hands a fingertip to the nearest element that takes taps, such as a
    // box's clear button, unless the canvas takes taps too: then the canvas under the finger wins.
    canvas.addEventListener("click", () => {});
    new ResizeObserver(() => this.fit()).observe(canvas);
    this.fit();
  }

  /** Match the backing store to CSS size x devicePixelRatio, keeping what is drawn (scaled). */
  fit() {
    const rect = this.canvas.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) return; // hidden panel: fit again when it shows
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(rect.width * dpr);
    const height = Math.round(rect.height * dpr);
    this.cssSize = { width: rect.width, height: rect.height };
    if (this.canvas.width === width && this.canvas.height === height) return;

    let old = null;
    if (this.hasInk) {
      old = document.createElement("canvas");
      old.width = this.canvas.width;
      old.height = this.canvas.height;
      old.getContext("2d").drawImage(this.canvas, 0, 0);
    }
    this.canvas.width = width; // resets the context, transform included
    this.canvas.height = height;
    if (old) this.ctx.drawImage(old, 0, 0, width, height);
  }

  setTool(tool) {
    this.tool = tool;
  }

  clear() {
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.setInk(false);
  }

  /** The drawing as a PNG of black ink on white, at the canvas's device resolution. */
  toBlob() {
    const out = document.createElement("canvas");
    out.width = this.canvas.width;
    out.height = this.canvas.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(this.canvas, 0, 0);
    return new Promise((resolve, reject) =>
      out.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("canvas export failed"))), "image/png"),
    );
  }

  // ----- pointer handling -------------------------------------------------------------------------

  onDown(e) {
    if (this.stroke) return; // one stroke per pad at a time: a resting palm must not draw a second line
    const penEraser = e.pointerType === "pen" && e.button === 5;
    if (e.button !== 0 && !penEraser) return; // right/middle mouse buttons do not draw
    e.preventDefault();
    try {
      this.canvas.setPointerCapture(e.pointerId); // keep the stroke when the finger leaves the box
    } catch {
      /* synthetic events have no active pointer to capture */
    }
    this.fit();
    const rect = this.canvas.getBoundingClientRect();
    const dpr = this.canvas.width / rect.width;
    this.stroke = {
      pointerId: e.pointerId,
      erase: this.tool === "eraser" || penEraser,
      width: this.brushWidth(rect.width, rect.height) * (this.tool === "eraser" || penEraser ? 2.5 : 1),
      points: [],
      rect,
      dpr,
    };
    this.canvas.dataset.lastPointerType = e.pointerType || "mouse";
    this.addPoint(this.pointOf(e));
  }

  onMove(e) {
    if (!this.stroke || e.pointerId !== this.stroke.pointerId) return;
    e.preventDefault();
    // Coalesced events are the samples the browser merged into this one frame: using them keeps fast
    // curves round. Synthetic events have none, hence the fallback.
    const samples = e.getCoalescedEvents?.() ?? [];
    for (const sample of samples.length ? samples : [e]) this.addPoint(this.pointOf(sample));
  }

  onUp(e) {
    if (!this.stroke || e.pointerId !== this.stroke.pointerId) return;
    const { points, erase } = this.stroke;
    if (points.length >= 2) {
      const [prev, last] = points.slice(-2);
      this.segment([midpoint(prev, last)], last);
    }
    this.stroke = null;
    this.setInk(erase ? this.scanForInk() : true);
  }

  pointOf(e) {
    const { rect } = this.stroke;
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }

  addPoint(p) {
    const { points } = this.stroke;
    const last = points[points.length - 1];
    if (last && Math.hypot(p.x - last.x, p.y - last.y) < MIN_STEP_PX) return;
    points.push(p);
    const n = points.length;
    if (n === 1) {
      this.dot(p); // a tap is a dot, as with a pen
    } else if (n === 2) {
      this.segment([points[0]], midpoint(points[0], points[1]));
    } else {
      // Curve from the previous midpoint to the new one, bending through the previous sample.
      const [a, b, c] = points.slice(-3);
      this.segment([midpoint(a, b), b], midpoint(b, c));
    }
  }

  /** Stroke from `from[0]` to `to`, through a quadratic control point when `from` has two points. */
  segment(from, to) {
    const ctx = this.begin();
    ctx.beginPath();
    ctx.moveTo(from[0].x, from[0].y);
    if (from.length === 2) ctx.quadraticCurveTo(from[1].x, from[1].y, to.x, to.y);
    else ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  dot(p) {
    const ctx = this.begin();
    ctx.beginPath();
    ctx.arc(p.x, p.y, this.stroke.width / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  /** Set up the context for the current stroke; drawing coordinates are CSS px. */
  begin() {
    const { ctx } = this;
    const { dpr, width, erase } = this.stroke;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    return ctx;
  }

  /** After erasing, only the pixels can say whether any ink is left. */
  scanForInk() {
    const { data } = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] > 24) return true;
    return false;
  }

  setInk(hasInk) {
    this.hasInk = hasInk;
    this.dispatchEvent(new Event("change"));
  }
}

function midpoint(a, b) {
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}
