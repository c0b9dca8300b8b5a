"""Hot model reload: a worker picks up a new model between batches, without a restart or a lost job.

The batcher thread is the only caller of the model. Before each forward pass it asks
:meth:`ModelWatcher.predict` to look (at most every ``model_reload_s``) at the file signature (mtime,
size) of the model card and of its second opinion's cards; when one changed it loads the new model
*beside* the old one and swaps only once the load succeeded. A half-written or broken model (a card
whose sha256 does not match its weights yet) is logged and the old model keeps serving; the next check
tries again. So deploying a model is: write ``NAME.onnx``/``NAME.safetensors`` first, then replace
``NAME.json`` (atomically, by rename) at the path the workers serve (``PHONEREADER_MODEL_PATH``). A
second-opinion partner replaced alone is noticed too: the served card records each partner's version,
so the load fails, the old models keep serving and the log says why, instead of the mismatch surfacing
only at the next restart.

Every batch's probabilities carry the version of the model that produced them (:class:`Probs`), so
each result records the right model even when a swap happens between its batch and its reading.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


class Probs(np.ndarray):
    """Probabilities that remember which model produced them (kept through slicing and splitting)."""

    model_version: str = ""

    def __array_finalize__(self, obj) -> None:
        self.model_version = getattr(obj, "model_version", "")


def tagged(probs: np.ndarray, version: str) -> Probs:
    out = np.asarray(probs).view(Probs)
    out.model_version = version
    return out


def _stat(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _watched(model) -> list:
    """The served card and its second opinion's cards."""
    paths = [getattr(model, "card_path", None)] + [getattr(m, "card_path", None) for m in getattr(model, "second", [])]
    return [p for p in paths if p is not None]


def _signature(paths: list) -> tuple | None:
    """None while the served card itself is missing (mid-deploy): nothing to load yet."""
    sigs = tuple(_stat(p) for p in paths)
    return None if not paths or sigs[0] is None else sigs


class ModelWatcher:
    """Owns the serving model; ``predict`` is what the batcher calls."""

    def __init__(self, model, load: Callable[[], object] | None, check_s: float,
                 on_swap: Callable[[object], None] | None = None):
        self.model, self.load, self.check_s, self.on_swap = model, load, check_s, on_swap
        self.path = getattr(model, "card_path", None)
        self._seen = _signature(_watched(model))
        self._next = time.monotonic() + check_s
        self._lock = threading.Lock()

    def predict(self, crops: np.ndarray) -> Probs:
        self.maybe_reload()
        model = self.model
        return tagged(model.predict_proba(crops), model.version)

    def maybe_reload(self, force: bool = False) -> bool:
        """Swap in the model at the card path if its card or a partner's changed; True when a new model now serves."""
        if self.load is None or self.path is None or (not force and (self.check_s <= 0 or time.monotonic() < self._next)):
            return False
        with self._lock:
            self._next = time.monotonic() + self.check_s
            sig = _signature(_watched(self.model))
            if sig is None or (sig == self._seen and not force):
                return False
            try:
                new = self.load()
            except Exception as e:  # a half-deployed or broken model: keep serving the old one
                log.warning("model at %s changed but does not load (%s); still serving %s", self.path, e,
                            self.model.version)
                return False
            # the signature taken before the load, so a card written during it is seen next time; a new
            # pairing's other cards are looked at now
            paths = _watched(new)
            self._seen = sig if paths == _watched(self.model) else _signature(paths)
            if new.version == self.model.version:
                return False
            old, self.model = self.model, new
            log.info("model reloaded: %s -> %s", old.version, new.version)
        if self.on_swap is not None:
            self.on_swap(new)
        return True
