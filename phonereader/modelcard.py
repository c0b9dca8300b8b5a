"""The model card: the JSON file that describes one trained digit model and names its weight files.

Workers, the gateway and the evaluation report all start from this file, so loading it validates
everything it promises (schema, files present, file hashes) and every error names the file at fault.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT = "phonereader-digit-model/1"


class ModelFileError(RuntimeError):
    """A model card or one of its files is missing, malformed or does not match; the message names it."""


class InputSpec(BaseModel):
    """What the network expects: normalize_digit output, then (x - mean) / std."""

    shape: tuple[int, int, int] = (1, 28, 28)
    mean: float
    std: float = Field(gt=0)
    normalize_version: str = Field(description="phonereader.normalize version the model was trained with.")


class ModelFiles(BaseModel):
    weights: str = Field(description="safetensors file, relative to the card.")
    weights_sha256: str
    onnx: str | None = Field(None, description="ONNX export, relative to the card.")
    onnx_sha256: str | None = None


class PairedModel(BaseModel):
    """One model of a second opinion, pinned to its version: a retrained one is not paired silently."""

    model_config = ConfigDict(extra="forbid")
    card: str = Field(pattern=r"^[\w.-]+\.json$", description="The other model's card, a file beside this one.")
    version: str = Field(description="The other model's version.")
    weight: float = Field(1.0, ge=0, description="Its vote on a doubtful crop, beside the others' (a weighted geometric mean).")


class SecondOpinion(BaseModel):
    """Bigger models this one defers to on the crops it doubts (worker.engine.DigitModel.serving).

    It belongs to the card, not the settings: the pairing and its threshold were judged for these
    models, and a model fine-tuned on users' corrections must not be outvoted by ones that were not.
    """

    model_config = ConfigDict(extra="forbid")
    models: list[PairedModel] = Field(min_length=1, description="Read the doubtful crops too.")
    below: float = Field(gt=0, le=1, description="Crops whose top probability is below this are also read by them.")
    own_weight: float = Field(1.0, ge=0, description="This model's own vote on the crops it doubts (0: the others decide).")

    @model_validator(mode="after")
    def _someone_votes(self):
        if self.own_weight + sum(m.weight for m in self.models) <= 0:
            raise ValueError("a second opinion needs a vote above 0 somewhere")
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_model(cls, data):
        """A card paired before a second opinion could hold several models names its one model as
        ``card`` + ``version``: read it as a list of one."""
        if isinstance(data, dict) and "card" in data:
            data = {k: v for k, v in data.items() if k not in ("card", "version")} | {
                "models": [{"card": data["card"], "version": data.get("version")}]}
        return data


class Metrics(BaseModel):
    model_config = ConfigDict(extra="allow")
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    val_nll_before: float | None = None
    val_nll_after: float | None = None


class Training(BaseModel):
    model_config = ConfigDict(extra="allow")
    command: str = ""
    hyperparameters: dict = Field(default_factory=dict)
    seconds: float | None = None
    device: str | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    history: list[dict] = Field(default_factory=list, description="Per-epoch loss and accuracy, for curves.")
    data_dir: str | None = None
    data_md5: dict[str, str] = Field(default_factory=dict)
    torch_version: str | None = None
    created: str | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    name: str
    architecture: str = Field(description="A name in training.models.ARCHITECTURES.")
    hparams: dict = Field(default_factory=dict, description="Keyword arguments of the architecture.")
    parameters: int = 0
    classes: list[str] = Field(default_factory=lambda: [str(d) for d in range(10)])
    input: InputSpec
    temperature: float = Field(1.0, gt=0)
    files: ModelFiles
    metrics: Metrics = Field(default_factory=Metrics)
    second_opinion: SecondOpinion | None = None
    training: Training = Field(default_factory=Training)

    @property
    def version(self) -> str:
        """Short and unique per weights: results say which model read them."""
        return f"{self.name}-{self.files.weights_sha256[:10]}"


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_card_json(path: Path | str, fmt: str = FORMAT) -> dict:
    """A card's JSON, checked to be of format ``fmt``; a missing file or bad JSON names the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model card not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a JSON model card ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise ModelFileError(f"{path}: not a phonereader model card (expected format {fmt!r})")
    return raw


def load_card(path: Path | str) -> ModelCard:
    """Read and validate a card; a missing file, bad JSON or a schema violation names the file."""
    path = Path(path)
    raw = read_card_json(path)
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ModelFileError(f"{path}: invalid model card: {problems}") from None
    if len(card.classes) != 10:
        raise ModelFileError(f"{path}: expected 10 classes, found {len(card.classes)}")
    return card


def model_file(card_path: Path | str, card: ModelCard, kind: str) -> Path:
    """Path of the card's ``weights`` or ``onnx`` file, checked to exist and to match its recorded sha256."""
    return checked_file(card_path, getattr(card.files, kind), getattr(card.files, f"{kind}_sha256"), kind)


def checked_file(card_path: Path | str, name: str | None, expected: str | None, kind: str) -> Path:
    """The file ``name`` beside the card, checked to exist and to match ``expected`` (its sha256, when the
    card records one). Any card format: the digit model's and the touching-pair model's."""
    card_path = Path(card_path)
    if not name:
        raise ModelFileError(f"{card_path}: the card names no {kind} file")
    path = card_path.parent / name
    if not path.is_file():
        raise ModelFileError(f"{path}: {kind} file named by {card_path} not found")
    if expected and sha256(path) != expected:
        raise ModelFileError(f"{path}: sha256 does not match {card_path}; the card and its {kind} file are from different models")
    return path


def save_card(card: ModelCard, path: Path | str) -> None:
    Path(path).write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
