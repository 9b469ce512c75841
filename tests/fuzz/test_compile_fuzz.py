"""Property: ``tvm_sparse.compile`` never crashes on a model PyTorch runs.

Every random model (:mod:`tests.fuzz.random_models`) either compiles and matches PyTorch to a
relative error of 1e-5, or is refused before compiling by a :class:`tvm_sparse.checks.ModelError`
naming what is unsupported. An internal TVM error fails the property, and hypothesis shrinks the
model to a minimal one; shrunk cases become tests in ``tests/test_compile_regressions.py``.

The CI profile runs a fixed, derandomised sample per target; ``pytest -m slow tests/fuzz`` runs the
full profile (``TVM_SPARSE_FUZZ_CASES`` overrides the llvm count; a tenth of it runs on the
emulated phone and on PoCL).
"""

import os

import pytest
import torch
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings

import tvm_sparse
from relay_passes.sparse_rules import SparseRules
from tests.conftest import hand_back
from tests.fuzz.random_models import build, model_specs
from tests.schedules import pocl
from tvm_sparse.checks import ModelError

CI_CASES = {"llvm": 40, "phone": 4, "opencl": 4}
SLOW_CASES = int(os.environ.get("TVM_SPARSE_FUZZ_CASES", "1000"))
ALL_SPARSE = SparseRules(min_macs=0)  # route every layer the kernels can take, however small


def _profile(cases):
    """A fixed sample of ``cases`` models; no shrinking (a compile takes seconds): the failing case prints as is."""
    return settings(max_examples=cases, derandomize=True, deadline=None, print_blob=True,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _assert_matches_torch(actual, model, example):
    """``actual`` equals PyTorch's output to 1e-5 of its largest magnitude (absolute below magnitude 1)."""
    with torch.no_grad():
        expected = model(example).numpy()
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1.0)
    assert float(np.abs(actual - expected).max()) <= 1e-5 * scale


def _compiled_or_refused(spec, target):
    """(model, example, compiled model) or None when compile refused the model with a ModelError."""
    model, example, plan = build(spec)
    mod, params = tvm_sparse.from_torch(model, example)
    try:
        return model, example, tvm_sparse.compile(mod, params, target=target, rules=ALL_SPARSE,
                                                  plan=plan if spec.with_plan else None)
    except ModelError as refusal:
        assert str(refusal), "a refusal names what is unsupported"
        return None


def _check_on_llvm(spec):
    result = _compiled_or_refused(spec, "llvm")
    if result is None:
        return
    model, example, compiled = result
    _assert_matches_torch(compiled(example), model, example)
    for decision in compiled.report:
        assert decision.reason, f"{decision.name}: every layer's decision carries its reason"


@given(model_specs())
@_profile(CI_CASES["llvm"])
def test_random_models_on_llvm(spec):
    _check_on_llvm(spec)


@pytest.mark.slow
@given(model_specs())
@_profile(SLOW_CASES)
def test_random_models_on_llvm_full_profile(spec):
    _check_on_llvm(spec)


@pytest.fixture(scope="module")
def phone_session(emulated_phone):
    """A new session on the shared phone per call, on a free phone (hypothesis examples cannot take the
    function-scoped ``phone``; a failing example's traceback, replayed by hypothesis, holds its session)."""
    from tvm_sparse.rpc import request_device

    def session():
        hand_back(emulated_phone)
        return request_device(emulated_phone.tracker, emulated_phone.key, session_timeout=600)

    yield session
    hand_back(emulated_phone)


def _check_on_phone(spec, phone_session):
    from tvm_sparse.rpc import RemoteModel

    result = _compiled_or_refused(spec, "llvm -mtriple=aarch64-linux-gnu -mattr=+neon")
    if result is None:
        return
    model, example, compiled = result
    _assert_matches_torch(RemoteModel(compiled, phone_session()).run(example), model, example)


@pytest.mark.phone
@given(spec=model_specs(max_convs=2))
@_profile(CI_CASES["phone"])
def test_random_models_on_the_emulated_phone(spec, phone_session):
    _check_on_phone(spec, phone_session)


@pytest.mark.slow
@pytest.mark.phone
@given(spec=model_specs(max_convs=2))
@_profile(max(100, SLOW_CASES // 10))
def test_random_models_on_the_emulated_phone_full_profile(spec, phone_session):
    _check_on_phone(spec, phone_session)


def _check_on_pocl(spec, opencl_context):
    """The model's kernels for a Mali GPU, run on PoCL (see ``tests.schedules.pocl.run_torch_model``)."""
    model, example, plan = build(spec)
    actual = pocl.run_torch_model(opencl_context, model, example, rules=ALL_SPARSE, plan=plan if spec.with_plan else None)
    if actual is not None:
        _assert_matches_torch(actual, model, example)


@given(spec=model_specs(max_convs=2))
@_profile(CI_CASES["opencl"])
def test_random_models_on_pocl(spec, opencl_context):
    _check_on_pocl(spec, opencl_context)


@pytest.mark.slow
@given(spec=model_specs(max_convs=2))
@_profile(max(100, SLOW_CASES // 10))
def test_random_models_on_pocl_full_profile(spec, opencl_context):
    _check_on_pocl(spec, opencl_context)
