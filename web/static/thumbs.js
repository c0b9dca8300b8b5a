/**
 * Thumbnails for the bulk results table, made in the browser from the files the user uploaded: the server
 * sends no images back, only each item's `source` and its digits' boxes. A thumbnail is the part of the
 * source image that holds the item's digits, so a form with several fields shows each field separately.
 * Pages of TIFF and PDF files cannot be decoded here (browsers do not render them into a canvas), so those
 * items get a placeholder with their source name instead.
 */

import { listZip, readZipEntry } from "./zip.js";

const DECODABLE = /\.(png|jpe?g|gif|webp|bmp|avif)$/i;
export const THUMB = { width: 160, height: 48 };
const PARALLEL_DECODES = 2; // a thousand rows must not decode a thousand images at once

/** Separators a server might put between an archive's name and the entry's name in `source`. */
const ARCHIVE_SEPARATORS = ["/", ":", "!", "::", "|"];

export class Thumbnails {
  /** @param {File[]} files the files exactly as uploaded */
  constructor(files) {
    this.images = new Map();
    this.zips = [];
    for (const file of files) {
      if (/\.zip$/i.test(file.name)) this.zips.push({ file, entries: listZip(file).catch(() => new Map()) });
      else if (DECODABLE.test(file.name)) this.images.set(file.name, file);
    }
    this.running = 0;
    this.waiting = [];
  }

  /**
   * A canvas showing the item's digits, or null when this item's image is not available here.
   * Never throws: a thumbnail is decoration, its failure must not disturb the table.
   */
  async render(item) {
    await this.slot();
    try {
      const blob = await this.blobFor(item.source);
      if (!blob) return null;
      const bitmap = await createImageBitmap(blob);
      try {
        return drawCrop(bitmap, cropBox(item.digits_detail, bitmap.width, bitmap.height));
      } finally {
        bitmap.close();
      }
    } catch {
      return null;
    } finally {
      this.release();
    }
  }

  async blobFor(source) {
    if (!source) return null;
    if (this.images.has(source)) return this.images.get(source);
    // "scan.pdf#3" is a page; "form.png#2" could be a field of a plain image, which we can still show.
    const base = source.replace(/#[^#/]*$/, "");
    if (!DECODABLE.test(base)) return null;
    if (this.images.has(base)) return this.images.get(base);
    for (const zip of this.zips) {
      const entries = await zip.entries;
      const name = matchEntry(base, zip.file.name, entries);
      if (name != null) return readZipEntry(zip.file, entries.get(name));
    }
    return null;
  }

  slot() {
    if (this.running < PARALLEL_DECODES) {
      this.running += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.running -= 1;
  }
}

function matchEntry(source, zipName, entries) {
  for (const sep of ARCHIVE_SEPARATORS) {
    const prefix = zipName + sep;
    if (source.startsWith(prefix) && entries.has(source.slice(prefix.length))) return source.slice(prefix.length);
  }
  return entries.has(source) ? source : null;
}

/** The union of the digit boxes with a margin, clamped to the image; the whole image when there are none. */
export function cropBox(details, width, height) {
  const boxes = (details ?? []).map((d) => d.box).filter((b) => Array.isArray(b) && b.length === 4);
  if (boxes.length === 0) return [0, 0, width, height];
  let [x0, y0, x1, y1] = boxes[0];
  for (const [a, b, c, d] of boxes) {
    x0 = Math.min(x0, a);
    y0 = Math.min(y0, b);
    x1 = Math.max(x1, c);
    y1 = Math.max(y1, d);
  }
  const pad = Math.max(4, 0.15 * (y1 - y0));
  x0 = Math.max(0, x0 - pad);
  y0 = Math.max(0, y0 - pad);
  x1 = Math.min(width, x1 + pad);
  y1 = Math.min(height, y1 + pad);
  return x1 > x0 && y1 > y0 ? [x0, y0, x1, y1] : [0, 0, width, height];
}

function drawCrop(bitmap, [x0, y0, x1, y1]) {
  const dpr = window.devicePixelRatio || 1;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(THUMB.width * dpr);
  canvas.height = Math.round(THUMB.height * dpr);
  canvas.className = "thumb";
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / (x1 - x0), canvas.height / (y1 - y0));
  const w = (x1 - x0) * scale;
  const h = (y1 - y0) * scale;
  ctx.drawImage(bitmap, x0, y0, x1 - x0, y1 - y0, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  return canvas;
}
