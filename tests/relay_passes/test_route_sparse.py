"""RouteSparseLayers: which calls are rewritten, numerics against PyTorch, fallbacks with reasons, plans."""

import dataclasses

import pytest
import torch
import tvm
from tvm import relax
from tvm_ffi import structural_equal

import tvm_sparse
from relay_passes.pipeline import build_pipeline
from relay_passes.layer_chains import weight_names
from relay_passes.route_sparse import RouteSparseLayers
from relay_passes.sparse_rules import SparseRules
from tests.conftest import relative_error
from tests.relay_passes.sparse_models import LIBRARY, pattern_prune_, sparse_residual_block
from tvm_sparse.relax_utils import bind_params
from tvm_sparse.plan import BlockPunchedScheme, BSRScheme, PatternScheme, PlanError, UnstructuredScheme
from tvm_sparse.target import parse_target

LOOSE = SparseRules(min_macs=0)


def _ops(func):
    names = []
    relax.analysis.post_order_visit(func, lambda e: names.append(e.op.name)
                                    if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return names


def _routed(model, example, rules=LOOSE, plan=None):
    mod, params = tvm_sparse.from_torch(model, example)
    names = weight_names(mod["main"])
    router = RouteSparseLayers(parse_target("llvm"), rules, plan, names)
    return build_pipeline(router.target, [router], until="sparse")(bind_params(mod, params)), router.report


def test_sparse_layers_become_kernel_calls_with_their_epilogue():
    model, example = sparse_residual_block()
    mod, report = _routed(model, example)
    assert [(d.name, d.kernel) for d in report] == [
        ("conv1.weight", "pattern_conv2d"), ("conv2.weight", "pattern_conv2d"),
        ("project.weight", "block_punched_conv2d"), ("fc.weight", "block_punched_conv2d")]
    ops = _ops(mod["main"])
    # Every conv2d/matmul, bias add, residual add, ReLU and ReLU6 went into the kernels.
    assert not {"relax.nn.conv2d", "relax.matmul", "relax.nn.relu", "relax.clip", "relax.add"} & set(ops)
    assert ops.count("relax.call_tir") == 4
    kernels = [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert sorted(kernels) == ["sparse_conv1_weight", "sparse_conv2_weight", "sparse_fc_weight",
                               "sparse_project_weight"]


def test_kernels_declare_noalias():
    # TVM 0.27 reads "tirx.noalias"; one kernel without it (the old "tir.noalias") made every dense
    # function built in the same module 2-3x slower (ResNet-18: 16.9 ms dense, 23.9 ms with 7 layers routed).
    mod, _ = _routed(*sparse_residual_block())
    kernels = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(kernels) == 4
    assert all(bool(f.attrs.get("tirx.noalias")) and "tir.noalias" not in f.attrs for f in kernels)


def test_dense_layers_are_left_untouched():
    model, example = sparse_residual_block()
    with torch.no_grad():
        model.conv2.weight.normal_()
    mod, report = _routed(model, example)
    decisions = {d.name: d for d in report}
    assert decisions["conv2.weight"].structure == "dense"
    assert decisions["conv2.weight"].kernel == "tvm dense"
    assert _ops(mod["main"]).count("relax.nn.conv2d") == 1


def test_sparse_block_matches_pytorch():
    model, example = sparse_residual_block()
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), rules=LOOSE)
    assert [d.decision for d in compiled.report] == ["sparse"] * 4
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5


@pytest.mark.parametrize("stride, padding, size", [(1, 1, (9, 7)), (2, 1, (8, 8)), (2, 0, (11, 6)), (1, 2, (5, 5))])
def test_pattern_convolutions_of_many_shapes_match_pytorch(stride, padding, size):
    model = torch.nn.Sequential(torch.nn.Conv2d(12, 10, 3, stride=stride, padding=padding), torch.nn.ReLU()).eval()
    pattern_prune_(model[0].weight, kept_kernels=0.35, seed=stride + padding)
    example = torch.randn(3, 12, *size)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), rules=LOOSE)
    assert compiled.report[0].kernel == "pattern_conv2d"
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5


def _pattern_conv(**conv_options):
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, **conv_options)).eval()
    pattern_prune_(model[0].weight[:, : 8 // conv_options.get("groups", 1)])
    return model, torch.randn(1, 8, 8, 8)


@pytest.mark.parametrize("options, reason", [
    ({"groups": 2}, "groups=2"),
    ({"dilation": 2}, "dilation=[2, 2]"),
])
def test_unsupported_convolutions_stay_dense_and_correct(options, reason):
    model, example = _pattern_conv(**options)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), rules=LOOSE)
    (decision,) = compiled.report
    assert decision.decision == "dense" and reason in decision.reason
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5


