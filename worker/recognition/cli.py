"""`phonereader recognize`, `phonereader evaluate-pipeline` and `phonereader bench recognize`.

All three run the library directly, with no queue: the same Recognizer the workers use.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer

KIND_HELP = "boxes (all files are one number, one digit per file), line, form, or auto (line or form, per image)"


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("recognize")(recognize)
    app.command("evaluate-pipeline")(evaluate_pipeline)
    bench.command("recognize")(bench_recognize)
    app.command("train-pairs")(train_pairs)


def _settings():
    from phonereader.config import get_settings

    return get_settings()


def _items(files: list[Path], settings):
    """(source, ink or InputError) per page of every file, in order."""
    from phonereader.imageio import InputError, count_pages, load_page

    for path in files:
        try:
            data = path.read_bytes()
        except OSError as e:
            yield str(path), InputError("unreadable", f"{path}: {e.strerror or e}", 422)
            continue
        try:
            n = count_pages(data, path.name, settings)
        except InputError as e:
            yield path.name, e
            continue
        for page in range(n):
            source = f"{path.name}#{page + 1}" if n > 1 else path.name
            try:
                yield source, load_page(data, path.name, page, settings)
            except InputError as e:
                yield source, e


def recognize(
    files: list[Path] = typer.Argument(..., help="Images (PNG, JPEG, TIFF, GIF, BMP, WebP) or PDFs."),
    kind: str = typer.Option("auto", "--kind", "-k", help=KIND_HELP),
    region: str = typer.Option(None, "--region", "-r", help="Phone region, e.g. US or GB (default: settings)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Read handwritten phone numbers from files, offline (no queue)."""
    from phonereader.imageio import InputError
    from worker.recognition import Recognizer

    if kind not in ("boxes", "line", "form", "auto"):
        raise typer.BadParameter(f"kind must be boxes, line, form or auto, not {kind!r}", param_hint="--kind")
    settings = _settings()
    rec = Recognizer(settings=settings)
    items = list(_items(files, settings))
    results: list[dict] = []
    if kind == "boxes":
        bad = [(s, e) for s, e in items if isinstance(e, InputError)]
        if bad:
            results = [{"source": s, "error": e.code, "message": e.message} for s, e in bad]
        else:
            r = rec.recognize([ink for _, ink in items], "boxes", region)[0]
            results = [{"source": "+".join(s for s, _ in items), **r.model_dump()}]
    else:
        good = [(s, ink) for s, ink in items if not isinstance(ink, InputError)]
        fields = [(s, f) for s, ink in good for f in rec.cut(ink, kind)]
        probs = rec.predict([f for _, f in fields])
        readings = {id(f): rec.read(f, p, region) for (_, f), p in zip(fields, probs)}
        for s, ink in items:
            if isinstance(ink, InputError):
                results.append({"source": s, "error": ink.code, "message": ink.message})
        for s, f in fields:
            results.append({"source": s, **readings[id(f)].model_dump()})
        order = {s: i for i, (s, _) in enumerate(items)}
        results.sort(key=lambda r: order[r["source"]])
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        _print_table(results)
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("source", "kind", "digits", "formatted", "valid", "confidence", "review", "note")
    for col in table.columns[:6]:
        col.no_wrap = True
    for r in results:
        if "error" in r:
            table.add_row(r["source"], "", "", "", "", "", "", f"[red]{r['error']}[/]: {r['message']}")
            continue
        note = f"corrected from {r['raw_digits']}" if r["corrected"] else ""
        table.add_row(
            r["source"], r["kind"], r["digits"] or "(none)", r["formatted"] or "", "yes" if r["valid"] else "no",
            f"{r['confidence']:.3f}", "yes" if r["needs_review"] else "", note,
        )
    Console(width=max(120, Console().width)).print(table)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate_pipeline(
    kinds: str = typer.Option("boxes,line,form", "--kind", help="Comma-separated: boxes, line, form."),
    n: int = typer.Option(1000, "--n", help="Numbers per kind (forms: pages; each holds 1-3 fields)."),
    forms: int = typer.Option(400, "--forms", help="Form pages."),
    seed: int = typer.Option(0, "--seed"),
    split: str = typer.Option("test", "--split", help="MNIST split the digits come from: test (report) or val (tuning)."),
    data: Path = typer.Option(None, "--data", help="MNIST folder (default: settings.mnist_dir)."),
    out: Path = typer.Option(None, "--out", help="Also write the figures as JSON here."),
) -> None:
    """Digit and exact-match accuracy on synthetic boxes, lines and forms made from MNIST digits."""
    from rich.console import Console
    from rich.table import Table

    from training.synth import DigitPool

    settings = _settings()
    pool = DigitPool(split, data)
    from worker.recognition import Recognizer

    rec = Recognizer(settings=settings)
    rows = {}
    for kind in [k.strip() for k in kinds.split(",") if k.strip()]:
        if kind not in ("boxes", "line", "form"):
            raise typer.BadParameter(f"unknown kind {kind!r}", param_hint="--kind")
        rows[kind] = _evaluate(kind, rec, pool, forms if kind == "form" else n, seed, settings)
    table = Table(title=f"Recognition pipeline on synthetic {split}-split numbers (seed {seed}, model {rec.model.version})")
    for col in ("kind", "numbers", "digits", "digit acc", "exact", "raw digit", "raw exact", "fixed", "review", "caught"):
        table.add_column(col, justify="right", no_wrap=True)
    for kind, r in rows.items():
        table.add_row(
            kind, str(r["numbers"]), str(r["digits"]), f"{100 * r['digit_accuracy']:.2f}%", f"{100 * r['exact_match']:.2f}%",
            f"{100 * r['raw_digit_accuracy']:.2f}%", f"{100 * r['raw_exact_match']:.2f}%", str(r["corrected"]),
            f"{100 * r['review_flagged']:.0f}%", f"{100 * r['review_caught']:.0f}%",
        )
    Console(width=max(100, Console().width)).print(table)
    Console(width=max(100, Console().width)).print(
        "digit acc = 1 - edits/digits (a missed, extra or wrong digit is one edit); raw = before phone-rule correction; "
        "fixed = readings the phone rules corrected; exact = whole number right; review = readings flagged "
        f"needs_review (threshold {settings.review_threshold}); caught = share of the wrong readings flagged."
    )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"split": split, "seed": seed, "model": rec.model.version, "kinds": rows}, indent=2))


