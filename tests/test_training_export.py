"""A short training run on a small generated set: it learns, exports, and reloads identically everywhere."""

import json

import numpy as np
import pytest
import torch

from phonereader.modelcard import load_card
from training.export import load_model
from training.prepared import prepared_split
from training.toydata import write_png_set
from training.train import TrainConfig, train
from worker.engine import DigitModel


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_png_set(tmp_path_factory.mktemp("digits"), n_train=1000, n_test=200)
    return train(toy_config(root, tmp_path_factory.mktemp("model")), command="pytest"), root


def toy_config(root, out):
    """Two epochs and a one-epoch polish on 800 rendered digits: seconds, and every stage runs."""
    return TrainConfig(model="default", epochs=2, polish_epochs=1, batch_size=64, polish_batch_size=64,
                       data=root, val_size=200, seed=3, out=out, name="toy")  # fmt: skip


def test_short_training_beats_chance_by_far(trained):
    card = load_card(trained[0])
    assert card.metrics.val_accuracy > 0.6 and card.metrics.test_accuracy > 0.6  # chance is 0.1
    assert len(card.training.history) == 3 and card.training.history[-1]["stage"] == "polish"
    assert card.training.best_epoch == 3  # the polish epoch is what gets exported
    assert card.temperature > 0 and card.input.std > 0 and card.training.command == "pytest"


def test_export_reloads_identically_in_torch_and_onnx(trained):
    card_path, root = trained
    x, _ = prepared_split("test", root)
    model, card = load_model(card_path)
    with torch.no_grad():
        ref = model(torch.from_numpy((x[:, None] - card.input.mean) / card.input.std)).numpy()
    onnx = DigitModel.load(card_path, runtime="onnx")
    torch_rt = DigitModel.load(card_path, runtime="torch", device="cpu")
    np.testing.assert_allclose(onnx.logits(x), ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(torch_rt.logits(x), ref, atol=1e-4, rtol=1e-4)
    p = onnx.predict_proba(x[:, None])  # (N,1,28,28) works as well as (N,28,28)
    np.testing.assert_allclose(p, torch.softmax(torch.from_numpy(ref) / card.temperature, 1).numpy(), atol=1e-5)
    assert onnx.version == torch_rt.version == f"toy-{card.files.weights_sha256[:10]}"


def test_training_is_deterministic_under_seed(trained, tmp_path):
    card_path, root = trained
    again = train(toy_config(root, tmp_path), command="pytest")
    assert load_card(again).files.weights_sha256 == load_card(card_path).files.weights_sha256


def test_card_records_what_the_issue_asks_for(trained):
    raw = json.loads(trained[0].read_text())
    for key in ("architecture", "hparams", "input", "classes", "temperature", "metrics", "training", "files"):
        assert key in raw
    assert {"mean", "std", "normalize_version"} <= raw["input"].keys()
    assert raw["files"]["onnx"] == "toy.onnx" and raw["training"]["hyperparameters"]["label_smoothing"] > 0
