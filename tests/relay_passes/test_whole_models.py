"""Whole pruned CIFAR-10 models compiled with the sparse passes match PyTorch, with sparse layers routed.

The models are pruned one-shot by magnitude (pattern + connectivity on the 3x3 layers, block-punched
on 1x1 and linear layers; :func:`tvm_sparse.pruning.one_shot.magnitude_prune`) with random
BatchNorm statistics, so the folded weights differ from the raw ones. A compile routes every layer
that the plan names; the CI cases route a representative subset (see ``SUBSETS``) to keep the
compile time of the suite down, the ``slow`` cases route all of them.
"""

import pytest
import torch

import tvm_sparse
from relay_passes.sparse_rules import SparseRules
from tests.conftest import relative_error
from tvm_sparse.bench.models import benchmark_model, example_input
from tvm_sparse.pruning.one_shot import magnitude_prune

#: Rules under which only the layers of the plan go to sparse kernels (the plan forces them).
PLAN_ONLY = SparseRules(pattern_max_density=1e-6, small_map_pattern_max_density=1e-6, block_max_density=1e-6,
                        max_kernel_terms=None)

#: Per model, the layers routed in CI: each kind of layer the model has (3x3 stride 1 and 2,
#: 1x1 projection, linear; specialised and compact kernel code; residual and plain epilogues),
#: few enough that the three models compile in a few minutes (all layers: the slow cases).
SUBSETS = {
    "resnet18": ("layer2.0.conv1.weight", "layer2.0.shortcut.0.weight", "layer4.1.conv2.weight", "linear.weight"),
    "vgg16": ("features.3.weight", "classifier.weight"),
    "mobilenet_v2": ("features.3.layers.0.weight", "features.20.weight", "classifier.weight"),
}


def pruned(name, scheme_3x3="pattern"):
    """The model pruned 8x on its 3x3 layers, its plan and the example input."""
    model = benchmark_model(name)
    plan = magnitude_prune(model, compression=8.0, scheme_3x3=scheme_3x3)
    return model.eval(), plan, example_input()


def compile_and_check(name, plan_layers=None, target="llvm", scheme_3x3="pattern"):
    """Compile the pruned model with the plan (restricted to ``plan_layers``); return model, plan, compiled."""
    model, plan, example = pruned(name, scheme_3x3)
    if plan_layers is not None:
        missing = set(plan_layers) - set(plan)
        assert not missing, f"{name} has no pruned layers {sorted(missing)}; it has {sorted(plan)}"
        plan = {layer: plan[layer] for layer in plan_layers}
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target=target, plan=plan, rules=PLAN_ONLY)
    routed = {d.name for d in compiled.report if d.decision == "sparse"}
    assert routed == set(plan), f"routed {sorted(routed)}, planned {sorted(plan)}"
    return model, example, compiled


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_pruned_model_matches_pytorch(name):
    model, example, compiled = compile_and_check(name, SUBSETS[name])
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-4


def test_resnet18_with_block_punched_3x3_layers_matches_pytorch():
    layers = ("layer2.0.conv1.weight", "layer3.1.conv2.weight", "layer4.1.conv1.weight")
    model, example, compiled = compile_and_check("resnet18", layers, scheme_3x3="block_punched")
    assert {d.structure for d in compiled.report if d.decision == "sparse"} == {"block_punched"}
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_pruned_model_with_every_layer_routed_matches_pytorch(name):
    model, example, compiled = compile_and_check(name)
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-4


@pytest.mark.phone
def test_pruned_resnet18_on_the_emulated_phone_matches_pytorch(phone):
    from tvm_sparse.rpc import RemoteModel, request_device

    layers = ("layer2.0.conv1.weight", "layer3.0.shortcut.0.weight", "linear.weight")
    model, example, compiled = compile_and_check("resnet18", layers, target="llvm -mtriple=aarch64-linux-gnu -mattr=+neon")
    session = request_device(phone.tracker, phone.key, session_timeout=900)
    with torch.no_grad():
        assert relative_error(RemoteModel(compiled, session).run(example), model(example).numpy()) <= 1e-4
