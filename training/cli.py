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


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def train(
        model: str = typer.Option("default", help="mlp, lenet5 or default."),
        epochs: Optional[int] = typer.Option(None, help="Main-stage epochs (a 3-epoch polish follows). Default: 30 for default, 12 for mlp and lenet5."),
        seed: int = typer.Option(0, help="Same seed, same data, same device: same weights."),
        device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
        data: Optional[Path] = typer.Option(None, help="MNIST folder (IDX .gz or PNG folders). Default: Settings().mnist_dir."),
        extra: Optional[str] = typer.Option(None, help="Reserved: extra training data set (not implemented yet)."),
        out: Path = typer.Option(MODELS, help="Folder for <name>.safetensors/.onnx/.json."),
        name: Optional[str] = typer.Option(None, help="File stem (default: the model name)."),
        batch_size: int = typer.Option(128),
        lr: float = typer.Option(4e-3, help="Peak learning rate of the one-cycle schedule."),
        limit: Optional[int] = typer.Option(None, help="Train on the first N training images only."),
    ) -> None:
        """Train a model on normalised MNIST, calibrate it on val, export safetensors + ONNX + JSON card."""
        if extra:
            _fail(ValueError("--extra is reserved for later data sets; none is available yet"))
        from phonereader.modelcard import ModelFileError
        from training.data import DataError
        from training.train import TrainConfig
        from training.train import train as run

        if epochs is None:
            epochs = 30 if model == "default" else 12
        cfg = TrainConfig(model=model, epochs=epochs, seed=seed, device=device, data=data, out=out, name=name,
                          batch_size=batch_size, lr=lr, limit=limit)  # fmt: skip
        command = "phonereader " + shlex.join(sys.argv[1:])
        try:
            run(cfg, command=command)
        except (DataError, ModelFileError, ValueError) as e:
            _fail(e)

    @app.command()
    def evaluate(
        model: Path = typer.Argument(MODELS / "default.json", help="The model card (JSON)."),
        report: Optional[Path] = typer.Option(None, help="Write PNGs and metrics.json here (default reports/<name>)."),
        robustness: bool = typer.Option(False, "--robustness", help="Also score the shifts the service meets."),
        data: Optional[Path] = typer.Option(None, help="MNIST folder. Default: Settings().mnist_dir."),
        device: str = typer.Option("auto"),
    ) -> None:
        """Test accuracy, per-class precision/recall, calibration error; report folder with plots."""
        from phonereader.modelcard import ModelFileError
        from training.data import DataError
        from training.evaluate import evaluate as run

        try:
            run(model, report or ROOT / "reports" / model.stem, robustness=robustness, data=data, device=device)
        except (DataError, ModelFileError) as e:
            _fail(e)

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
