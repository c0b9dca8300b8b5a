"""worker.engine.DigitModel: serves the committed model without torch, and names the file on every error."""

import json
import subprocess
import sys

import numpy as np
import pytest

from phonereader import ROOT
from phonereader.modelcard import ModelFileError
from tests.service import copy_model
from worker.engine import DigitModel

CARD = ROOT / "models" / "default.json"


@pytest.fixture
def model_dir(tmp_path):
    copy_model("default", tmp_path)
    return tmp_path


def edit_card(path, **changes):
    raw = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(raw))


def test_predict_proba_is_calibrated_softmax():
    model = DigitModel.load(CARD, runtime="onnx")
    x = np.random.default_rng(0).random((7, 28, 28), dtype=np.float32)
    p = model.predict_proba(x)
    assert p.shape == (7, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    z = model.logits(x) / model.card.temperature
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(x[:, None]), p, atol=1e-6)
    assert model.predict_proba(np.zeros((0, 28, 28), np.float32)).shape == (0, 10)
    assert model.version.startswith("default-") and model.runtime == "onnx"
    with pytest.raises(ValueError, match=r"\(N,28,28\)"):
        model.predict_proba(np.zeros((2, 32, 32), np.float32))


def test_a_second_opinion_reads_only_the_doubtful_crops_and_is_averaged_in(monkeypatch):
    first, second = DigitModel.load(CARD, runtime="onnx"), DigitModel.load(CARD.with_name("lenet5.json"), runtime="onnx")
    third = DigitModel.load(CARD.with_name("mlp.json"), runtime="onnx")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random((20, 28, 28), dtype=np.float32) ** 4, np.zeros((4, 28, 28), np.float32)])
    alone, theirs, thirds = first.predict_proba(x), second.predict_proba(x), third.predict_proba(x)
    doubt = alone.max(1) < 0.99
    assert 0 < doubt.sum() < len(x)  # both kinds of row, or the test proves nothing
    asked = []
    spy = second.predict_proba
    monkeypatch.setattr(second, "predict_proba", lambda d: asked.append(len(d)) or spy(d))
    both = first.with_second_opinion([second], 0.99).predict_proba(x)
    assert asked == [doubt.sum()]
    np.testing.assert_allclose(both[~doubt], alone[~doubt], atol=1e-6)
    mean = np.sqrt(alone[doubt] * theirs[doubt])
    np.testing.assert_allclose(both[doubt], mean / mean.sum(1, keepdims=True), atol=1e-5)
    assert first.version == f"{first.card.version}+{second.card.version}"

    all_three = first.with_second_opinion([second, third], 0.99).predict_proba(x)  # each opinion weighs a third
    mean = np.cbrt((alone[doubt] + 1e-12) * (theirs[doubt] + 1e-12) * (thirds[doubt] + 1e-12))  # 1e-12: no veto
    np.testing.assert_allclose(all_three[doubt], mean / mean.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(all_three[~doubt], alone[~doubt], atol=1e-6)
    assert first.version == f"{first.card.version}+{second.card.version}+{third.card.version}"


def test_a_weighted_second_opinion_weighs_the_votes_and_asks_no_model_without_one(monkeypatch):
    first, second = DigitModel.load(CARD, runtime="onnx"), DigitModel.load(CARD.with_name("lenet5.json"), runtime="onnx")
    third = DigitModel.load(CARD.with_name("mlp.json"), runtime="onnx")
    rng = np.random.default_rng(0)
    x = rng.random((20, 28, 28), dtype=np.float32) ** 4
    alone, theirs, thirds = first.predict_proba(x), second.predict_proba(x), third.predict_proba(x)
    doubt = alone.max(1) < 0.99
    assert 0 < doubt.sum() < len(x)
    asked = []
    monkeypatch.setattr(second, "predict_proba", lambda d: asked.append(len(d)) or theirs[doubt])
    voted = first.with_second_opinion([second, third], 0.99, [0, 0, 2]).predict_proba(x)  # only the third decides
    assert asked == [], "a model with no vote is not asked"
    np.testing.assert_allclose(voted[doubt], thirds[doubt], atol=1e-5)
    np.testing.assert_allclose(voted[~doubt], alone[~doubt], atol=1e-6)
    assert first.version.endswith("@0:0:2"), "a reweighted pairing reads differently: another version"
    voted = first.with_second_opinion([second, third], 0.99, [0, 1, 2]).predict_proba(x)
    mean = (theirs[doubt] + 1e-12) ** (1 / 3) * (thirds[doubt] + 1e-12) ** (2 / 3)
    np.testing.assert_allclose(voted[doubt], mean / mean.sum(1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="need 3 weights"):
        first.with_second_opinion([second, third], 0.99, [1, 1])
    with pytest.raises(ValueError, match="need 3 weights"):
        first.with_second_opinion([second, third], 0.99, [0, 0, 0])


def test_the_card_names_its_second_opinion_and_a_fine_tuned_card_has_none(model_dir):
    from phonereader.config import Settings
    from phonereader.modelcard import load_card

    served = DigitModel.serving(Settings())  # the committed default.json pairs itself with the bigger models
    assert [m.card.name for m in served.second] == ["wide", "deep", "res"] and served.second_below == 0.99
    assert served.second_votes == [0, 1, 1, 2]  # chosen on val: default only decides which crops are doubtful
    assert served.version == "+".join([served.card.version] + [m.card.version for m in served.second]) + "@0:1:1:2"
    assert DigitModel.serving(Settings(second_opinion=False)).second == []
    edit_card(model_dir / "default.json", second_opinion=None)  # what `train --extra` writes: no pairing
    assert DigitModel.serving(Settings(), model_dir / "default.json").second == []
    pairing = {"models": [{"card": "wide.json", "version": "wide-0"}], "below": 0.9}
    edit_card(model_dir / "default.json", second_opinion=pairing)
    with pytest.raises(ModelFileError, match="wide.json.*not found"):
        DigitModel.serving(Settings(), model_dir / "default.json")
    copy_model("wide", model_dir)
    with pytest.raises(ModelFileError, match="paired with wide-0"):
        DigitModel.serving(Settings(), model_dir / "default.json")
    wide = load_card(model_dir / "wide.json").version  # a card paired with one model, as session 10 wrote it
    edit_card(model_dir / "default.json", second_opinion={"card": "wide.json", "version": wide, "below": 0.9})
    assert [m.card.name for m in DigitModel.serving(Settings(), model_dir / "default.json").second] == ["wide"]
    edit_card(model_dir / "default.json", second_opinion={"models": [{"card": "../wide.json", "version": wide}], "below": 0.9})
    with pytest.raises(ModelFileError, match=r"second_opinion\.models\.0\.card"):
        DigitModel.load(model_dir / "default.json")
    edit_card(model_dir / "default.json", second_opinion={"models": [], "below": 0.9})
    with pytest.raises(ModelFileError, match=r"second_opinion\.models"):
        DigitModel.load(model_dir / "default.json")


def test_the_second_opinion_command_pairs_and_unpairs_a_card(model_dir):
    from typer.testing import CliRunner

    from phonereader.cli import app
    from phonereader.config import Settings

    copy_model("wide", model_dir)
    copy_model("lenet5", model_dir)
    card = model_dir / "default.json"
    out = CliRunner().invoke(app, ["second-opinion", str(card)])
    assert out.exit_code == 0, out.output
    assert DigitModel.serving(Settings(), card).second == []
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(model_dir / "wide.json"), "--below", "0.95"])
    assert out.exit_code == 0, out.output
    served = DigitModel.serving(Settings(), card)
    assert [m.card_path for m in served.second] == [model_dir / "wide.json"] and served.second_below == 0.95
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(model_dir / "wide.json"), str(model_dir / "lenet5.json")])
    assert out.exit_code == 0, out.output
    assert [m.card.name for m in DigitModel.serving(Settings(), card).second] == ["wide", "lenet5"]
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(model_dir / "wide.json"), str(model_dir / "lenet5.json"),
                                   "--weights", "0,1,2"])
    assert out.exit_code == 0, out.output
    served = DigitModel.serving(Settings(), card)
    assert served.second_votes == [0, 1, 2] and served.version.endswith("@0:1:2")
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(model_dir / "wide.json"), "--weights", "1,1,1"])
    assert out.exit_code == 1 and "give 2 votes" in out.output
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(CARD.with_name("wide.json"))])
    assert out.exit_code == 1 and "must sit beside" in out.output
    out = CliRunner().invoke(app, ["second-opinion", str(card), str(model_dir / "wide.json"), "--below", "0"])
    assert out.exit_code == 1 and "--below 0.0: must be above 0" in out.output


