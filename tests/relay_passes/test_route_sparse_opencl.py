"""Sparse layers of a model compiled for phone GPUs (Mali, Adreno): routed to the OpenCL kernels, run on PoCL."""

import pytest
import torch

import tvm_sparse
from relay_passes import pipeline
from relay_passes.layer_chains import weight_names
from relay_passes.route_sparse import RouteSparseLayers
from relay_passes.sparse_rules import SparseRules
from tests.conftest import relative_error
from tests.relay_passes.sparse_models import sparse_residual_block
from tests.schedules import pocl
from tvm_sparse.relax_utils import bind_params
from tvm_sparse.target import parse_target


def _scheduled(model, example, target):
    """The model after the pipeline's phases up to ``schedule``, with the router's report."""
    mod, params = tvm_sparse.from_torch(model, example)
    router = RouteSparseLayers(target, SparseRules(min_macs=0), None, weight_names(mod["main"]))
    return pipeline.build_pipeline(target, [router], until="schedule")(bind_params(mod, params)), router.report


@pytest.mark.parametrize("device", ["mali", "adreno"])
def test_sparse_model_runs_on_pocl(device, opencl_context):
    model, example = sparse_residual_block()
    target = parse_target({"kind": "opencl", "device": device})
    scheduled, report = _scheduled(model, example, target)
    assert [(d.name, d.kernel) for d in report] == [
        ("conv1.weight", "pattern_conv2d_opencl"), ("conv2.weight", "pattern_conv2d_opencl"),
        ("project.weight", "block_rows_conv2d_opencl"), ("fc.weight", "block_rows_conv2d_opencl")]
    (actual,) = pocl.run_module(opencl_context, scheduled, target.with_host("llvm"), example.numpy())
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(actual, expected) <= 1e-5


def test_sparse_model_builds_for_a_phone_gpu():
    """The whole pipeline, routed kernels included, builds OpenCL kernels under aarch64 host code."""
    model, example = sparse_residual_block()
    mod, params = tvm_sparse.from_torch(model, example)
    compiled = tvm_sparse.compile(mod, params, target={"kind": "opencl", "device": "mali"}, rules=SparseRules(min_macs=0))
    assert sum(d.decision == "sparse" for d in compiled.report) == 4
    source = compiled.executable.mod.imports[0].imports[0].inspect_source()
    assert "__kernel void sparse_conv1_weight_kernel" in source
