"""Learning from corrections: MNIST plus the users' corrected crops (api.dataset's folder, or its export zip).

The corrections are few (dozens to thousands) and MNIST is 55,000, so they are *oversampled*, but
without moving the class prior: every batch is class-balanced, and within each class that has
corrections a fixed share (``extra_fraction``, default half) is drawn from them with replacement, the
rest from MNIST; both augmented. (Corrections are mostly of one or two digits; a flat 25% share of 1s
would teach the model to say "1" more often and cost it on MNIST.) Fine-tuning from the serving model (``init``) on a small budget (a few
hundred steps, a small learning rate) teaches the new style while the MNIST share keeps the old one.

A deterministic fifth of the corrections (by a hash of the file name, so a sample stays on its side as
the data set grows) is held out: never trained on, only scored by :func:`compare`, which also scores
MNIST test. A new model must not drop on MNIST to win on the corrections.

The crops in ``training/<label>/*.png`` are already model inputs (normalised 28x28), so they are used
as they are, not normalised again.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HOLDOUT_EVERY = 5  # one sample in five (by name hash) is held out
MAX_ZIP_ENTRIES = 200_000
MAX_PNG_BYTES = 1 << 20


class ExtraDataError(ValueError):
    """The extra data set is missing or malformed; the message names the file."""


def _png28(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (28, 28):
                raise ExtraDataError(f"{name}: expected a 28x28 image, got {im.size[0]}x{im.size[1]}")
            return np.asarray(im.convert("L"), np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ExtraDataError(f"{name}: cannot read image ({e})") from None


def load_extra(path: Path | str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 (N,28,28) model inputs, int64 labels and sample names from a corrections folder (its
    ``training/`` folder, or a bare ``0..9/`` folder) or the export zip."""
    path = Path(path)
    entries: list[tuple[str, int, bytes]] = []
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                if len(infos) > MAX_ZIP_ENTRIES:
                    raise ExtraDataError(f"{path}: more than {MAX_ZIP_ENTRIES} entries")
                for info in infos:
                    parts = info.filename.split("/")
                    if len(parts) == 3 and parts[0] == "training" and parts[1].isdigit() and len(parts[1]) == 1 \
                            and parts[2].endswith(".png") and info.file_size <= MAX_PNG_BYTES:
                        entries.append((Path(parts[2]).stem, int(parts[1]), zf.read(info)))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as e:
            raise ExtraDataError(f"{path}: the zip cannot be read ({e})") from None  # bad CRC, zip version, truncation
    elif path.is_dir():
        root = path / "training" if (path / "training").is_dir() else path
        for label in range(10):
            for png in sorted((root / str(label)).glob("*.png")):
                entries.append((png.stem, label, png.read_bytes()))
    else:
        raise ExtraDataError(f"{path}: not a corrections folder or zip")
    if not entries:
        raise ExtraDataError(f"{path}: no samples (expected training/<digit>/*.png)")
    entries.sort(key=lambda e: (e[1], e[0]))
    x = np.stack([_png28(data, f"{path}:{label}/{name}.png") for name, label, data in entries])
    return x, np.array([e[1] for e in entries], np.int64), [e[0] for e in entries]


