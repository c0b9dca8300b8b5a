"""worker.reload: a new model is picked up between batches, a broken one never replaces a working one, and
every batch's probabilities name the model that produced them (through the real DynamicBatcher)."""

from __future__ import annotations

import os
import time

import numpy as np

from worker.batcher import DynamicBatcher
from worker.reload import ModelWatcher


class CardModel:
    """Answers its own digit for every crop; its version is the card file's text."""

    def __init__(self, card_path):
        self.card_path = card_path
        text = open(card_path).read()
        if not text.startswith("v"):
            raise ValueError(f"{card_path}: broken card")
        self.version, self.digit = text, int(text[1:]) % 10

    def predict_proba(self, crops):
        return np.eye(10, dtype=np.float32)[[self.digit] * len(crops)]


def write(path, text, bump_ns):
    path.write_text(text)
    os.utime(path, ns=(time.time_ns() + bump_ns, time.time_ns() + bump_ns))  # mtime granularity


def test_new_model_between_batches_and_broken_model_ignored(tmp_path):
    card = tmp_path / "model.json"
    write(card, "v1", 0)
    watcher = ModelWatcher(CardModel(card), lambda: CardModel(card), check_s=0.0 + 1e-9)
    batcher = DynamicBatcher(watcher.predict, max_size=8, max_delay_s=0.0)
    crops = np.zeros((3, 28, 28), np.float32)
    p = batcher.predict(crops, timeout=5)
    assert p.model_version == "v1" and p.argmax(1).tolist() == [1, 1, 1]

    write(card, "broken", 10**9)  # half-deployed: keeps serving v1
    p = batcher.predict(crops, timeout=5)
    assert p.model_version == "v1" and watcher.model.version == "v1"

    write(card, "v2", 2 * 10**9)
    p = batcher.predict(crops, timeout=5)
    assert p.model_version == "v2" and p.argmax(1).tolist() == [2, 2, 2]
    assert np.split(p, [1])[1].model_version == "v2"  # rows handed back per caller keep the tag
    batcher.stop()


def test_no_reload_when_disabled(tmp_path):
    card = tmp_path / "model.json"
    write(card, "v1", 0)
    swapped = []
    watcher = ModelWatcher(CardModel(card), lambda: CardModel(card), check_s=0, on_swap=swapped.append)
    write(card, "v2", 10**9)
    assert watcher.predict(np.zeros((1, 28, 28), np.float32)).model_version == "v1" and not swapped
    assert watcher.maybe_reload(force=True) and swapped[0].version == "v2"
