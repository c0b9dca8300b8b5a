"""The committed default model: its card is consistent, and it reaches 99.6% on MNIST test via the serving path."""

import pytest

from phonereader import ROOT
from phonereader.config import Settings
from phonereader.modelcard import load_card, model_file
from training import data
from training.prepared import normalize_version, prepared_split
from worker.engine import DigitModel

CARD = ROOT / "models" / "default.json"


def test_card_is_consistent_with_its_files():
    card = load_card(CARD)
    assert model_file(CARD, card, "weights").stat().st_size < 5_000_000  # small enough to commit
    assert model_file(CARD, card, "onnx").is_file()
    assert card.architecture == "default" and card.temperature > 0
    assert card.input.normalize_version.split("+")[0] == normalize_version().split("+")[0]


def test_default_model_reaches_99_6_on_mnist_test():
    root = Settings().mnist_dir
    if not all((root / name).is_file() for name in data.FILES):
        pytest.skip(f"MNIST test files not in {root} (Settings().mnist_dir)")
    x, y = prepared_split("test", root, cache=False)  # normalize_digit, exactly as served
    accuracy = float((DigitModel.load(CARD, runtime="onnx").predict_proba(x).argmax(1) == y).mean())
    assert accuracy >= 0.996, f"test accuracy {accuracy:.4%}"
