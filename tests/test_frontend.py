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
