"""Every model by name: logits of the right shape; BN folding and augmentation keep their promises."""

import pytest
import torch

from training.augment import AugmentConfig, augment
from training.models import ARCHITECTURES, build_model, fuse_for_inference


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_output_shapes(name):
    model = build_model(name).eval()
    for n in (1, 5):
        out = model(torch.rand(n, 1, 28, 28))
        assert out.shape == (n, 10) and out.dtype == torch.float32
    assert not any(isinstance(m, torch.nn.Sigmoid | torch.nn.Softmax) for m in model.modules())  # logits out


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="resnet.*mlp, lenet5, default"):
        build_model("resnet")


@pytest.mark.parametrize("name", ["default", "res"])  # res: a BatchNorm before a residual add, not a ReLU
def test_bn_folding_keeps_outputs(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model(torch.rand(32, 1, 28, 28) * 3)
    model.eval()
    x = torch.rand(8, 1, 28, 28)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-4)


def test_augment_is_deterministic_bounded_and_not_identity():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a bar
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().sum(dim=(1, 2, 3)).gt(1).sum() >= 8  # most digits changed
    none = AugmentConfig(p=0.0)
    assert torch.equal(augment(x, none, torch.Generator().manual_seed(1)), x)
