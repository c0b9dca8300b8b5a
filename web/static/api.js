/**
 * The gateway's HTTP contract (issue 4) and nothing else: both pages talk to the server only through here,
 * so a change of contract is a change of this file.
 *
 *   POST /api/jobs            multipart `files` (+ `kind`, `region`) -> 202 {id, status, status_url, items_total}
 *   GET  /api/jobs/{id}       -> {id, status, progress: {done, total}, items: [...]}, Retry-After while unfinished
 *   DELETE /api/jobs/{id}     cancels
 *   POST /api/jobs/{id}/items/{index}/corrections   -> 201 {item, saved}
 *   errors                    -> {error, message}; 401 names the API-key header in WWW-Authenticate
 */

const FINISHED = new Set(["succeeded", "partial", "failed"]);

/** Polling intervals are the server's call (Retry-After); these only bound what we accept from it. */
const MIN_WAIT_MS = 200;
const MAX_WAIT_MS = 10_000;
const DEFAULT_WAIT_MS = 1_000;
/** A blip (network, 502/503 from a proxy) should not end a long bulk poll; a dead server should. */
const MAX_TRANSIENT_FAILURES = 4;

export class ApiError extends Error {
  /**
   * @param {string} message  shown to the user as is, so it must read as a sentence
   * @param {{status?: number, code?: string, retryAfterS?: number|null, jobId?: string|null}} info
   */
  constructor(message, { status = 0, code = "error", retryAfterS = null, jobId = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
    this.jobId = jobId;
  }
}

export const isFinished = (status) => FINISHED.has(status);

/** An item's `error` as a sentence, whether the server sent a string or an {error, message} object. */
export function errorText(error) {
  if (error == null || error === "") return "";
  if (typeof error === "string") return error;
  return error.message || error.error || JSON.stringify(error);
}

/** Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value) {
  if (value == null || value === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

/** Turn any non-2xx answer into an ApiError whose message names what is wrong. */
async function errorFrom(status, text, retryAfterHeader) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* a proxy may answer HTML; the status line is all we have then */
  }
  const retryAfterS = parseRetryAfter(retryAfterHeader);
  let message = body?.message;
  if (!message && Array.isArray(body?.detail)) {
    // FastAPI's own validation errors: [{loc, msg}]
    message = body.detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  } else if (!message && typeof body?.detail === "string") {
    message = body.detail;
  }
  if (!message) message = describeStatus(status);
  if ((status === 429 || status === 503) && retryAfterS != null) {
    message += ` Try again in ${Math.ceil(retryAfterS)} s.`;
  }
  return new ApiError(message, { status, code: body?.error ?? `http_${status}`, retryAfterS });
}

function describeStatus(status) {
  if (status === 413) return "The upload is too large.";
  if (status === 415) return "That file type is not supported.";
  if (status === 429 || status === 503) return "The server is busy.";
  if (status >= 500) return `The server had a problem (HTTP ${status}).`;
  return `The request was refused (HTTP ${status}).`;
}

// ----- API keys: a gateway with keys on answers 401 and names its header in WWW-Authenticate --------

const KEY = "phonereader.apiKey";
const KEY_HEADER = "phonereader.apiKeyHeader";

/** The key this tab was given, as a header; kept for the tab's life only (sessionStorage). */
function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  const header = sessionStorage.getItem(KEY_HEADER);
  return key && header ? { [header]: key } : {};
}

/** Ask the person for a key once per refusal; true when they typed one (then the request is sent again). */
function askForKey(header) {
  if (!header) return false;
  const known = Boolean(sessionStorage.getItem(KEY));
  const key = window.prompt(
    known ? `The server refused that API key. Enter a valid key (sent as ${header}):`
      : `This server needs an API key (sent as ${header}). Enter your key:`,
  );
  if (!key?.trim()) return false;
  sessionStorage.setItem(KEY, key.trim());
  sessionStorage.setItem(KEY_HEADER, header);
  return true;
}

/** fetch with the key attached; a 401 asks for a key and tries once more. */
async function call(url, init = {}) {
  const send = () => fetch(url, { ...init, headers: { ...init.headers, ...authHeaders() } });
  let response = await send().catch((error) => {
    if (error?.name === "AbortError") throw error;
    throw networkError();
  });
  if (response.status === 401 && askForKey(response.headers.get("WWW-Authenticate"))) {
    response = await send().catch(() => {
      throw networkError();
    });
  }
  return response;
}

const networkError = () =>
  new ApiError("Cannot reach the server. Check the connection and try again.", { code: "network" });

/**
 * Submit a job. XMLHttpRequest rather than fetch because it reports upload progress, which a 50 MB bulk
 * upload needs and fetch still cannot give.
 *
 * @param {File[]} files   sent in this order; their names are the items' `source`
 * @param {{kind?: string, region?: string, onUploadProgress?: (fraction: number) => void}} options
 * @returns {Promise<{id: string, status: string, status_url: string, items_total: number}>}
 */
