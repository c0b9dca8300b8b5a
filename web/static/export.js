/** Bulk results as CSV and JSON files, made in the browser from the job the page already holds. */

import { errorText } from "./api.js";

export const CSV_COLUMNS = [
  "index",
  "source",
  "status",
  "digits",
  "formatted",
  "e164",
  "valid",
  "confidence",
  "needs_review",
  "digit_confidences",
  "error",
  "model_digits",
];

/** Free text that came from the user (file names, messages) must not run as a spreadsheet formula. */
const FREE_TEXT = new Set(["source", "error"]);

function row(item) {
  const details = (item.digits_detail ?? []).filter((d) => !d.empty && d.digit != null);
  return {
    index: item.index,
    source: item.source,
    status: item.status,
    digits: item.digits,
    formatted: item.formatted,
    e164: item.e164,
    valid: item.valid,
    confidence: item.confidence == null ? "" : item.confidence.toFixed(4),
    needs_review: item.needs_review,
    digit_confidences: details.map((d) => d.confidence.toFixed(3)).join(" "),
    error: errorText(item.error),
    model_digits: item.user_corrected?.length ? item.model_digits : "",
  };
}

function cell(value, column) {
  let text = value == null ? "" : String(value);
  if (FREE_TEXT.has(column) && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  // Quote every cell, so commas, quotes and line breaks in file names cannot shift the columns.
  return `"${text.replace(/"/g, '""')}"`;
}

export function toCsv(job) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const item of job.items ?? []) {
    const r = row(item);
    lines.push(CSV_COLUMNS.map((c) => cell(r[c], c)).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function toJson(job) {
  return JSON.stringify(job, null, 2);
}

/** Save text as a file through a temporary object URL (no server round trip). */
export function download(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}
