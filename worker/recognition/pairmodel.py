"""Serving side of the touching-pair model (training/pairs.py): ONNX Runtime on the CPU, loaded once.

It reads the same normalised 28x28 crops as the digit model (a blob's whole-blob row of Field.crops),
so it needs no extra cutting; read() calls it only for lines whose default reading is not a valid
number, on the few blobs that may be touching pairs. The card is JSON and both weight files are
checked against its sha256, as for the digit model; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phonereader.modelcard import ModelFileError, read_card_json, sha256

FORMAT = "phonereader-pair-model/1"


class PairModel:
    """log P(pair) - log P(one digit) for normalised crops of whole blobs."""

    def __init__(self, card: dict, run):
        self.card = card
        self.mean, self.std = float(card["input"]["mean"]), float(card["input"]["std"])
        self._run = run

    @property
    def version(self) -> str:
        return f"{self.card['name']}-{self.card['files']['onnx_sha256'][:10]}"

    @classmethod
    def load(cls, card_path: Path | str, threads: int | None = 1) -> PairModel:
        """One intra-op thread by default: its batches are a handful of crops, where threads only cost."""
        import onnxruntime as ort

        card_path = Path(card_path)
        card = read_card_json(card_path, FORMAT)
        path = card_path.parent / card["files"]["onnx"]
        if not path.is_file():
            raise ModelFileError(f"{path}: ONNX file named by {card_path} not found")
        if sha256(path) != card["files"]["onnx_sha256"]:
            raise ModelFileError(f"{path}: sha256 does not match {card_path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return cls(card, lambda x: sess.run(None, {name: x})[0])

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 28, 28) normalised crops of whole blobs -> log-odds that each is two touching digits (N,),
        and, were it a pair, calibrated probabilities of its left and of its right digit (N, 10) each."""
        x = np.asarray(crops, np.float32)
        if len(x) == 0:
            return np.zeros(0, np.float32), np.zeros((0, 10), np.float32), np.zeros((0, 10), np.float32)
        z = self._run(np.ascontiguousarray((x[:, None] - self.mean) / self.std, dtype=np.float32))
        t = float(self.card.get("temperature", 1.0))
        return (z[:, 1] - z[:, 0]).astype(np.float32), _softmax(z[:, 2:12] / t), _softmax(z[:, 12:22] / t)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
