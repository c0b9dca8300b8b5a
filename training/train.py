"""The training loop: normalised MNIST, on-device augmentation, AdamW + one-cycle, best-val checkpoint.

Plain on purpose (in the spirit of pytorch/examples mnist/main.py): the whole dataset sits in one
tensor on the device, each step samples a batch, augments it and takes a step. Validation picks the
checkpoint and fits the temperature; test accuracy is measured once at the end, for the card only.
"""

from __future__ import annotations

import copy
import inspect
import platform
import random
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from phonereader import ROOT
from phonereader.config import get_settings
from phonereader.modelcard import InputSpec, Metrics, ModelCard, ModelFiles, Training
from training.augment import AugmentConfig, augment
from training.calibrate import fit_temperature, nll
from training.data import VAL_SIZE, checksums
from training.export import save_model
from training.models import ARCHITECTURES, build_model, count_parameters
from training.prepared import normalize_version, prepared_split


@dataclass
class TrainConfig:
    model: str = "default"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema: float = 0.999  # weights are averaged (EMA); the average is validated, kept and exported
    seed: int = 0
    device: str = "auto"
    data: Path | None = None
    out: Path = ROOT / "models"
    name: str | None = None  # file stem in out/; defaults to the model name
    limit: int | None = None  # train on the first N images only (tests, quick runs)
    val_size: int = VAL_SIZE  # the last N training images are held out for checkpoints and temperature
    hparams: dict = field(default_factory=dict)  # architecture overrides
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_test: bool = True  # measure test accuracy at the end (reported in the card, never used to choose)
    # Polish: a short second one-cycle at low rate with mostly clean batches; the best epoch by val is
    # kept. It is part of the recipe of the committed models/default.*, so this default reproduces them.
    # On val it never cost and gained on one seed of three; fresh seeds 1 and 2 of this frozen recipe
    # scored 99.64% and 99.63% on test (docs/EXPERIMENTS.md, "Training recipe").
    polish_epochs: int = 3
    polish_lr: float = 4e-4
    polish_batch_size: int = 256
    polish_ema: float = 0.99
    polish_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(p=0.3))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def full_hparams(name: str, overrides: dict) -> dict:
    """The architecture's keyword defaults with overrides applied: the card records every value."""
    params = inspect.signature(ARCHITECTURES[name]).parameters
    return {k: p.default for k, p in params.items()} | overrides


@torch.no_grad()
def predict_logits(model, x: torch.Tensor, mean: float, std: float, batch: int = 1024) -> torch.Tensor:
    """Logits for (N,28,28) digits in [0,1], in eval mode, in chunks."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model(((x[i : i + batch].to(dev).unsqueeze(1)) - mean) / std).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.zeros(0, 10)


def fit(model, cfg: TrainConfig, x_train, y_train, x_val, y_val, mean: float, std: float):
    """The loop: augmented batches, AdamW + one-cycle, an EMA of the weights validated every epoch.

    Returns the best EMA weights (by val accuracy, then val loss), the per-epoch history and the best epoch.
    """
    device = x_train.device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(x_train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)

    def ema_avg(avg, current, n):  # warm-up: short runs average over their short history, not the init
        decay = min(cfg.ema, (1 + float(n)) / (10 + float(n)))
        return decay * avg + (1 - decay) * current

    ema = AveragedModel(model, avg_fn=ema_avg, use_buffers=True)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # augmentation
    cpu_gen = torch.Generator().manual_seed(cfg.seed)  # batch order

    history, best, best_key, best_epoch = [], None, (-1.0, 0.0), 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=cpu_gen).to(device)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=True)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = augment(x_train[idx], cfg.augment, gen), y_train[idx]
            logits = model((x - mean) / std)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        val_logits = predict_logits(ema.module, x_val, mean, std)
        val_acc, val_loss = float((val_logits.argmax(1) == y_val).float().mean()), nll(val_logits, y_val)
        history.append(dict(epoch=epoch, train_loss=total_loss / seen, train_acc=correct / seen,
                            val_loss=val_loss, val_acc=val_acc, lr=sched.get_last_lr()[0],
                            seconds=time.perf_counter() - t0))  # fmt: skip
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", val_acc=f"{val_acc:.4f}")
        bar.close()
        tqdm.write(f"epoch {epoch}: train loss {total_loss / seen:.4f}  val loss {val_loss:.4f}  val acc {val_acc:.4%}")
        if (val_acc, -val_loss) > best_key:
            best_key, best, best_epoch = (val_acc, -val_loss), copy.deepcopy(ema.module.state_dict()), epoch
    return best, history, best_epoch


def polish(model, cfg: TrainConfig, x_train, y_train, x_val, y_val, mean, std, history, best_epoch):
    """Second stage from the main stage's best weights; re-seeded, so it depends only on those weights."""
    torch.manual_seed(cfg.seed)
    stage = replace(cfg, epochs=cfg.polish_epochs, lr=cfg.polish_lr, batch_size=cfg.polish_batch_size,
                    ema=cfg.polish_ema, augment=cfg.polish_augment)  # fmt: skip
    best, extra, polish_best = fit(model, stage, x_train, y_train, x_val, y_val, mean, std)
    model.load_state_dict(best)
    n = len(history)
    history = history + [h | {"epoch": n + h["epoch"], "stage": "polish"} for h in extra]
    return history, n + polish_best


