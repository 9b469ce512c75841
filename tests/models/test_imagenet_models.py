"""The ImageNet-shaped models: torchvision's architectures, and compiled dense and pruned they match PyTorch.

CI compiles ResNet-50 and MobileNetV3-Large once each, at 32x32 with 10 classes, with a
representative subset of layers pruned 8x block-punched and routed to sparse kernels and the rest
compiled dense; the ``slow`` cases compile all three models dense and fully pruned at 64x64, and
ResNet-50 at 224x224.
"""

import pytest
import torch

import tvm_sparse
from relay_passes.sparse_rules import SparseRules
from tests.conftest import relative_error
from tvm_sparse.models import (
    IMAGENET_MODELS,
    MODELS,
    build_model,
    example_input,
    input_shape,
)
from tvm_sparse.pruning.one_shot import one_shot_config, prune_by_plan

#: Per model, the layers routed in CI: each kind the model has (1x1 reduce and expand, 3x3 with
#: stride 2, the strided 1x1 shortcut; squeeze-excite's 1x1 layers, the 1x1 before the head, the linear head).
SUBSETS = {
    "resnet50": ("layer1.0.conv1.weight", "layer2.0.conv2.weight", "layer2.0.downsample.0.weight",
                 "layer4.2.conv3.weight", "fc.weight"),
    "mobilenet_v3_large": ("features.6.block.0.weight", "features.6.block.6.fc1.weight",
                           "features.6.block.6.fc2.weight", "features.6.block.7.weight", "features.18.weight",
                           "classifier.0.weight"),
}

#: Parameters of torchvision's resnet50, mobilenet_v2 and mobilenet_v3_large at 1000 classes.
TORCHVISION_PARAMETERS = {"resnet50": 25_557_032, "mobilenet_v2_224": 3_504_872, "mobilenet_v3_large": 5_483_032}


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_the_architecture_is_torchvisions(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETERS[name]
    assert input_shape(name) == (1, 3, 224, 224)
    with torch.no_grad():
        assert model(example_input(name, batch=2, size=32)).shape == (2, 1000)


def test_example_inputs_know_each_models_size():
    assert {name: input_shape(name)[2] for name in MODELS} == {
        "resnet18": 32, "vgg16": 32, "mobilenet_v2": 32, "resnet50": 224, "mobilenet_v2_224": 224,
        "mobilenet_v3_large": 224}
    assert example_input().shape == (1, 3, 32, 32) and example_input("resnet50", size=64).shape == (1, 3, 64, 64)
    assert torch.equal(example_input("resnet50", size=64), example_input("mobilenet_v3_large", size=64))
    with pytest.raises(ValueError, match="unknown model 'resnet51'"):
        example_input("resnet51")
    with pytest.raises(ValueError, match="must be positive"):
        input_shape("resnet50", size=0)


def compile_pruned(name, size, plan_layers=None):
    """The model (10 classes) pruned 8x block-punched (only ``plan_layers`` if given, the rest stays
    dense), compiled with every pruned layer routed to a sparse kernel; it must match PyTorch."""
    model, example = build_model(name, num_classes=10), example_input(name, size=size)
    config = one_shot_config(model, compression=8.0, scheme_3x3="block_punched")
    plan = prune_by_plan(model, {layer: config[layer] for layer in plan_layers or config})
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm", plan=plan,
                                  rules=SparseRules(min_macs=0))
    routed = {d.name for d in compiled.report if d.decision == "sparse"}
    assert routed == set(plan), f"routed {sorted(routed)}, planned {sorted(plan)}"
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-4


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_pruned_model_with_dense_and_sparse_layers_matches_pytorch(name):
    compile_pruned(name, 32, SUBSETS[name])


def compile_dense(name, size):
    model, example = build_model(name, num_classes=10), example_input(name, size=size)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm", sparse=False)
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_dense_and_fully_pruned_models_match_pytorch(name):
    compile_dense(name, 64)
    compile_pruned(name, 64)


@pytest.mark.slow
def test_resnet50_at_224x224_dense_and_pruned_matches_pytorch():
    compile_dense("resnet50", 224)
    compile_pruned("resnet50", 224)
