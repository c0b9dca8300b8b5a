"""Serving side of the touching-pair model (training/pairs.py): ONNX Runtime on the CPU, loaded once.

It reads the same normalised 28x28 crops as the digit model (a blob's whole-blob row of Field.crops),
so it needs no extra cutting; read() calls it only for lines whose default reading is not a valid
number, on the few blobs that may be touching pairs. The card is JSON and both weight files are
checked against its sha256, as for the digit model; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phonereader.modelcard import checked_file, read_card_json
from worker.engine import onnx_session, softmax

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
        card = read_card_json(card_path, FORMAT)
        files = card["files"]
        sess = onnx_session(checked_file(card_path, files["onnx"], files["onnx_sha256"], "onnx"), threads)
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
        return (z[:, 1] - z[:, 0]).astype(np.float32), softmax(z[:, 2:12] / t), softmax(z[:, 12:22] / t)
