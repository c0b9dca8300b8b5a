/**
 * Shows one recognised number (a job item): the Result field, a validity badge and one chip per digit with
 * its confidence. Low-confidence digits are marked in colour *and* with a symbol and words, so the mark does
 * not depend on colour vision. Each chip is a button that turns into a one-character input, so the user
 * can correct a digit in place; the page decides what to do with the correction (see `onCorrect`).
 */

export const percent = (p) => (p == null ? "–" : `${Math.floor(p * 100)}%`);

/**
 * One entry per recognised digit, in reading order. `detailIndex` points into item.digits_detail, which
 * also lists empty boxes; the page maps it back to the box the digit came from.
 */
export function digitEntries(item) {
  const digits = [...(item?.digits ?? "")];
  const details = (item?.digits_detail ?? [])
    .map((detail, detailIndex) => ({ ...detail, detailIndex }))
    .filter((d) => !d.empty && d.digit != null);
  if (details.length !== digits.length) {
    // The server's digits and details disagree (should not happen): show the digits, unknown confidence.
    return digits.map((digit) => ({ digit, confidence: null, detailIndex: null }));
  }
  return digits.map((digit, i) => ({
    digit,
    confidence: details[i].confidence,
    detailIndex: details[i].detailIndex,
    // Phone rules may replace the model's top reading by a valid one (item.corrected).
    modelDigit: details[i].digit,
    alternatives: details[i].alternatives ?? [],
    // The server marks digits under its review threshold (Settings.review_threshold); the page does not guess it.
    low: details[i].needs_review === true,
  }));
}

export const isLow = (entry) => entry.low === true;

/**
 * Put the edited digits back into the server's formatted number, keeping its punctuation. The national
 * format holds the last k digits of the number in order (the country code may be left out); if it does
 * not, formatting is not ours to guess and the plain digits are shown.
 */
export function reformat(formatted, oldDigits, newDigits) {
  if (!formatted) return newDigits;
  const positions = [...formatted].flatMap((ch, i) => (/[0-9]/.test(ch) ? [i] : []));
  const shown = positions.map((i) => formatted[i]).join("");
  if (!oldDigits.endsWith(shown) || oldDigits.length !== newDigits.length) return newDigits;
  const offset = oldDigits.length - shown.length;
  if (newDigits.slice(0, offset) !== oldDigits.slice(0, offset)) return newDigits; // country code changed
  const chars = [...formatted];
  positions.forEach((pos, k) => (chars[pos] = newDigits[offset + k]));
  return chars.join("");
}

export class ResultView {
  /**
   * @param {{output: HTMLOutputElement, validity: HTMLElement, list: HTMLOListElement, detail: HTMLElement}} els
   * @param {{onCorrect: (change: {position: number, from: string, to: string, digits: string}) => void,
   *          onHighlight?: (entries: object[]) => void}} hooks
   */
  constructor(els, { onCorrect, onHighlight }) {
    this.els = els;
    this.onCorrect = onCorrect;
    this.onHighlight = onHighlight ?? (() => {});
    this.clear();
  }

  clear() {
    this.item = null;
    this.entries = [];
    this.formatted = "";
    this.els.output.value = "";
    this.els.output.textContent = "—";
    this.setValidity(null);
    this.els.list.replaceChildren();
    this.els.detail.textContent = "";
    this.onHighlight([]);
  }

  /**
   * Show a finished item. Digits the server knows a user corrected (`user_corrected`) are marked; with
   * `keepEdits`, so are the ones edited on this page, and our own formatting survives a server that has
   * none for the corrected number.
   */
  show(item, { keepEdits = false } = {}) {
    const edited = new Set(item.user_corrected ?? []);
    if (keepEdits) this.entries.forEach((e, i) => e.edited && edited.add(i));
    const ours = keepEdits && item.digits === this.digits ? this.formatted : "";
    this.item = item;
    this.entries = digitEntries(item).map((e, i) => ({ ...e, edited: edited.has(i) }));
    this.formatted = item.formatted || ours || item.digits || "";
    this.renderNumber();
    this.setValidity(item.valid, item.region);
    this.renderDigits();
    this.renderDetail();
    this.onHighlight(this.entries);
  }

