"""The one object that owns a loaded digit model for serving: ONNX Runtime on CPU, or torch on CUDA.

Workers build it once (``DigitModel.load``) and push batches of normalised digits through it. No torch
import at module level: CPU workers run ONNX Runtime without torch installed. Nothing is unpickled:
the card is JSON, the weights are ONNX or safetensors, each checked against the card's sha256.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
from pathlib import Path
from typing import Literal

import numpy as np

from phonereader.modelcard import ModelCard, ModelFileError, load_card, model_file

log = logging.getLogger(__name__)
Runtime = Literal["auto", "onnx", "torch"]


def _cuda_available() -> bool:
    """Look for an NVIDIA device before importing torch: the import alone costs a CPU worker ~650 MB.
    (Where GPUs have no /dev/nvidia* node, e.g. WSL, set the device to cuda explicitly.)"""
    if importlib.util.find_spec("torch") is None or not glob.glob("/dev/nvidia[0-9]*"):
        return False
    import torch

    return torch.cuda.is_available()


class DigitModel:
    """Calibrated digit probabilities from normalised 28x28 digits (white on black, in [0, 1])."""

    def __init__(self, card: ModelCard, card_path: Path, runtime: str, device: str, run):
        self.card, self.card_path, self.runtime, self.device = card, card_path, runtime, device
        self._run = run  # (N,1,28,28) float32, mean/std-normalised -> (N,10) float32 logits
        self.second: list[DigitModel] = []  # the second opinion: see with_second_opinion
        self.second_below = 0.0
        self.second_votes: list[float] = []  # their votes on a doubtful crop, this model's first

    @property
    def version(self) -> str:
        names = "+".join([self.card.version] + [m.card.version for m in self.second])
        votes = self.second_votes
        # the same models voting differently read differently: a reweighted pairing is a new version
        return names if len(set(votes)) <= 1 else names + "@" + ":".join(f"{w:g}" for w in votes)

    @classmethod
    def serving(cls, settings, card_path: Path | str | None = None, device: str | None = None,
                runtime: Runtime | None = None, threads: int | None = None) -> "DigitModel":
        """The model a worker serves: the card at ``settings.model_path`` (or ``card_path``), with the
        second opinion its card names (unless ``settings.second_opinion`` is off)."""
        model = cls.load(card_path or settings.model_path, device or settings.device, runtime or settings.runtime, threads)
        pairing = model.card.second_opinion
        if pairing and settings.second_opinion:
            others = []
            for paired in pairing.models:
                other = cls.load(model.card_path.parent / paired.card, model.device, model.runtime, threads)
                if other.version != paired.version:
                    raise ModelFileError(f"{other.card_path}: is {other.version}, but {model.card_path} was paired "
                                         f"with {paired.version}")
                others.append(other)
            model.with_second_opinion(others, pairing.below, [pairing.own_weight] + [m.weight for m in pairing.models])
        return model

    def with_second_opinion(self, others: list["DigitModel"], below: float,
                            weights: list[float] | None = None) -> "DigitModel":
        """Crops this model is less than ``below`` sure of are also read by ``others`` (bigger models,
        too slow to read every crop), and the opinions are averaged, weighted by ``weights`` (this
        model's first; default: equal). Most crops are clear, so the cost is a few percent of the bigger
        models'; the doubtful ones are where the errors are, and models trained apart misread different
        ones. The more robust models deserve the larger votes on the distorted crops where doubt lives."""
        for other in others:
            if other.card.input.normalize_version != self.card.input.normalize_version:
                raise ModelFileError(
                    f"{other.card_path}: trained on normalisation {other.card.input.normalize_version}, "
                    f"but {self.card_path} on {self.card.input.normalize_version}")
        votes = [1.0] * (len(others) + 1) if weights is None else [float(w) for w in weights]
        if len(votes) != len(others) + 1 or min(votes) < 0 or sum(votes) <= 0:
            raise ValueError(f"need {len(others) + 1} weights >= 0 (this model's first), not {votes}")
        self.second, self.second_below, self.second_votes = list(others), below, votes
        return self

    @classmethod
    def load(cls, card_path: Path | str, device: str = "auto", runtime: Runtime = "auto", threads: int | None = None) -> "DigitModel":
        """Open the card and its weights. 'auto' = torch on CUDA when present, else ONNX Runtime on CPU
        (the faster CPU runtime in ``phonereader bench model``). ``threads`` caps ONNX Runtime's intra-op
        threads (default: its own choice, one per core)."""
        card_path = Path(card_path)
        card = load_card(card_path)
        if runtime not in ("auto", "onnx", "torch"):
            raise ValueError(f"runtime must be auto, onnx or torch, not {runtime!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
        if runtime == "auto":
            runtime = "torch" if device != "cpu" and _cuda_available() else "onnx"
        if runtime == "onnx":
            if device == "cuda":
                raise ValueError("runtime 'onnx' serves on the CPU; use runtime 'torch' for device 'cuda'")
            return cls(card, card_path, "onnx", "cpu", _onnx_runner(card_path, card, threads))
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        return cls(card, card_path, "torch", device, _torch_runner(card_path, device))

    def logits(self, digits: np.ndarray) -> np.ndarray:
        """(N,28,28) or (N,1,28,28) float32 in [0,1] -> raw logits (N,10)."""
        x = np.asarray(digits, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected digits of shape (N,28,28) or (N,1,28,28), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, 10), np.float32)
        x = (x - self.card.input.mean) / self.card.input.std
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def predict_proba(self, digits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities softmax(logits / T), (N,10) float32; rows sum to 1. With a second
        opinion, the doubtful rows are the geometric mean of all the models' calibrated probabilities."""
        probs = softmax(self.logits(digits) / self.card.temperature)
        if not self.second:
            return probs
        doubt = probs.max(axis=1) < self.second_below
        if doubt.any():
            doubtful = np.asarray(digits)[doubt]
            own, *votes = np.asarray(self.second_votes) / sum(self.second_votes)
            logs = own * np.log(probs[doubt] + 1e-12)
            for w, m in zip(votes, self.second):
                if w > 0:  # a model without a vote is not asked
                    logs = logs + w * np.log(m.predict_proba(doubtful) + 1e-12)
            probs[doubt] = softmax(logs)
        return probs


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float32."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def onnx_session(path: Path, threads: int | None):
    """An ONNX Runtime CPU session; a file it cannot load is a ModelFileError naming the file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types; all mean "bad file"
        raise ModelFileError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None


def _onnx_runner(card_path: Path, card: ModelCard, threads: int | None):
    path = model_file(card_path, card, "onnx")
    sess = onnx_session(path, threads)
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, 28, 28] or list(outputs[0].shape[1:]) != [10]:
        raise ModelFileError(
            f"{path}: expected input (N,1,28,28) and output (N,10), found {inputs[0].shape} -> {outputs[0].shape}"
        )
    name = inputs[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _torch_runner(card_path: Path, device: str):
    import torch

    from training.export import load_model
    from training.models import fuse_for_inference

    model = fuse_for_inference(load_model(card_path, device=device)[0])  # BN folded, as in the ONNX graph

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run