def test_a_second_opinion_must_share_the_normalisation(model_dir):
    edit_card(model_dir / "default.json", input__normalize_version="0+older")
    older = DigitModel.load(model_dir / "default.json")
    with pytest.raises(ModelFileError, match="normalisation 0\\+older"):
        DigitModel.load(CARD).with_second_opinion([DigitModel.load(CARD.with_name("wide.json")), older], 0.99)


def test_engine_serves_without_torch():
    code = (
        "import sys, numpy as np; sys.modules['torch'] = None\n"  # any torch import would now fail
        "from worker.engine import DigitModel\n"
        f"m = DigitModel.load(r'{CARD}')\n"
        "assert m.runtime == 'onnx', m.runtime\n"
        "print(m.predict_proba(np.zeros((3, 28, 28), np.float32)).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(3, 10)" in out.stdout


def test_missing_card(tmp_path):
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'nope.json'}.*not found"):
        DigitModel.load(tmp_path / "nope.json")


def test_not_json_and_wrong_format(model_dir):
    card = model_dir / "default.json"
    card.write_text("{not json")
    with pytest.raises(ModelFileError, match="default.json.*not a JSON"):
        DigitModel.load(card)
    card.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelFileError, match="default.json.*not a phonereader model card"):
        DigitModel.load(card)