def is_holdout(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % HOLDOUT_EVERY == 0


def split_extra(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (x float32 [0,1], y), "holdout": (x, y)}, split deterministically by name."""
    x, y, names = load_extra(path)
    hold = np.array([is_holdout(n) for n in names], bool)
    xf = x.astype(np.float32) / 255.0
    return {"train": (xf[~hold], y[~hold]), "holdout": (xf[hold], y[hold])}


@dataclass
class FinetuneConfig:
    extra: Path
    init: Path | None = None  # start from this model card; None: train from scratch (longer budget)
    out: Path = Path("models")
    name: str | None = None  # default: <init name>-ft
    steps: int = 300
    batch_size: int = 128
    extra_fraction: float = 0.5  # share of a class's samples in each batch taken from its corrections
    lr: float = 5e-4
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema: float = 0.98  # decay of the exported weight average
    model: str = "default"  # architecture, when there is no init
    mnist_limit: int | None = None  # draw MNIST from the first N training images only (quick runs, tests)
    val_limit: int | None = None  # temperature and val accuracy on the first N val images
    data: Path | None = None
    seed: int = 0
    device: str = "cpu"


class ClassPool:
    """Indices of a labelled set grouped by class, to draw class-balanced batches."""

    def __init__(self, labels: np.ndarray):
        import torch

        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=10)
        self.order = torch.from_numpy(order)
        self.start = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self.count = torch.from_numpy(counts)
        self.has = self.count > 0

    def draw(self, labels, gen):
        """One random index of each requested class (every requested class must be present)."""
        import torch

        r = torch.rand(len(labels), generator=gen)
        return self.order[self.start[labels] + (r * self.count[labels]).long()]


def finetune(cfg: FinetuneConfig, command: str = "") -> Path:
    """Fine-tune (or train) on MNIST + corrections, recalibrate on MNIST val, export; returns the card path."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from phonereader import ROOT
    from phonereader.modelcard import InputSpec, Metrics, ModelCard, ModelFiles, Training
    from training.augment import AugmentConfig, augment
    from training.calibrate import fit_temperature, nll
    from training.export import load_model, save_model
    from training.models import build_model, count_parameters
    from training.prepared import normalize_version, prepared_split
    from training.train import full_hparams, predict_logits, seed_everything

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    parts = split_extra(cfg.extra)
    xe, ye = parts["train"]
    if len(xe) == 0:
        raise ExtraDataError(f"{cfg.extra}: every sample is in the held-out fifth; collect more corrections")
    xm, ym = prepared_split("train", cfg.data)
    if cfg.mnist_limit:
        xm, ym = xm[: cfg.mnist_limit], ym[: cfg.mnist_limit]
    xv, yv = prepared_split("val", cfg.data)
    if cfg.val_limit:
        xv, yv = xv[: cfg.val_limit], yv[: cfg.val_limit]

    if cfg.init is not None:
        model, base = load_model(cfg.init, device=str(device))
        mean, std, arch, hparams = base.input.mean, base.input.std, base.architecture, base.hparams
        name = cfg.name or f"{base.name}-ft"
    else:
        base, arch = None, cfg.model
        hparams = full_hparams(arch, {})
        model = build_model(arch, **hparams).to(device)
        mean, std = float(xm.mean()), float(xm.std())
        name = cfg.name or f"{arch}-extra"
    out = Path(cfg.out)
    if (out / f"{name}.json").resolve() == (ROOT / "models" / "default.json").resolve():
        raise ValueError("refusing to overwrite the committed model models/default.*; pass another --name or --out")

    xm_t, ym_t = torch.from_numpy(xm).unsqueeze(1).to(device), torch.from_numpy(ym).to(device)
    xe_t, ye_t = torch.from_numpy(xe).unsqueeze(1).to(device), torch.from_numpy(ye).to(device)
    mnist_pool, extra_pool = ClassPool(ym), ClassPool(ye)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    aug = AugmentConfig()
    model.train()
    if base is not None:  # keep the base model's BatchNorm statistics: a short run should not move them
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    # an average of the weights (EMA, as training.train exports) is what we keep: single steps are noisy
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema))
    bar = tqdm(range(cfg.steps), desc="fine-tune" if base else "train", unit="step")
    for step in bar:
        labels = torch.randint(10, (cfg.batch_size,), generator=gen)
        from_extra = (torch.rand(cfg.batch_size, generator=gen) < cfg.extra_fraction) & extra_pool.has[labels]
        i = mnist_pool.draw(labels[~from_extra], gen).to(device)
        j = extra_pool.draw(labels[from_extra], gen).to(device)
        x = augment(torch.cat([xm_t[i], xe_t[j]]), aug, aug_gen)
        y = torch.cat([ym_t[i], ye_t[j]])
        loss = F.cross_entropy(model((x - mean) / std), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update_parameters(model)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    model = ema.module.eval()

    x_val, y_val = torch.from_numpy(xv), torch.from_numpy(yv)
    val_logits = predict_logits(model, x_val, mean, std)
    temperature = fit_temperature(val_logits, y_val)
    held_x, held_y = parts["holdout"]
    metrics = Metrics(val_accuracy=float((val_logits.argmax(1) == y_val).float().mean()),
                      val_nll_before=nll(val_logits, y_val), val_nll_after=nll(val_logits, y_val, temperature))
    if len(held_y):
        metrics.extra_holdout_accuracy = float(
            (predict_logits(model, torch.from_numpy(held_x), mean, std).argmax(1).numpy() == held_y).mean())
    seconds = time.perf_counter() - t0
    card = ModelCard(
        name=name, architecture=arch, hparams=hparams, parameters=count_parameters(model),
        input=InputSpec(mean=mean, std=std, normalize_version=base.input.normalize_version if base else normalize_version()),
        temperature=temperature, files=ModelFiles(weights="", weights_sha256=""), metrics=metrics,
        training=Training(
            command=command or f"finetune {shlex.quote(str(cfg.extra))}",
            hyperparameters={"steps": cfg.steps, "batch_size": cfg.batch_size, "extra_fraction": cfg.extra_fraction,
                             "lr": cfg.lr, "schedule": "cosine", "optimizer": "AdamW", "seed": cfg.seed,
                             "mnist_limit": cfg.mnist_limit, "init": base.version if base else None,
                             "extra": str(cfg.extra), "extra_train": int(len(ye)), "extra_holdout": int(len(held_y))},
            seconds=round(seconds, 1), device=str(device), data_dir=str(cfg.data) if cfg.data else None,
            torch_version=torch.__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
    )
    card_path = save_model(model.cpu(), card, out)
    held = getattr(metrics, "extra_holdout_accuracy", None)
    tqdm.write(f"saved {card_path}: {len(ye)} corrections (+{len(held_y)} held out) at {cfg.extra_fraction:.0%} of "
               f"their classes, {cfg.steps} steps, val acc {metrics.val_accuracy:.4%}"
               + (f", held-out corrections {held:.2%}" if held is not None else "") + f", {seconds:.0f} s")
    return card_path


def deploy(card_path: Path | str, target: Path | str) -> Path:
    """Put a model where workers serve it (``target`` = their PHONEREADER_MODEL_PATH) so that they reload
    it (worker.reload): the weights go first, under their own names, and the card last, atomically."""
    import shutil

    from phonereader.modelcard import load_card

    card_path, target = Path(card_path), Path(target)
    card = load_card(card_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for f in (card.files.weights, card.files.onnx):
        if f and (card_path.parent / f).resolve() != (target.parent / f).resolve():
            shutil.copyfile(card_path.parent / f, target.parent / f)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(card_path, tmp)
    os.replace(tmp, target)
    return target


def accuracy(card_path: Path | str, x: np.ndarray, y: np.ndarray) -> float:
    """Through the serving path (worker.engine.DigitModel), as the service reads."""
    from worker.engine import DigitModel

    if len(y) == 0:
        return float("nan")
    return float((DigitModel.load(card_path, device="cpu").logits(x).argmax(1) == y).mean())


def compare(model: Path, extra: Path | None = None, baseline: Path | None = None, data: Path | None = None,
            limit: int | None = None) -> dict:
    """MNIST test accuracy and held-out corrections accuracy, for the model and (optionally) a baseline."""
    from training.prepared import prepared_split

    xt, yt = prepared_split("test", data)
    if limit:
        xt, yt = xt[:limit], yt[:limit]
    held = split_extra(extra)["holdout"] if extra else None
    rows = {}
    for label, card in (("model", model), ("baseline", baseline)):
        if card is None:
            continue
        row = {"card": str(card), "mnist_test": accuracy(card, xt, yt)}
        if held is not None:
            row["extra_holdout"] = accuracy(card, *held)
            row["extra_holdout_n"] = int(len(held[1]))
        rows[label] = row
    if baseline is not None:
        rows["mnist_drop_points"] = 100 * (rows["baseline"]["mnist_test"] - rows["model"]["mnist_test"])
    return rows
