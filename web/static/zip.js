/**
 * Just enough of a zip reader to show thumbnails of the images inside an uploaded zip: it lists entries
 * from the central directory and inflates one entry on demand with the browser's DecompressionStream.
 * Nothing here is trusted for recognition (the server re-reads the zip with its own limits); anything
 * unusual (zip64, encryption, odd methods) just means "no thumbnail".
 */

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const MAX_COMMENT = 0xffff;
const MAX_ENTRY_BYTES = 16 * 2 ** 20; // bigger images are not worth inflating for a 160 px thumbnail

/** @returns {Promise<Map<string, {method: number, compressedSize: number, size: number, offset: number}>>} */
export async function listZip(file) {
  const tailStart = Math.max(0, file.size - (22 + MAX_COMMENT));
  const tail = new DataView(await file.slice(tailStart).arrayBuffer());
  let eocd = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === EOCD_SIGNATURE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return new Map();
  const count = tail.getUint16(eocd + 10, true);
  const dirSize = tail.getUint32(eocd + 12, true);
  const dirOffset = tail.getUint32(eocd + 16, true);
  if (dirOffset === 0xffffffff || dirOffset + dirSize > file.size) return new Map(); // zip64 or damaged

  const dir = new DataView(await file.slice(dirOffset, dirOffset + dirSize).arrayBuffer());
  const decoder = new TextDecoder();
  const entries = new Map();
  let p = 0;
  for (let n = 0; n < count && p + 46 <= dir.byteLength; n++) {
    if (dir.getUint32(p, true) !== CENTRAL_SIGNATURE) break;
    const flags = dir.getUint16(p + 8, true);
    const method = dir.getUint16(p + 10, true);
    const compressedSize = dir.getUint32(p + 20, true);
    const size = dir.getUint32(p + 24, true);
    const nameLength = dir.getUint16(p + 28, true);
    const extraLength = dir.getUint16(p + 30, true);
    const commentLength = dir.getUint16(p + 32, true);
    const offset = dir.getUint32(p + 42, true);
    const name = decoder.decode(new Uint8Array(dir.buffer, dir.byteOffset + p + 46, nameLength));
    const encrypted = flags & 1;
    if (!name.endsWith("/") && !encrypted && (method === 0 || method === 8)) {
      entries.set(name, { method, compressedSize, size, offset });
    }
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The bytes of one entry as a Blob, or null when it is too big or not readable here. */
export async function readZipEntry(file, entry) {
  if (entry.size > MAX_ENTRY_BYTES || entry.compressedSize > MAX_ENTRY_BYTES) return null;
  const header = new DataView(await file.slice(entry.offset, entry.offset + 30).arrayBuffer());
  if (header.byteLength < 30 || header.getUint32(0, true) !== LOCAL_SIGNATURE) return null;
  const start = entry.offset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  const data = file.slice(start, start + entry.compressedSize);
  if (entry.method === 0) return data;
  if (typeof DecompressionStream === "undefined") return null;
  const stream = data.stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).blob();
}