def describe_device(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return f"{device.type} ({name}, {torch.get_num_threads()} threads)"


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train, calibrate on val, measure test once, export; returns the path of the written model card."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    xs, ys = prepared_split("train", cfg.data, cfg.val_size)
    xv, yv = prepared_split("val", cfg.data, cfg.val_size)
    if cfg.limit:
        xs, ys = xs[: cfg.limit], ys[: cfg.limit]
    mean, std = float(xs.mean()), float(xs.std())
    x_val, y_val = torch.from_numpy(xv), torch.from_numpy(yv)

    hparams = full_hparams(cfg.model, cfg.hparams)
    model = build_model(cfg.model, **hparams).to(device)
    x_train, y_train = torch.from_numpy(xs).unsqueeze(1).to(device), torch.from_numpy(ys).to(device)
    best, history, best_epoch = fit(model, cfg, x_train, y_train, x_val, y_val, mean, std)
    model.load_state_dict(best)
    if cfg.polish_epochs:
        history, best_epoch = polish(model, cfg, x_train, y_train, x_val, y_val, mean, std, history, best_epoch)

    return finish(model, cfg, hparams, mean, std, x_val, y_val, history, best_epoch, device, command,
                  time.perf_counter() - t_start, time.process_time() - cpu_start)  # fmt: skip


def finish(model, cfg: TrainConfig, hparams, mean, std, x_val, y_val, history, best_epoch, device, command,
           train_seconds: float, cpu_seconds: float) -> Path:  # fmt: skip
    """Calibrate on val, measure test once, write the card and the model files."""
    val_logits = predict_logits(model, x_val, mean, std)
    temperature = fit_temperature(val_logits, y_val)
    metrics = Metrics(
        val_accuracy=float((val_logits.argmax(1) == y_val).float().mean()),
        val_nll_before=nll(val_logits, y_val),
        val_nll_after=nll(val_logits, y_val, temperature),
    )
    if cfg.eval_test:  # reported in the card, never used to choose anything
        xt, yt = prepared_split("test", cfg.data)
        test_logits = predict_logits(model, torch.from_numpy(xt), mean, std)
        metrics.test_accuracy = float((test_logits.argmax(1) == torch.from_numpy(yt)).float().mean())

    skip = ("out", "name", "data", "hparams", "augment", "polish_augment")
    hyper = {k: v for k, v in asdict(cfg).items() if k not in skip}
    hyper |= {"optimizer": "AdamW", "schedule": "OneCycleLR", "checkpoint": "EMA of weights, best val accuracy",
              "augment": cfg.augment.to_dict(), "polish_augment": cfg.polish_augment.to_dict()}  # fmt: skip
    card = ModelCard(
        name=cfg.name or cfg.model,
        architecture=cfg.model,
        hparams=hparams,
        parameters=count_parameters(model),
        input=InputSpec(mean=mean, std=std, normalize_version=normalize_version()),
        temperature=temperature,
        files=ModelFiles(weights="", weights_sha256=""),  # filled in by save_model
        metrics=metrics,
        training=Training(
            command=command,
            hyperparameters=hyper,
            seconds=round(train_seconds, 1),
            cpu_seconds=round(cpu_seconds, 1),  # wall time suffers from neighbours on a shared machine
            device=describe_device(device),
            epochs_run=len(history),
            best_epoch=best_epoch,
            history=history,
            data_dir=str(cfg.data or get_settings().mnist_dir),
            data_md5=checksums(cfg.data),
            torch_version=torch.__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
    )
    card_path = save_model(model.cpu(), card, cfg.out)
    test = "-" if metrics.test_accuracy is None else f"{metrics.test_accuracy:.4%}"
    tqdm.write(f"saved {card_path}: val acc {metrics.val_accuracy:.4%}, test acc {test}, T={temperature:.3f}, "
               f"best epoch {best_epoch}, {train_seconds:.0f} s training ({cpu_seconds:.0f} s CPU)")  # fmt: skip
    return card_path
