/**
 * The canvas page: draw a number in 11 boxes (or freely on one wide canvas), recognise it, correct it.
 *
 * Only boxes with ink are sent, in box order, as one `boxes` job: the client knows exactly which boxes the
 * user drew in, so the server never has to guess "empty" from a stray speck, the upload is smaller, and a
 * number shorter than 11 digits can be written in any boxes. `boxOf` maps each sent file back to its box,
 * so every result digit can be pointed at its box.
 */

import { ApiError, errorText, pollJob, postCorrection, submitJob } from "./api.js";
import { DrawingPad } from "./pad.js";
import { isLow, ResultView } from "./reading.js";
import { fillRegions } from "./regions.js";

/** `+ [1] ([2][3][4]) [5][6][7]-[8][9][10][11]`: separators and box counts, one chunk per wrap unit. */
const LAYOUT = [["+", 1], ["(", 3, ")"], [3, "-"], [4]];

/*
 * MNIST digits are ~2.5 px strokes in a 20 px glyph inside a 28 px frame. A digit drawn in a box fills
 * roughly 80 % of it, so a brush of ~10 % of the box keeps that proportion (8 px on an 80 px box) on
 * any screen size. The server normalises stroke width anyway; this just keeps the input close to it.
 */
const boxBrush = (w, h) => Math.max(4, Math.min(w, h) * 0.1);
/** A whole number on a narrow phone canvas is written small, so the width limits the brush there. */
const lineBrush = (w, h) => Math.max(4, Math.min(h * 0.06, w * 0.022));

const params = new URLSearchParams(location.search);
/** How long a person should wait for one number; `?timeout=` overrides it for slow deployments. */
const POLL_TIMEOUT_S = Number(params.get("timeout")) > 0 ? Number(params.get("timeout")) : 30;

const $ = (selector) => document.querySelector(selector);

const els = {
  boxes: $("#boxes"),
  boxesPanel: $("#boxes-panel"),
  linePanel: $("#line-panel"),
  lineCanvas: $("#line-canvas"),
  recognise: $("#recognise"),
  clearAll: $("#clear-all"),
  region: $("#region"),
  status: $("#status"),
};

const boxPads = buildBoxes(els.boxes);
const linePad = new DrawingPad(els.lineCanvas, { brushWidth: lineBrush });
let lastJob = null; // {id, mode, boxOf}: what the result on screen came from

const view = new ResultView(
  { output: $("#result"), validity: $("#validity"), list: $("#digit-list"), detail: $("#result-detail") },
  { onCorrect: sendCorrection, onHighlight: highlightBoxes },
);

function buildBoxes(container) {
  const pads = [];
  for (const chunk of LAYOUT) {
    const chunkEl = document.createElement("div");
    chunkEl.className = "group";
    for (const token of chunk) {
      if (typeof token === "string") {
        const sep = document.createElement("span");
        sep.className = "sep";
        sep.setAttribute("aria-hidden", "true");
        sep.textContent = token;
        chunkEl.append(sep);
        continue;
      }
      for (let i = 0; i < token; i++) chunkEl.append(buildBox(pads));
    }
    container.append(chunkEl);
  }
  return pads;
}

function buildBox(pads) {
  const n = pads.length + 1;
  const box = document.createElement("div");
  box.className = "box";
  const canvas = document.createElement("canvas");
  canvas.className = "pad";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Digit box ${n} of 11: draw one digit`);
  canvas.dataset.box = String(n - 1);
  const clear = document.createElement("button");
  clear.type = "button";
  clear.className = "box-clear";
  clear.textContent = "×";
  clear.setAttribute("aria-label", `Clear box ${n}`);
  box.append(canvas, clear);

  const pad = new DrawingPad(canvas, { brushWidth: boxBrush });
  pad.addEventListener("change", () => {
    box.toggleAttribute("data-ink", pad.hasInk);
    delete box.dataset.state; // the box changed since it was read
  });
  clear.addEventListener("click", () => pad.clear());
  pads.push(pad);
  return box;
}

// ----- modes and tools ---------------------------------------------------------------------------

const mode = () => document.querySelector('input[name="mode"]:checked').value;

function showMode() {
  const free = mode() === "line";
  els.boxesPanel.hidden = free;
  els.linePanel.hidden = !free;
  if (free) linePad.fit();
}

function setTool(tool) {
  document.body.dataset.tool = tool;
  for (const pad of [...boxPads, linePad]) pad.setTool(tool);
}

for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", showMode);
for (const radio of document.querySelectorAll('input[name="tool"]')) {
  radio.addEventListener("change", () => setTool(radio.value));
}

function clearAll() {
  if (mode() === "line") linePad.clear();
  else boxPads.forEach((pad) => pad.clear());
  view.clear();
  setStatus("");
}

// ----- recognise ---------------------------------------------------------------------------------

function setStatus(message, { tone, busy = false } = {}) {
  els.status.textContent = message;
  if (tone) els.status.dataset.tone = tone;
  else delete els.status.dataset.tone;
  els.status.toggleAttribute("data-busy", busy);
}

const pngFile = async (pad, name) => new File([await pad.toBlob()], name, { type: "image/png" });

/** What to send for the current mode, or null with a reason when there is nothing drawn. */
async function collectFiles() {
  if (mode() === "line") {
    if (!linePad.hasInk) return null;
    return { kind: "line", files: [await pngFile(linePad, "line.png")], boxOf: null };
  }
  const drawn = boxPads.flatMap((pad, i) => (pad.hasInk ? [i] : []));
  if (drawn.length === 0) return null;
  const files = await Promise.all(
    drawn.map((i) => pngFile(boxPads[i], `box-${String(i + 1).padStart(2, "0")}.png`)),
  );
  return { kind: "boxes", files, boxOf: drawn };
}

async function recognise() {
  els.recognise.disabled = true; // the rest of the page stays usable while we wait
  try {
    const request = await collectFiles();
    if (!request) {
      const what = mode() === "line" ? "Write the number on the canvas first." : "Draw at least one digit first.";
      setStatus(what, { tone: "warn" });
      return;
    }
    setStatus("Sending…", { busy: true });
    const accepted = await submitJob(request.files, { kind: request.kind, region: els.region.value });
    setStatus("Recognising…", { busy: true });
    const job = await pollJob(accepted.status_url, {
      timeoutS: POLL_TIMEOUT_S,
      onUpdate: (j) => setStatus(j.status === "queued" ? "Waiting in the queue…" : "Recognising…", { busy: true }),
    });
    showJob(job, request);
  } catch (error) {
    const message = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
    setStatus(message, { tone: "error" });
  } finally {
    els.recognise.disabled = false;
  }
}

function showJob(job, request) {
  const item = job.items?.[0];
  if (!item || item.status === "failed" || job.status === "failed") {
    view.clear();
    setStatus(`Could not read the number: ${errorText(item?.error) || "the server gave no reason."}`, {
      tone: "error",
    });
    return;
  }
  lastJob = { id: job.id, index: item.index ?? 0, mode: request.kind, boxOf: request.boxOf };
  view.show(item);
  if (!item.digits) {
    setStatus("No digits found. Try writing larger, with one digit per box.", { tone: "warn" });
  } else if (view.entries.some(isLow)) {
    setStatus("Please check the marked digits: click a digit to correct it.", { tone: "warn" });
  } else if (item.needs_review) {
    setStatus("Each digit looks likely, but the whole number is less sure: please check it, and click a digit to correct it.", {
      tone: "warn",
    });
  } else if (item.valid === false) {
    const region = item.region || els.region.value;
    setStatus(`That is not a valid ${region} phone number: check the digits, or click one to correct it.`, {
      tone: "warn",
    });
  } else {
    setStatus("Done. Click a digit to correct it.", { tone: "ok" });
  }
}

/** Colour each box by its digit's confidence, so the user sees where to look. */
function highlightBoxes(entries) {
  for (const pad of boxPads) delete pad.canvas.parentElement.dataset.state;
  if (!lastJob?.boxOf) return;
  for (const entry of entries) {
    const boxIndex = lastJob.boxOf[entry.detailIndex];
    if (boxIndex == null) continue;
    boxPads[boxIndex].canvas.parentElement.dataset.state = isLow(entry) && !entry.edited ? "low" : "ok";
  }
}

// ----- corrections -------------------------------------------------------------------------------

async function sendCorrection({ position, from, to, digits }) {
  if (!lastJob) return;
  const body = { position, from, to, digits };
  setStatus("Saving your correction…", { busy: true });
  try {
    const result = await postCorrection(lastJob.id, lastJob.index, body);
    if (result.saved) {
      if (result.item) view.show(result.item, { keepEdits: true });
      setStatus("Correction saved. Thank you: it helps the model learn your handwriting.", { tone: "ok" });
    } else if (result.reason === "expired") {
      setStatus("Your correction is shown here, but the job has expired on the server, so it was not saved.", {
        tone: "warn",
      });
    } else {
      setStatus("Your correction is shown here. Saving corrections is not available on this server yet.", {
        tone: "warn",
      });
    }
  } catch (error) {
    setStatus(`Your correction is shown here but could not be saved: ${error.message}`, { tone: "warn" });
  }
}

// ----- wiring ------------------------------------------------------------------------------------

fillRegions(els.region);
els.recognise.addEventListener("click", recognise);
els.clearAll.addEventListener("click", clearAll);
setTool(document.querySelector('input[name="tool"]:checked').value);
showMode();
document.body.dataset.ready = "true"; // lets tests (and people with slow phones) know the page is live