def _evaluate(kind: str, rec, pool, n: int, seed: int, settings) -> dict:
    from tqdm import tqdm

    from phonereader.imageio import load_page
    from training import synth

    final, raw = synth.Score(), synth.Score()
    corrected = flagged = caught = 0

    def add(truth: str, r) -> None:
        """One reading (None: its field was not found) into the scores and the review counts."""
        nonlocal corrected, flagged, caught
        final.add(truth, r.digits if r else "")
        raw.add(truth, r.raw_digits if r else "")
        corrected += bool(r and r.corrected)
        flagged += bool(r and r.needs_review)
        caught += bool(r and r.needs_review and r.digits != truth)

    if kind == "boxes":
        for s in tqdm(synth.make_boxes(pool, n, seed), desc="boxes", leave=False):
            inks = [load_page(b, "box.png", 0, settings) for b in s.images]
            add(s.truth, rec.recognize(inks, "boxes", s.region)[0])
    elif kind == "line":
        samples = synth.make_lines(pool, n, seed)
        for i in tqdm(range(0, len(samples), 64), desc="lines", leave=False):
            chunk = samples[i : i + 64]
            fields = [rec.cut(load_page(s.image, "line", 0, settings), "line")[0] for s in chunk]
            for s, f, p in zip(chunk, fields, rec.predict(fields)):
                add(s.truth, rec.read(f, p, s.region))
    else:
        for s in tqdm(synth.make_forms(pool, n, seed), desc="forms", leave=False):
            fields = rec.cut(load_page(s.image, f"form.{s.fmt}", 0, settings), "auto")
            probs = rec.predict(fields)
            match = synth.match_fields(s.fields, [f.box or (0, 0, 0, 0) for f in fields])
            for truth, m in zip(s.fields, match):  # a field not found, or read as a line, reads as nothing
                add(truth.truth, rec.read(fields[m], probs[m], truth.region) if m is not None and fields[m].kind == "form" else None)
    return {
        "numbers": final.numbers, "digits": final.digits,
        "digit_accuracy": final.digit_accuracy, "exact_match": final.exact_match,
        "raw_digit_accuracy": raw.digit_accuracy, "raw_exact_match": raw.exact_match,
        "corrected": corrected,
        "review_flagged": flagged / max(1, final.numbers), "review_caught": caught / max(1, final.numbers - final.exact),
    }


# --- the touching-pair model -----------------------------------------------------------------------


