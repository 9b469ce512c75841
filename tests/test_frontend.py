"""from_torch: torch.export + the Relax frontend, with weights named by their state_dict keys."""

import numpy as np
import pytest
import torch

import tvm_sparse


def test_params_keep_state_dict_names_and_values(resnet18, resnet18_relax):
    model, _ = resnet18
    mod, params = resnet18_relax
    state = model.state_dict()
    assert "layer1.0.conv1.weight" in params and "linear.bias" in params
    for name, value in params.items():
        np.testing.assert_array_equal(value.numpy(), state[name].numpy())
    main_params = [param.name for param in mod["main"].params]
    assert main_params[0] == "x"
    assert main_params[1:] == list(params)


def test_exported_program_is_accepted():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    example = torch.randn(2, 3, 8, 8)
    _, params = tvm_sparse.from_torch(torch.export.export(model, (example,)), example)
    assert set(params) == {"0.weight", "0.bias"}


def test_training_mode_is_warned_about(caplog):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with caplog.at_level("WARNING"):
        tvm_sparse.from_torch(model, torch.randn(1, 3, 8, 8))
    assert "training mode" in caplog.text


def test_not_a_model_is_rejected():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        tvm_sparse.from_torch(lambda x: x, torch.randn(1))


def test_an_operator_the_frontend_cannot_import_is_named():
    from tvm_sparse.checks import ModelError

    class AMax(torch.nn.Module):
        def forward(self, x):
            return x.amax(dim=1)

    with pytest.raises(ModelError, match="amax"):
        tvm_sparse.from_torch(AMax().eval(), torch.randn(2, 3))


def test_a_saved_program_is_imported_from_its_path(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    example = torch.randn(1, 3)
    torch.export.save(torch.export.export(model, (example,)), tmp_path / "model.pt2")
    _, params = tvm_sparse.from_torch(tmp_path / "model.pt2", example)
    assert set(params) == {"0.weight", "0.bias"}
    with pytest.raises(FileNotFoundError, match="missing.pt2"):
        tvm_sparse.from_torch(tmp_path / "missing.pt2", example)


class _SqueezeExcite(torch.nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, squeezed, 1)
        self.fc2 = torch.nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(scale))))


class _TorchvisionStyleNet(torch.nn.Module):
    """A user's torchvision-style model: hard-swish stem, an inverted bottleneck with a 5x5
    depthwise convolution and squeeze-excite, a residual, adaptive pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(16),
                                        torch.nn.Hardswish())
        self.block = torch.nn.Sequential(
            torch.nn.Conv2d(16, 64, 1, bias=False), torch.nn.BatchNorm2d(64), torch.nn.Hardswish(),
            torch.nn.Conv2d(64, 64, 5, 1, 2, groups=64, bias=False), torch.nn.BatchNorm2d(64), torch.nn.Hardswish(),
            _SqueezeExcite(64, 16),
            torch.nn.Conv2d(64, 16, 1, bias=False), torch.nn.BatchNorm2d(16))
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        out = self.stem(x)
        out = out + self.block(out)
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(out, 1), 1))


@pytest.mark.parametrize("pruned", [False, True])
def test_a_torchvision_style_model_of_the_users_compiles_and_matches_pytorch(pruned):
    from relay_passes.sparse_rules import SparseRules
    from tvm_sparse.pruning.one_shot import magnitude_prune

    torch.manual_seed(0)
    model = _TorchvisionStyleNet().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    plan = magnitude_prune(model, compression=8.0, scheme_3x3="block_punched") if pruned else None
    example = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # Rules that route every planned layer, however small (the plan forces them).
    rules = SparseRules(block_max_density=1e-6, min_macs=0)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), "llvm", plan=plan, rules=rules)
    routed = {d.name for d in compiled.report if d.decision == "sparse"}
    assert routed == set(plan or ()), [(d.name, d.decision, d.reason) for d in compiled.report]
    with torch.no_grad():
        expected = model(example).numpy()
    assert float(np.abs(compiled(example) - expected).max() / np.abs(expected).max()) <= 1e-4
