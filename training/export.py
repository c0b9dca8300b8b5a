"""Write a trained model as safetensors + ONNX + JSON card, and read it back without unpickling.

The ONNX graph has BatchNorm folded into the convs and a dynamic batch axis, so the CPU worker runs it
as is. The card records sha256 of both files: a card never silently pairs with another model's weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from phonereader.modelcard import ModelCard, ModelFileError, load_card, model_file, save_card, sha256
from training.models import build_model, fuse_for_inference

OPSET = 17


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export a BN-folded eval copy; input 'digits' (N,1,28,28) already mean/std-normalised, output 'logits'."""
    fused = fuse_for_inference(model).cpu()
    dummy = torch.zeros(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fused, (dummy,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["digits"], output_names=["logits"],
            dynamic_axes={"digits": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip


def save_model(model: nn.Module, card: ModelCard, out_dir: Path) -> Path:
    """Write <name>.safetensors, <name>.onnx and <name>.json into out_dir; returns the card path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, onnx_path = out_dir / f"{card.name}.safetensors", out_dir / f"{card.name}.onnx"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"architecture": card.architecture})
    weights.chmod(0o644)  # safetensors writes 0600; the committed model must be readable by workers
    export_onnx(model, onnx_path)
    card.files.weights, card.files.weights_sha256 = weights.name, sha256(weights)
    card.files.onnx, card.files.onnx_sha256 = onnx_path.name, sha256(onnx_path)
    card_path = out_dir / f"{card.name}.json"
    save_card(card, card_path)
    return card_path


def load_model(card_path: Path | str, device: str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the architecture the card names and load its safetensors weights (eval mode)."""
    card = load_card(card_path)
    weights = model_file(card_path, card, "weights")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{weights}: not a readable safetensors file ({e})") from None
    try:
        model = build_model(card.architecture, **card.hparams)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise ModelFileError(f"{weights}: weights do not match the architecture in {card_path} ({first})") from None
    return model.to(device).eval(), card
