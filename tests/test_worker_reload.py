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


class PairedModel(CardModel):
    """A card ``"v1 p1"`` paired with a partner card that must read ``p1``, as the served card records
    each second-opinion partner's version (worker.engine refuses a mismatch)."""

    def __init__(self, card_path, partner_path):
        self.card_path = card_path
        own, wanted = open(card_path).read().split()
        got = open(partner_path).read()
        if got != wanted:
            raise ValueError(f"{partner_path}: is {got}, but the card was paired with {wanted}")
        self.version, self.digit = f"{own}+{got}", int(own[1:]) % 10
        self.second = [CardModel.__new__(CardModel)]
        self.second[0].card_path = partner_path


def test_a_partner_replaced_alone_is_noticed_and_refused(tmp_path, caplog):
    card, partner = tmp_path / "model.json", tmp_path / "wide.json"
    write(card, "v1 p1", 0)
    write(partner, "p1", 0)
    load = lambda: PairedModel(card, partner)  # noqa: E731
    watcher = ModelWatcher(load(), load, check_s=1e-9)
    crops = np.zeros((2, 28, 28), np.float32)

    write(partner, "p2", 10**9)  # the partner alone: the served card still names p1
    assert watcher.predict(crops).model_version == "v1+p1"
    assert "does not load" in caplog.text and "paired with p1" in caplog.text

    write(card, "v2 p2", 2 * 10**9)  # re-paired: now it loads
    p = watcher.predict(crops)
    assert p.model_version == "v2+p2" and p.argmax(1).tolist() == [2, 2]