def train_pairs(
    out: Path = typer.Option(None, "--out", help="Folder for pairs.safetensors/.onnx/.json (default: beside the digit model)."),
    n: int = typer.Option(150_000, "--n", help="Training blobs (half touching pairs) from MNIST train digits."),
    epochs: int = typer.Option(10, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    workers: int = typer.Option(1, "--workers", help="Processes drawing the blobs (the data does not depend on it)."),
    data: Path = typer.Option(None, "--data", help="MNIST folder (default: settings.mnist_dir)."),
) -> None:
    """Train the touching-pair model (one digit or two touching?) that arbitrates narrow blobs in lines."""
    from training.pairs import train

    out = out or Path(_settings().model_path).parent
    card = train(out, n_train=n, epochs=epochs, seed=seed, data=data, threads=threads, workers=workers)
    typer.echo(f"wrote {card}")


# --- speed ---------------------------------------------------------------------------------------


def _one_core() -> str:
    """Pin this process to one CPU and every library to one thread: the figure is per core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity here)"


def bench_recognize(
    n: int = typer.Option(400, "--n", help="Synthetic line images."),
    seed: int = typer.Option(1, "--seed"),
    data: Path = typer.Option(None, "--data", help="MNIST folder (default: settings.mnist_dir)."),
    repeat: int = typer.Option(3, "--repeat", help="Timed passes; the best is reported (shared machines are noisy)."),
) -> None:
    """Lines per second for decoding, preprocessing + segmentation, normalisation and the model, on ONE core."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    pinned = _one_core()
    from phonereader.imageio import load_page
    from training import synth
    from worker.engine import DigitModel
    from worker.recognition import Recognizer
    from worker.recognition import line as linemod
    from worker.recognition.pipeline import line_field

    settings = _settings()
    samples = synth.make_lines(synth.DigitPool("val", data), n, seed)  # speed only: val digits, no test use
    model = DigitModel.serving(settings, device="cpu", runtime="onnx", threads=1)
    rec = Recognizer(model=model, settings=settings)

    def best(fn) -> tuple[float, float]:
        """(wall, CPU) seconds of the fastest pass. CPU time is the per-core figure on a shared machine."""
        times = []
        for _ in tqdm(range(repeat), desc=fn.__name__, leave=False):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times.append((time.perf_counter() - t, time.process_time() - c))
        return min(times, key=lambda x: x[1])

    inks = [load_page(s.image, "line", 0, settings) for s in samples]
    cuts = [linemod.cut_line(ink, rec.line_params) for ink in inks]
    fields = [line_field(c) for c in cuts]
    crops = np.concatenate([f.crops for f in fields])

    def decode():
        for s in samples:
            load_page(s.image, "line", 0, settings)

    def segment():
        for ink in inks:
            linemod.cut_line(ink, rec.line_params)

    def normalise():
        for c in cuts:
            line_field(c)

    def cut_auto():
        for ink in inks:
            rec.cut(ink, "auto")

    def model_256():
        for i in range(0, len(crops), 256):
            model.predict_proba(crops[i : i + 256])

    def read():
        offsets = np.cumsum([0] + [len(f.crops) for f in fields])
        probs = model.predict_proba(crops)
        for f, a, b, s in zip(fields, offsets, offsets[1:], samples):
            rec.read(f, probs[a:b], s.region)

    def end_to_end():
        batch = [rec.cut(load_page(s.image, "line", 0, settings), "auto")[0] for s in samples]
        for f, p, s in zip(batch, rec.predict(batch), samples):
            rec.read(f, p, s.region)

    t = {fn.__name__: best(fn) for fn in (decode, segment, normalise, cut_auto, model_256, read, end_to_end)}
    table = Table(title=f"bench recognize: {n} synthetic line images, one core ({pinned}), best of {repeat}")
    for col, just in (("step", "left"), ("lines/s (CPU)", "right"), ("ms/line (CPU)", "right"), ("lines/s (wall)", "right"), ("note", "left")):
        table.add_column(col, justify=just)
    digits_per_s = len(crops) / t["model_256"][1]
    rows = [
        ("decode (PNG/JPEG bytes -> ink)", "decode", ""),
        ("preprocessing + segmentation", "segment", "flatten, binarise, slope, components, separators, cuts"),
        ("normalisation of the crops", "normalise", f"phonereader.normalize, {len(crops) / n:.1f} crops/line"),
        ("cut(kind=auto)", "cut_auto", "rule check + both rows above: what a worker calls"),
        ("model, batches of 256", "model_256", f"{digits_per_s:,.0f} digits/s (ONNX Runtime, 1 thread)"),
        ("read (choices, phone rules)", "read", "one predict_proba for all lines included"),
        ("end to end", "end_to_end", "decode + cut + one batch + read"),
    ]
    for name, key, note in rows:
        wall, cpu = t[key]
        table.add_row(name, f"{n / cpu:,.0f}", f"{1e3 * cpu / n:.2f}", f"{n / wall:,.0f}", note)
    Console(width=max(120, Console().width)).print(table)
    Console(width=max(120, Console().width)).print(
        "CPU = this process's CPU time (the per-core figure on a shared machine); wall = elapsed time, "
        "which other processes on the same core inflate."
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(recognize))