def test_invalid_card_fields(model_dir):
    card = model_dir / "default.json"
    edit_card(card, temperature=-1)
    with pytest.raises(ModelFileError, match="default.json.*invalid model card.*temperature"):
        DigitModel.load(card)


def test_missing_onnx_file(model_dir):
    (model_dir / "default.onnx").unlink()
    with pytest.raises(ModelFileError, match="default.onnx.*not found"):
        DigitModel.load(model_dir / "default.json", runtime="onnx")


def test_weights_not_matching_card(model_dir):
    onnx = model_dir / "default.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelFileError, match="default.onnx.*sha256 does not match"):
        DigitModel.load(model_dir / "default.json", runtime="onnx")


def test_garbage_onnx_with_matching_hash(model_dir):
    from phonereader.modelcard import sha256

    onnx = model_dir / "default.onnx"
    onnx.write_bytes(b"this is not a protobuf")
    edit_card(model_dir / "default.json", files__onnx_sha256=sha256(onnx))
    with pytest.raises(ModelFileError, match="default.onnx.*not a loadable ONNX model"):
        DigitModel.load(model_dir / "default.json", runtime="onnx")


def test_torch_weights_of_another_architecture(model_dir):
    pytest.importorskip("torch")
    edit_card(model_dir / "default.json", hparams__c1=8)
    with pytest.raises(ModelFileError, match="default.safetensors.*do not match the architecture"):
        DigitModel.load(model_dir / "default.json", runtime="torch", device="cpu")
    from phonereader.modelcard import sha256

    (model_dir / "default.safetensors").write_bytes(b"\x00" * 64)
    edit_card(model_dir / "default.json", files__weights_sha256=sha256(model_dir / "default.safetensors"))
    with pytest.raises(ModelFileError, match="default.safetensors.*not a readable safetensors"):
        DigitModel.load(model_dir / "default.json", runtime="torch", device="cpu")


def test_onnx_of_the_wrong_shape(model_dir):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from phonereader.modelcard import sha256

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 784])],
    )  # fmt: skip
    path = model_dir / "default.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    edit_card(model_dir / "default.json", files__onnx_sha256=sha256(path))
    with pytest.raises(ModelFileError, match=r"default.onnx.*expected input \(N,1,28,28\)"):
        DigitModel.load(model_dir / "default.json", runtime="onnx")