export function submitJob(files, { kind = "auto", region, onUploadProgress } = {}, retried = false) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  form.append("kind", kind);
  if (region) form.append("region", region);

  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    if (onUploadProgress) {
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onUploadProgress(e.loaded / e.total);
      });
    }
    xhr.addEventListener("error", () => reject(networkError()));
    xhr.addEventListener("abort", () => reject(new ApiError("The upload was cancelled.", { code: "aborted" })));
    xhr.addEventListener("load", async () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          const job = JSON.parse(xhr.responseText);
          job.status_url ||= `/api/jobs/${encodeURIComponent(job.id)}`;
          resolve(job);
        } catch {
          reject(new ApiError("The server's answer was not understood.", { status: xhr.status, code: "bad_json" }));
        }
      } else if (xhr.status === 401 && !retried && askForKey(xhr.getResponseHeader("WWW-Authenticate"))) {
        submitJob(files, { kind, region, onUploadProgress }, true).then(resolve, reject);
      } else {
        reject(await errorFrom(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
      }
    });
    xhr.send(form);
  });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

const clampWait = (seconds) =>
  seconds == null ? DEFAULT_WAIT_MS : Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, seconds * 1000));

/**
 * Poll a job until it finishes, waiting as long as the server's Retry-After asks between polls.
 *
 * Two different clocks can end the wait: `timeoutS` bounds the whole wait (an interactive page, where
 * a person is watching), `stallS` bounds the time without progress (a bulk job may rightly take an hour,
 * but not an hour without one item finishing).
 *
 * @param {string} statusUrl
 * @param {{timeoutS?: number, stallS?: number, signal?: AbortSignal, onUpdate?: (job: object) => void}} options
 * @returns {Promise<object>} the finished job
 */
export async function pollJob(statusUrl, { timeoutS, stallS, signal, onUpdate } = {}) {
  const started = performance.now();
  let lastProgressAt = started;
  let lastDone = -1;
  let failures = 0;
  let jobId = statusUrl.split("/").pop();

  for (;;) {
    let waitMs;
    try {
      const response = await call(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store", signal });
      const retryAfterS = parseRetryAfter(response.headers.get("Retry-After"));
      if (!response.ok) {
        const error = await errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
        if (response.status === 404) {
          error.message = "The job was not found on the server: it may have expired or been cancelled.";
        }
        if (response.status < 500 && response.status !== 429) throw Object.assign(error, { fatal: true, jobId });
        throw error;
      }
      const job = await response.json();
      jobId = job.id ?? jobId;
      failures = 0;
      onUpdate?.(job);
      if (isFinished(job.status)) return job;
      const done = job.progress?.done ?? 0;
      if (done !== lastDone) {
        lastDone = done;
        lastProgressAt = performance.now();
      }
      waitMs = clampWait(retryAfterS);
    } catch (error) {
      if (error?.name === "AbortError" || signal?.aborted) throw error;
      if (error.fatal) throw error;
      failures += 1;
      if (failures > MAX_TRANSIENT_FAILURES) {
        throw error instanceof ApiError ? Object.assign(error, { jobId }) : Object.assign(networkError(), { jobId });
      }
      waitMs = clampWait(error.retryAfterS ?? failures); // 1 s, 2 s, 3 s … unless the server says otherwise
    }

    const now = performance.now();
    if (timeoutS != null && now - started >= timeoutS * 1000) {
      throw new ApiError(
        `No answer after ${Math.round(timeoutS)} s. The server may be busy; try again in a moment (job ${jobId}).`,
        { code: "timeout", jobId },
      );
    }
    if (stallS != null && now - lastProgressAt > stallS * 1000) {
      throw new ApiError(
        `The job made no progress for ${Math.round(stallS)} s, so we stopped waiting. ` +
          `It may still finish on the server: its id is ${jobId}.`,
        { code: "stalled", jobId },
      );
    }
    if (timeoutS != null) waitMs = Math.min(waitMs, started + timeoutS * 1000 - now); // last look at the deadline
    await sleep(waitMs, signal);
  }
}

/** Cancel a job; a job that is already gone counts as cancelled. */
export async function cancelJob(jobId) {
  const response = await call(`/api/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    throw await errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
  }
}

/**
 * Send a user's correction of one item (the corrections issue). The endpoint may not exist yet, and the
 * gateway answers a missing route and an unknown job alike (404 {error: "not_found"}), so on 404 we ask
 * whether the job itself is still there to tell "not supported yet" from "expired".
 *
 * @returns {Promise<{saved: boolean, reason?: "unsupported"|"expired", item?: object}>}
 */
export async function postCorrection(jobId, index, correction) {
  const jobUrl = `/api/jobs/${encodeURIComponent(jobId)}`;
  const response = await call(`${jobUrl}/items/${index}/corrections`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(correction),
  });
  if (response.ok) {
    const body = await response.json().catch(() => ({}));
    return { saved: true, item: body?.item ?? (body?.digits != null ? body : undefined) };
  }
  if (response.status === 405 || response.status === 501) return { saved: false, reason: "unsupported" };
  if (response.status === 404) {
    const job = await call(jobUrl, { cache: "no-store" }).catch(() => null);
    return { saved: false, reason: job?.status === 404 ? "expired" : "unsupported" };
  }
  throw await errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
}
