"""`phonereader` subcommands owned by the `training` package: train, evaluate, bench model.

torch is imported inside each command, so `phonereader --help` stays instant and torch-free.
"""

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from phonereader import ROOT

MODELS = ROOT / "models"
EPOCHS = {"default": 30, "wide": 20, "deep": 15, "res": 10}  # the frozen recipe's epochs per model
OTHER_EPOCHS = 12  # mlp and lenet5


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def train(
        model: str = typer.Option("default", help="mlp, lenet5, default, wide, deep or res (with --extra and no --init: the architecture)."),
        epochs: Optional[int] = typer.Option(None, help=f"Epochs. Default: {', '.join(f'{n} for {m}' for m, n in EPOCHS.items())}, {OTHER_EPOCHS} for mlp and lenet5."),
        seed: int = typer.Option(0, help="Same seed, same data, same device: same weights."),
        device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
        data: Optional[Path] = typer.Option(None, help="MNIST folder (IDX .gz or PNG folders). Default: Settings().mnist_dir."),
        extra: Optional[Path] = typer.Option(None, help="Users' corrections (the corrections folder or its export zip): "
                                             "train on MNIST plus these, class-balanced (see training/extra.py)."),
        init: Optional[Path] = typer.Option(None, help="With --extra: fine-tune this model card instead of training from scratch."),
        steps: Optional[int] = typer.Option(None, help="With --extra: optimiser steps (default 300 with --init, else 6000)."),
        extra_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="With --extra: share of a corrected class's samples drawn from the corrections."),
        polish_epochs: int = typer.Option(3, min=0, help="Epochs of a short low-rate second stage on mostly clean batches (0: off)."),
        out: Path = typer.Option(MODELS, help="Folder for <name>.safetensors/.onnx/.json."),
        name: Optional[str] = typer.Option(None, help="File stem (default: the model name; <init>-ft with --init)."),
        batch_size: int = typer.Option(128),
        lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 4e-3; with --extra 5e-4 fine-tuning, 5e-3 from scratch)."),
        limit: Optional[int] = typer.Option(None, help="Train on the first N training images only."),
    ) -> None:
        """Train a model on normalised MNIST (plus corrections with --extra), calibrate it on val, export
        safetensors + ONNX + JSON card."""
        from phonereader.modelcard import ModelFileError
        from training.data import DataError
        from training.extra import ExtraDataError

        command = "phonereader " + shlex.join(sys.argv[1:])
        try:
            if extra is not None:
                from training.extra_cli import train_extra

                train_extra(extra, init, out, name, steps, lr, extra_fraction, batch_size, seed, device, data,
                            command=command, model=model, mnist_limit=limit)
                return
            if init is not None or steps is not None:
                raise ValueError("--init and --steps go with --extra (fine-tuning on corrections)")
            from training.train import TrainConfig
            from training.train import train as run

            cfg = TrainConfig(model=model, epochs=epochs or EPOCHS.get(model, OTHER_EPOCHS), seed=seed,
                              device=device, data=data, out=out, name=name, batch_size=batch_size,
                              lr=lr or 4e-3, limit=limit, polish_epochs=polish_epochs)  # fmt: skip
            run(cfg, command=command)
        except (DataError, ModelFileError, ExtraDataError, ValueError) as e:
            _fail(e)

    @app.command()
    def evaluate(
        model: Path = typer.Argument(MODELS / "default.json", help="The model card (JSON)."),
        report: Optional[Path] = typer.Option(None, help="Write PNGs and metrics.json here (default reports/<name>)."),
        robustness: bool = typer.Option(False, "--robustness", help="Also score the shifts the service meets."),
        data: Optional[Path] = typer.Option(None, help="MNIST folder. Default: Settings().mnist_dir."),
        device: str = typer.Option("auto"),
        extra: Optional[Path] = typer.Option(None, help="Corrections folder or zip: score MNIST test and the held-out "
                                             "fifth of the corrections side by side (instead of the full report)."),
        baseline: Optional[Path] = typer.Option(None, help="With --extra: the model card to compare against (the serving one)."),
        max_drop: float = typer.Option(0.1, help="With --baseline: MNIST test points the new model may lose before a warning."),
        fail_on_drop: bool = typer.Option(False, "--fail-on-drop", help="Exit 2 when the MNIST drop exceeds --max-drop."),
        limit: Optional[int] = typer.Option(None, help="With --extra: the first N MNIST test images only."),
    ) -> None:
        """Test accuracy, per-class precision/recall, calibration error; report folder with plots. With
        --extra: MNIST test against held-out corrections, for the new model and a baseline."""
        from phonereader.modelcard import ModelFileError
        from training.data import DataError
        from training.extra import ExtraDataError

        try:
            if extra is not None:
                from training.extra_cli import evaluate_extra

                evaluate_extra(model, extra, baseline, data, max_drop, fail_on_drop, limit)
                return
            if baseline is not None:
                raise ValueError("--baseline goes with --extra")
            from training.evaluate import evaluate as run

            run(model, report or ROOT / "reports" / model.stem, robustness=robustness, data=data, device=device)
        except (DataError, ModelFileError, ExtraDataError, ValueError) as e:
            _fail(e)

    @app.command("second-opinion")
    def second_opinion(
        card: Path = typer.Argument(..., help="The served model's card (e.g. models/default.json)."),
        others: Optional[list[Path]] = typer.Argument(None, help="The bigger models' cards, in the same folder. None: unpair."),
        below: float = typer.Option(0.99, min=0.0, max=1.0, help="Crops CARD is less sure of than this are read by all."),
        weights: Optional[str] = typer.Option(None, help="Votes on a doubtful crop, comma-separated: CARD's first, then "
                                              "the others' in order (default: all 1; 0 = no vote)."),
    ) -> None:
        """Pair a model with bigger ones that read the crops it doubts (or, with none, unpair it).
        The pairing is written into CARD: judge it with evaluate-pipeline --split val first."""
        from phonereader.modelcard import ModelFileError, PairedModel, SecondOpinion, load_card, save_card

        try:
            main = load_card(card)
            main.second_opinion = None
            if others:
                for other in others:
                    if other.resolve().parent != card.resolve().parent:
                        raise ValueError(f"{other}: the second opinion's cards must sit beside {card}")
                if below <= 0:  # the option's range (0 to 1) lets 0 through
                    raise ValueError(f"--below {below}: must be above 0 (0 would ask the others about no crop)")
                votes = [float(w) for w in weights.split(",")] if weights else [1.0] * (len(others) + 1)
                if len(votes) != len(others) + 1:
                    raise ValueError(f"--weights {weights}: give {len(others) + 1} votes, {card.name}'s first")
                paired = [PairedModel(card=o.name, version=load_card(o).version, weight=w) for o, w in zip(others, votes[1:])]
                main.second_opinion = SecondOpinion(models=paired, below=below, own_weight=votes[0])
            save_card(main, card)
        except (ModelFileError, ValueError) as e:
            _fail(e)
        names = ", ".join(o.name for o in others or [])
        typer.echo(f"{card}: " + (f"second opinion {names} below {below}, votes {weights or 'equal'}" if others
                                  else "no second opinion"))

    @bench.command("model")
    def bench_model(
        models: str = typer.Option("default,lenet5,mlp", help="Comma-separated card names in --dir, or card paths."),
        folder: Path = typer.Option(MODELS, "--dir", help="Where the cards live."),
        threads: int = typer.Option(2, help="Threads for ONNX Runtime and PyTorch."),
        seconds: float = typer.Option(1.0, help="Time per measurement."),
    ) -> None:
        """Digits/s at batch 1, 16 and 256 in PyTorch and ONNX Runtime, and a table per model."""
        from training.bench import bench_models

        bench_models([m.strip() for m in models.split(",") if m.strip()], folder, threads=threads, seconds=seconds)
