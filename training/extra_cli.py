"""The CLI side of training.extra: what ``phonereader train --extra`` and ``phonereader evaluate --extra
--baseline`` run. Kept apart so training/cli.py only forwards its options here."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def train_extra(extra: Path, init: Path | None, out: Path, name: str | None, steps: int | None, lr: float | None,
                extra_fraction: float, batch_size: int, seed: int, device: str, data: Path | None,
                command: str = "", model: str = "default", mnist_limit: int | None = None) -> Path:
    """Fine-tune ``init`` (a few hundred steps, small lr) or train from scratch (``init`` None: longer, larger lr)."""
    from training.extra import FinetuneConfig, finetune

    if init is not None and not init.is_file():
        raise ValueError(f"--init {init}: no such model card")
    cfg = FinetuneConfig(extra=extra, init=init, out=out, name=name, batch_size=batch_size, seed=seed,
                         device=device, data=data, extra_fraction=extra_fraction, model=model, mnist_limit=mnist_limit,
                         steps=steps or (300 if init else 6000), lr=lr or (5e-4 if init else 5e-3))
    card = finetune(cfg, command=command)
    console.print(f"wrote {card}; compare it with: phonereader evaluate {card} --extra {extra}"
                  + (f" --baseline {init}" if init else ""))
    return card


def evaluate_extra(model: Path, extra: Path | None, baseline: Path | None, data: Path | None,
                   max_drop_points: float, fail_on_drop: bool, limit: int | None = None) -> dict:
    """Print MNIST test and held-out corrections accuracy side by side; warn (or exit 2) on an MNIST drop."""
    from training.extra import compare

    rows = compare(model, extra, baseline, data, limit)
    table = Table(title="MNIST test vs held-out corrections")
    table.add_column("model")
    table.add_column("MNIST test", justify="right")
    table.add_column("held-out corrections", justify="right")
    for key in ("baseline", "model"):
        if key in rows:
            r = rows[key]
            held = r.get("extra_holdout")
            table.add_row(f"{key}: {r['card']}", f"{r['mnist_test']:.2%}",
                          "-" if held is None else f"{held:.2%} (n={r['extra_holdout_n']})")
    console.print(table)
    drop = rows.get("mnist_drop_points")
    if drop is not None and drop > max_drop_points:
        console.print(f"[bold red]warning:[/] the new model drops {drop:.2f} points on MNIST test "
                      f"(more than {max_drop_points:g}); a new model must not drop on MNIST to win on the corrections")
        if fail_on_drop:
            raise typer.Exit(2)
    print(json.dumps(rows))
    return rows