  /** The small print under the digits; the server's E.164 and confidence go stale once the user edits. */
  renderDetail() {
    const item = this.item;
    const edits = this.entries.filter((e) => e.edited).length;
    const extra = [];
    if (edits) {
      extra.push(`${edits} digit${edits > 1 ? "s" : ""} corrected by you: ${this.digits}`);
    } else {
      if (item.e164) extra.push(`E.164 ${item.e164}`);
      if (item.confidence != null) extra.push(`whole-number confidence ${percent(item.confidence)}`);
    }
    if (item.corrected && item.raw_digits) extra.push(`phone rules changed the model's reading ${item.raw_digits}`);
    this.els.detail.textContent = extra.join(" · ");
  }

  get digits() {
    return this.entries.map((e) => e.digit).join("");
  }

  renderNumber() {
    const text = this.formatted || this.digits || "—";
    this.els.output.value = text;
    this.els.output.textContent = text;
  }

  setValidity(valid, region) {
    const badge = this.els.validity;
    badge.className = "badge";
    if (valid === true) {
      badge.classList.add("ok");
      badge.textContent = "✓ valid number";
    } else if (valid === false) {
      badge.classList.add("bad");
      badge.textContent = region ? `✗ not a valid ${region} number` : "✗ not a valid number";
    } else if (valid === "unchecked") {
      badge.classList.add("warn");
      badge.textContent = "edited: validity not re-checked";
    } else {
      badge.textContent = "";
    }
  }

  renderDigits() {
    this.els.list.replaceChildren(...this.entries.map((entry, i) => this.chip(entry, i)));
  }

  chip(entry, position) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "digit";
    button.dataset.position = String(position);
    button.classList.toggle("low", isLow(entry) && !entry.edited);
    button.classList.toggle("edited", entry.edited);
    const d = document.createElement("span");
    d.className = "d";
    d.textContent = entry.digit;
    const c = document.createElement("span");
    c.className = "c";
    c.textContent = entry.edited ? "edited" : percent(entry.confidence);
    button.append(d, c);

    const state = entry.edited ? "corrected by you" : isLow(entry) ? "low confidence, please check" : "";
    button.setAttribute(
      "aria-label",
      `Digit ${position + 1}: ${entry.digit}, confidence ${percent(entry.confidence)}` +
        (state ? `, ${state}` : "") + ". Press to correct.",
    );
    const others = (entry.alternatives ?? []).filter((a) => a.digit !== entry.digit);
    button.title = others.length
      ? `Other readings: ${others.map((a) => `${a.digit} (${percent(a.p)})`).join(", ")}. Click to correct.`
      : "Click to correct";
    button.addEventListener("click", () => this.edit(li, position));
    li.append(button);
    return li;
  }

  /** Swap the chip for a one-digit input; Enter or leaving the field confirms, Escape cancels. */
  edit(li, position) {
    const entry = this.entries[position];
    const input = document.createElement("input");
    input.type = "text";
    input.className = "digit-edit";
    input.inputMode = "numeric";
    input.maxLength = 1;
    input.pattern = "[0-9]";
    input.autocomplete = "off";
    input.value = entry.digit;
    input.setAttribute("aria-label", `Correct digit ${position + 1} (now ${entry.digit})`);
    let done = false;
    const finish = (commit) => {
      if (done) return;
      done = true;
      const value = input.value.trim();
      if (commit && /^[0-9]$/.test(value) && value !== entry.digit) this.apply(position, value);
      else li.replaceWith(this.chip(entry, position));
      this.els.list.querySelector(`[data-position="${position}"]`)?.focus();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        finish(true);
      } else if (e.key === "Escape") {
        e.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    li.replaceChildren(input);
    input.focus();
    input.select();
  }

  apply(position, digit) {
    const before = this.digits;
    const entry = this.entries[position];
    const from = entry.digit;
    entry.digit = digit;
    entry.edited = true;
    const after = this.digits;
    this.formatted = reformat(this.formatted, before, after);
    this.renderNumber();
    this.setValidity("unchecked");
    this.renderDigits();
    this.renderDetail();
    this.onHighlight(this.entries);
    this.onCorrect({ position, from, to: digit, digits: after });
  }
}