def test_unbound_weights_stay_dense_and_correct():
    model, example = _pattern_conv()
    mod, params = tvm_sparse.from_torch(model, example)
    compiled = tvm_sparse.compile(mod, rules=LOOSE)  # weights stay runtime inputs
    (decision,) = compiled.report
    assert "not a constant" in decision.reason
    weight, bias = (params[name].numpy() for name in ("0.weight", "0.bias"))
    with torch.no_grad():
        assert relative_error(compiled(example, weight, bias), model(example).numpy()) <= 1e-5


def test_plan_forces_kernels_and_is_verified():
    model, example = sparse_residual_block()
    mod, params = tvm_sparse.from_torch(model, example)
    plan = {"conv1.weight": PatternScheme(library_size=4, library=LIBRARY),
            "project.weight": BlockPunchedScheme(sparsity=0.0)}
    strict = SparseRules(pattern_max_density=0.01, small_map_pattern_max_density=0.01, block_max_density=0.01,
                         min_macs=0)
    compiled = tvm_sparse.compile(mod, params, rules=strict, plan=plan)
    kernels = {d.name: d.kernel for d in compiled.report}
    assert kernels["conv1.weight"] == "pattern_conv2d" and kernels["project.weight"] == "block_punched_conv2d"
    assert kernels["conv2.weight"] == "tvm dense"  # not in the plan, above the strict thresholds
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5
    with torch.no_grad():
        model.conv2.weight.normal_()
    _, dense_params = tvm_sparse.from_torch(model, example)
    with pytest.raises(PlanError, match="conv2.weight"):
        tvm_sparse.compile(mod, dense_params, plan={"conv2.weight": PatternScheme(library_size=4, library=LIBRARY)})


def test_bsr_plans_use_the_bsr_kernel_and_other_schemes_are_analysed():
    model, example = sparse_residual_block(seed=5)
    mod, params = tvm_sparse.from_torch(model, example)
    plan = {"project.weight": BSRScheme(block=(8, 4)), "fc.weight": BSRScheme(block=(8, 4)),
            "conv2.weight": UnstructuredScheme(sparsity=0.5)}
    compiled = tvm_sparse.compile(mod, params, rules=LOOSE, plan=plan)
    kernels = {d.name: d.kernel for d in compiled.report}
    assert kernels["project.weight"] == kernels["fc.weight"] == "bsr_conv2d"
    assert kernels["conv2.weight"] == "pattern_conv2d"  # what its weight really is
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5


def test_sparse_off_compiles_everything_dense():
    model, example = sparse_residual_block()
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), sparse=False)
    assert compiled.report == []
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5


def test_each_sparse_decision_records_the_kernel_call_that_regenerates_its_kernel():
    model, example = sparse_residual_block()
    mod, report = _routed(model, example)
    for decision in report:
        if decision.decision == "dense":
            assert decision.call is None
            continue
        call = decision.call
        assert call.kernel == decision.kernel and call.data_shape[0] == example.shape[0]
        emitted = mod["sparse_" + decision.name.replace(".", "_")]
        regenerated = call.prim_func(parse_target("llvm"), call.config, name=emitted.attrs["global_symbol"])
        assert structural_equal(regenerated.with_attrs({"tirx.is_scheduled": True, "op_pattern": 8}), emitted)


def test_a_layer_whose_kernel_cannot_be_generated_is_declined_and_stays_dense(monkeypatch):
    model, example = sparse_residual_block()

    def refuses(*args, **kwargs):
        raise ValueError("no register tile fits this layer")

    monkeypatch.setattr("schedules.sparse_cpu.pattern_conv2d.pattern_conv2d", refuses)
    mod, report = _routed(model, example)
    declined = [d for d in report if "pattern_conv2d failed" in d.reason]
    assert declined and all(d.decision == "dense" and d.call is None for d in declined)
    assert all("no register tile fits this layer" in d.reason for d in declined)
    with torch.no_grad():
        expected = model(example).numpy()
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), "llvm", rules=LOOSE)
    assert relative_error(compiled.run(example), expected) < 1e-5


def test_tuned_knobs_beyond_the_code_ceiling_are_ignored_with_the_reason(monkeypatch):
    """A tuning log's literal-code config too large to compile quickly gives way to the kernel's default."""
    from schedules import profiles
    from schedules.sparse_cpu.config import SpecializedConvConfig

    model, example = sparse_residual_block()
    mod, params = tvm_sparse.from_torch(model, example)
    target = parse_target("llvm")
    profile = profiles.profile_for(target)
    monkeypatch.setattr("schedules.sparse_cpu.space.profile_for",
                        lambda _target: dataclasses.replace(profile, code_budget_default=1, code_budget_tuning=1,
                                                                code_budget_ceiling=1))
    huge = SpecializedConvConfig(lanes=4, vectors=2, rows=4, codegen="specialized")
    router = RouteSparseLayers(target, LOOSE, None, weight_names(mod["main"]), kernel_configs=lambda *args: huge)
    build_pipeline(target, [router], until="sparse")(bind_params(mod, params))
    sparse = [d for d in router.report if d.decision == "sparse"]
    assert sparse and all("tuned knobs ignored" in d.reason and d.call.config is None for d in sparse)
