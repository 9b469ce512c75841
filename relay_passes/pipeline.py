"""The phases that ``tvm_sparse.compile`` runs, in order.

1. ``prepare``: canonicalise, fold BatchNorm into the preceding convolution (so that pruned
   zeros stay zero in the folded weight) and fold constants.
2. ``sparse``: find convolutions and linear layers with pattern- or block-sparse constant weights
   and rewrite them to calls of the ``schedules`` kernels (``relay_passes.route_sparse``).
3. ``legalize``: TVM's per-target library dispatch, ``LegalizeOps`` and operator fusion.
4. ``schedule``: schedule the dense remainder (TVM's ``dlight`` rules on GPU targets).
5. ``lower``: TVM's dataflow lowering and finalisation for the Relax virtual machine.
"""

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
from tvm.relax.backend.gpu_generic import pipeline as gpu_generic

from relay_passes.schedule_dense import schedule_dense_passes


def prepare_phase():
    """Passes that normalise the graph after the parameters are bound."""
    return [
        relax.transform.CanonicalizeBindings(),
        # TVM's own pass; it scales each filter, so pruned zeros stay exactly zero. It matches
        # relax.nn.batch_norm, so it runs before DecomposeOpsForInference expands what is left
        # (a BatchNorm that follows no convolution).
        relax.transform.FoldBatchnormToConv2D(),
        relax.transform.DecomposeOpsForInference(),
        relax.transform.FoldConstant(),
        relax.transform.DeadCodeElimination(),
    ]


def schedule_phase(target):
    """Passes that schedule the dense remainder after legalization (CPU: ``schedule_dense``).

    On GPU targets the backend's ``legalize_passes`` already end with dlight's default schedule.
    """
    return schedule_dense_passes(target)


def _backend(target):
    return gpu_generic if target.kind.name in ("opencl", "cuda", "vulkan", "metal") else cpu_generic


def build_pipeline(target, sparse_passes=()):
    """Return the whole pipeline for ``target`` as one pass.

    Parameters
    ----------
    target : tvm.target.Target
        The compilation target (already parsed).
    sparse_passes : sequence of tvm.ir.transform.Pass
        The ``sparse`` phase (``relay_passes.route_sparse.RouteSparseLayers``); empty: all dense.

    Returns
    -------
    tvm.ir.transform.Pass
        A module pass that takes a Relax module with bound parameters to one ready for
        ``tvm.compile(..., relax_pipeline=None)``-free building (it includes the finalisation).
    """
    backend = _backend(target)
    passes = (
        prepare_phase()
        + list(sparse_passes)
        + [relax.transform.DeadCodeElimination()]
        + backend.library_dispatch_passes(target)
        + backend.legalize_passes(target)
        + schedule_phase(target)
        + backend.dataflow_lower_passes(target)
        + backend.finalize_passes(target)
    )

    @tvm.transform.module_pass(opt_level=0, name="tvm_sparse.Pipeline")
    def _pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline
