/**
 * The bulk page: choose or drop many files, upload them as one job, follow its progress, and fill a table
 * row by row as items finish. The table is updated in place (one row per item, touched only when the
 * item changes), so a job of thousands of pages does not rebuild the page on every poll.
 */

import { ApiError, cancelJob, errorText, isFinished, pollJob, postCorrection, submitJob } from "./api.js";
import { download, toCsv, toJson } from "./export.js";
import { percent } from "./reading.js";
import { fillRegions } from "./regions.js";
import { THUMB, Thumbnails } from "./thumbs.js";

/** A bulk job may rightly run for an hour; it should not sit this long without one item finishing. */
const STALL_TIMEOUT_S = 180;

const $ = (selector) => document.querySelector(selector);
const els = {
  form: $("#upload-form"),
  dropzone: $("#dropzone"),
  input: $("#file-input"),
  fileList: $("#file-list"),
  kind: $("#kind"),
  region: $("#region"),
  start: $("#start"),
  clearFiles: $("#clear-files"),
  progress: $("#progress"),
  progressText: $("#progress-text"),
  cancel: $("#cancel"),
  status: $("#status"),
  table: $("#results"),
  tbody: $("#results tbody"),
  csv: $("#download-csv"),
  json: $("#download-json"),
  onlyReview: $("#only-review"),
};

const state = {
  files: [],
  job: null,
  rows: new Map(), // item index -> {tr, key}
  thumbs: null,
  abort: null,
};

// ----- choosing files ----------------------------------------------------------------------------

function addFiles(fileList) {
  const known = new Set(state.files.map(fileKey));
  for (const file of fileList) {
    if (!known.has(fileKey(file))) state.files.push(file);
  }
  renderFiles();
}

const fileKey = (f) => `${f.name}\u0000${f.size}\u0000${f.lastModified}`;

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

function renderFiles() {
  els.fileList.replaceChildren(
    ...state.files.map((file) => {
      const li = document.createElement("li");
      li.textContent = `${file.name} `;
      const size = document.createElement("small");
      size.textContent = formatBytes(file.size);
      li.append(size);
      return li;
    }),
  );
  const busy = state.abort != null;
  els.start.disabled = busy || state.files.length === 0;
  els.clearFiles.disabled = busy || state.files.length === 0;
}

els.input.addEventListener("change", () => {
  addFiles(els.input.files);
  els.input.value = ""; // choosing the same file again should add it again after "Remove files"
});
els.clearFiles.addEventListener("click", () => {
  state.files = [];
  renderFiles();
});

// Dropping anywhere on the page adds files; without this, a near miss would open the file in the tab.
let dragDepth = 0;
window.addEventListener("dragenter", (e) => {
  if (!e.dataTransfer?.types.includes("Files")) return;
  dragDepth += 1;
  els.dropzone.dataset.over = "";
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) delete els.dropzone.dataset.over;
});
window.addEventListener("dragover", (e) => {
  if (e.dataTransfer?.types.includes("Files")) e.preventDefault();
});
window.addEventListener("drop", (e) => {
  if (!e.dataTransfer?.files.length) return;
  e.preventDefault();
  dragDepth = 0;
  delete els.dropzone.dataset.over;
  addFiles(e.dataTransfer.files);
});

// ----- running a job -----------------------------------------------------------------------------

function setStatus(message, { tone, busy = false } = {}) {
  els.status.textContent = message;
  if (tone) els.status.dataset.tone = tone;
  else delete els.status.dataset.tone;
  els.status.toggleAttribute("data-busy", busy);
}

function setProgress(done, total, label) {
  els.progress.max = Math.max(1, total);
  els.progress.value = Math.min(done, total);
  const pct = total ? Math.floor((100 * done) / total) : 0;
  els.progressText.textContent = label ?? `${done} / ${total} items (${pct}%)`;
  els.progress.setAttribute("aria-valuetext", els.progressText.textContent);
}

async function start(event) {
  event.preventDefault();
  if (state.files.length === 0) return;
  resetResults();
  const files = [...state.files];
  state.thumbs = new Thumbnails(files);
  state.abort = new AbortController();
  renderFiles();
  setStatus("Uploading…", { busy: true });
  setProgress(0, 1, "Uploading 0%");
  try {
    const accepted = await submitJob(files, {
      kind: els.kind.value,
      region: els.region.value,
      onUploadProgress: (f) => setProgress(0, 1, `Uploading ${Math.floor(f * 100)}%`),
    });
    state.job = { id: accepted.id, status: accepted.status, items: [] };
    els.cancel.hidden = false;
    setProgress(0, accepted.items_total ?? 0);
    setStatus(`Job ${accepted.id} accepted: ${accepted.items_total ?? "?"} items queued.`, { busy: true });
    const job = await pollJob(accepted.status_url, {
      stallS: STALL_TIMEOUT_S,
      signal: state.abort.signal,
      onUpdate: showJob,
    });
    showJob(job);
    setStatus(summary(job), { tone: job.status === "succeeded" ? "ok" : "warn" });
  } catch (error) {
    if (!state.job) setProgress(0, 1, "Not started"); // refused at upload: no "Uploading 100%" left behind
    if (state.abort?.signal.aborted) {
      setStatus("Job cancelled.", { tone: "warn" });
    } else {
      const message = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
      setStatus(message, { tone: "error" });
    }
  } finally {
    state.abort = null;
    els.cancel.hidden = true;
    renderFiles();
  }
}

function summary(job) {
  const items = job.items ?? [];
  const failed = items.filter((i) => i.status === "failed").length;
  const review = items.filter((i) => i.status !== "failed" && i.needs_review).length;
  const parts = [`Finished: ${items.length - failed} of ${items.length} items read`];
  if (failed) parts.push(`${failed} failed`);
  if (review) parts.push(`${review} need review`);
  return `${parts.join(", ")}.`;
}

async function cancel() {
  const { job, abort } = state;
  if (!job || !abort) return;
  els.cancel.disabled = true;
  abort.abort();
  try {
    await cancelJob(job.id);
  } catch (error) {
    setStatus(`Stopped following the job, but the server could not cancel it: ${error.message}`, { tone: "warn" });
  } finally {
    els.cancel.disabled = false;
  }
}

// ----- the results table -------------------------------------------------------------------------

function resetResults() {
  state.job = null;
  state.rows.clear();
  els.tbody.replaceChildren();
  els.csv.disabled = true;
  els.json.disabled = true;
}

function showJob(job) {
  state.job = job;
  const total = job.progress?.total ?? job.items?.length ?? 0;
  setProgress(job.progress?.done ?? 0, total);
  if (!isFinished(job.status)) {
    setStatus(job.status === "queued" ? "Waiting in the queue…" : "Reading…", { busy: true });
  }
  for (const item of job.items ?? []) updateRow(item);
  const anyDone = (job.items ?? []).some((i) => isFinished(i.status));
  els.csv.disabled = !anyDone;
  els.json.disabled = !anyDone;
}

const CELLS = ["#", "Image", "Source", "Digits", "Formatted", "Valid", "Confidence", "Review", "Error"];

function updateRow(item) {
  const key = JSON.stringify([item.status, item.digits, item.formatted, item.error, item.needs_review,
    item.user_corrected]);
  let row = state.rows.get(item.index);
  if (row?.key === key) return;
  if (!row) {
    const tr = document.createElement("tr");
    for (const label of CELLS) {
      const td = document.createElement("td");
      td.dataset.label = label;
      tr.append(td);
    }
    tr.cells[1].className = "thumb-cell";
    row = { tr, key: null, thumbFor: null };
    state.rows.set(item.index, row);
    insertRow(item.index, tr);
  }
  row.key = key;
  fillRow(row, item);
}

/** Keep rows in item order even if items arrive out of order. */
function insertRow(index, tr) {
  tr.dataset.index = String(index);
  const after = [...els.tbody.rows].find((r) => Number(r.dataset.index) > index);
  els.tbody.insertBefore(tr, after ?? null);
}

function fillRow(row, item) {
  const { tr } = row;
  const [num, image, source, digits, formatted, valid, confidence, review, error] = tr.cells;
  const finished = isFinished(item.status);
  tr.dataset.status = item.status;
  tr.toggleAttribute("data-review", finished && needsLook(item));

  num.textContent = String(item.index + 1);
  source.className = "source";
  source.replaceChildren(...breakable(item.source ?? ""));
  if (finished) digitsCell(digits, item);
  else {
    digits.className = "num";
    digits.textContent = item.status === "running" ? "reading…" : "queued";
  }
  formatted.className = "num";
  formatted.textContent = item.formatted ?? "";
  valid.className = "num";
  valid.textContent = item.valid === true ? "✓ yes" : item.valid === false ? "✗ no" : "";
  confidence.textContent = item.confidence == null ? "" : percent(item.confidence);
  review.replaceChildren(reviewBadge(item, finished));
  error.className = "error";
  error.textContent = errorText(item.error);
  if (finished && row.thumbFor !== item.status) {
    row.thumbFor = item.status;
    showThumb(image, item);
  } else if (!finished && !image.firstChild) {
    image.append(placeholder("…"));
  }
}

// ----- corrections --------------------------------------------------------------------------------

/** The digits of a read item are a button: press it to type the true digits, Enter saves them. */
function digitsCell(cell, item) {
  cell.className = "num";
  if (item.status !== "succeeded" || !item.digits) {
    cell.textContent = item.digits ?? "";
    return;
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "digits-button";
  button.textContent = item.digits;
  button.title = "Click to correct the digits";
  const fixed = item.user_corrected?.length ?? 0;
  button.setAttribute("aria-label", `Digits of item ${item.index + 1}: ${item.digits}` +
    (fixed ? `, corrected by a person (read as ${item.model_digits})` : "") + ". Press to correct.");
  button.addEventListener("click", () => editDigits(cell, item));
  cell.replaceChildren(button);
  if (fixed) {
    const mark = document.createElement("span");
    mark.className = "corrected-mark";
    mark.textContent = "corrected";
    mark.title = `The service read ${item.model_digits}`;
    cell.append(mark);
  }
}

function editDigits(cell, item) {
  const n = item.digits.length;
  const input = document.createElement("input");
  input.type = "text";
  input.className = "digits-edit";
  input.inputMode = "numeric";
  input.autocomplete = "off";
  input.maxLength = n;
  input.size = n + 1;
  input.value = item.digits;
  input.setAttribute("aria-label", `Correct the ${n} digits of item ${item.index + 1}`);
  let done = false;
  const finish = async (commit) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    if (!commit || value === item.digits) return digitsCell(cell, item);
    if (!new RegExp(`^[0-9]{${n}}$`).test(value)) {
      setStatus(`Item ${item.index + 1}: type exactly ${n} digits (0-9), one for each digit that was read.`, {
        tone: "warn",
      });
      return digitsCell(cell, item);
    }
    input.disabled = true;
    await saveCorrection(cell, item, value);
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") {
      e.preventDefault();
      finish(e.key === "Enter");
    }
  });
  input.addEventListener("blur", () => finish(true));
  cell.replaceChildren(input);
  input.focus();
  input.select();
}

async function saveCorrection(cell, item, digits) {
  const job = state.job;
  try {
    const result = await postCorrection(job.id, item.index, { digits });
    if (result.saved && result.item) {
      job.items[item.index] = result.item; // downloads carry the correction too
      updateRow(result.item);
      setStatus(`Item ${item.index + 1} corrected to ${digits} and saved. Thank you: it helps the model learn.`, {
        tone: "ok",
      });
      return;
    }
    setStatus(result.reason === "expired" ? "The job has expired on the server, so the correction was not saved."
      : "Saving corrections is not available on this server.", { tone: "warn" });
  } catch (error) {
    setStatus(`Item ${item.index + 1}: the correction was not saved: ${error.message}`, { tone: "error" });
  }
  digitsCell(cell, item);
}

/** A person should look at an item that failed, that the server flags, or that is no valid number. */
const needsLook = (item) => item.status === "failed" || item.needs_review || item.valid === false;

function reviewBadge(item, finished) {
  const badge = document.createElement("span");
  badge.className = "badge";
  if (!finished) return badge;
  if (item.status === "failed") {
    badge.classList.add("bad");
    badge.textContent = "failed";
  } else if (item.needs_review) {
    badge.classList.add("warn");
    badge.textContent = "⚠ review";
  } else if (item.valid === false) {
    badge.classList.add("warn");
    badge.textContent = "⚠ invalid";
  } else {
    badge.classList.add("ok");
    badge.textContent = "✓ ok";
  }
  return badge;
}

/** A path as text with line-break opportunities after each "/", so long zip paths wrap at folders. */
function breakable(path) {
  return path.split(/(?<=\/)/).flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

function placeholder(text) {
  const span = document.createElement("span");
  span.className = "thumb-placeholder";
  span.textContent = text;
  return span;
}

/** Thumbnails are made only when their row scrolls into view: most rows of a big job are never seen. */
const thumbObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    thumbObserver.unobserve(entry.target);
    entry.target.dispatchEvent(new Event("thumb:visible"));
  }
}, { rootMargin: "200px" });

function showThumb(cell, item) {
  const thumbs = state.thumbs;
  const label = (item.source ?? "").split("/").pop() || "no preview";
  cell.replaceChildren(placeholder(label));
  cell.addEventListener("thumb:visible", async () => {
    const canvas = await thumbs.render(item);
    if (!canvas || thumbs !== state.thumbs) return;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `Image of item ${item.index + 1}: ${item.source}`);
    canvas.style.width = `${THUMB.width}px`;
    canvas.style.height = `${THUMB.height}px`;
    cell.replaceChildren(canvas);
  }, { once: true });
  thumbObserver.observe(cell);
}

// ----- downloads and filters ---------------------------------------------------------------------

const baseName = () => `phonereader-${state.job?.id ?? "results"}`;
els.csv.addEventListener("click", () => download(toCsv(state.job), `${baseName()}.csv`, "text/csv"));
els.json.addEventListener("click", () => download(toJson(state.job), `${baseName()}.json`, "application/json"));
els.onlyReview.addEventListener("change", () => els.table.classList.toggle("only-review", els.onlyReview.checked));

fillRegions(els.region);
els.form.addEventListener("submit", start);
els.cancel.addEventListener("click", cancel);
renderFiles();
document.body.dataset.ready = "true";
