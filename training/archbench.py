"""How fast candidate ``default`` widths run in ONNX Runtime at batch 256, before training any of them.

Throughput on 2 CPU cores is the hard budget, and untrained nets run exactly as fast as trained ones,
so this finds the budget in a minute: ``python -m training.archbench``. Rounds interleave candidates,
so a noisy neighbour slows all of them alike; the median of the rounds is printed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

CANDIDATES = {
    "c8-16-32": dict(c1=8, c2=16, c3=32, head=0),
    "c16-32-48": dict(c1=16, c2=32, c3=48, head=0),
    "c16-32-64": dict(c1=16, c2=32, c3=64, head=0),
    "c16-32-64 h64 (chosen)": dict(c1=16, c2=32, c3=64, head=64),
    "c16-32-64 h128": dict(c1=16, c2=32, c3=64, head=128),
    "c16-48-64 h64": dict(c1=16, c2=48, c3=64, head=64),
    "c24-48-64 h64": dict(c1=24, c2=48, c3=64, head=64),
    "c32-64-64 h64": dict(c1=32, c2=64, c3=64, head=64),
}


def session(onnx_path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def digits_per_s(sess, x: np.ndarray, seconds: float) -> float:
    for _ in range(2):
        sess.run(None, {"digits": x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {"digits": x})
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def main(rounds: int = 6, seconds: float = 0.4, batch: int = 256) -> None:
    from training.export import export_onnx
    from training.models import DigitCNN, LeNet5, count_parameters

    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    nets = {"lenet5": LeNet5()} | {k: DigitCNN(**v) for k, v in CANDIDATES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, net in nets.items():
            export_onnx(net, Path(tmp) / "m.onnx")
            sessions[name] = session(Path(tmp) / "m.onnx")
        speed = {name: [] for name in nets}
        for _ in range(rounds):
            for name, sess in sessions.items():
                speed[name].append(digits_per_s(sess, x, seconds))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"ONNX Runtime, 2 threads, batch {batch}, median (max) of {rounds} interleaved rounds; load average {load}")
    for name, net in nets.items():
        print(f"{name:24s} {count_parameters(net):>8,d} params  {np.median(speed[name]):>9,.0f} ({max(speed[name]):,.0f}) digits/s")


if __name__ == "__main__":
    main()
