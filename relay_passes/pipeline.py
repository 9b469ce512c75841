"""The phases that ``tvm_sparse.compile`` runs, in order.

1. ``prepare``: canonicalise, fold BatchNorm into the preceding convolution (so that pruned
   zeros stay zero in the folded weight) and fold constants.
2. ``sparse``: find convolutions and linear layers with pattern- or block-sparse constant weights
   and rewrite them to calls of the ``schedules`` kernels (``relay_passes.route_sparse``).
3. ``legalize``: on CPUs, the dense strided 1x1 convolutions on a copy of the pixels they read
   (``relay_passes.strided_pointwise``) and Winograd kernels for the dense 3x3 convolutions where
   the target's profile gives them (``relay_passes.winograd``); TVM's per-target library dispatch, ``LegalizeOps`` (ReLU, clip and max pooling
   propagating NaN: ``relay_passes.nan_propagation``) and operator fusion (on GPU
   targets one-term reductions are first written as the products they are:
   ``relay_passes.one_term_reductions``).
4. ``pack``: lay out the dense remainder's weights for the CPU schedule rules (tuning stops here).
5. ``schedule``: apply tuned schedules, then the dense rules (TVM's ``dlight`` rules on GPU targets).
6. ``lower``: TVM's dataflow lowering and finalisation for the Relax virtual machine.
"""

from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
from tvm.relax.backend.gpu_generic import pipeline as gpu_generic

from relay_passes.nan_propagation import legalize_propagating_nan
from relay_passes.one_term_reductions import ExpandOneTermReductions
from relay_passes.schedule_dense import pack_dense_passes, schedule_dense_passes
from relay_passes.strided_pointwise import SubsampleStridedPointwise
from relay_passes.winograd import WinogradConvolutions

#: The phases, in the order they run.
PHASES = ("prepare", "sparse", "legalize", "pack", "schedule", "lower")

#: Target kinds compiled with TVM's generic GPU backend.
GPU_KINDS = ("opencl", "cuda", "vulkan", "metal")


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


def legalize_phase(target, backend):
    """TVM's library dispatch and legalization for ``target``, with ReLU, clip and max pooling propagating NaN.

    GPU targets first run ``ExpandOneTermReductions``; CPU targets first subsample the input of
    the dense strided 1x1 convolutions (``relay_passes.strided_pointwise``) and call the Winograd
    kernels for the dense 3x3 convolutions their profile gives them (``relay_passes.winograd``).
    """
    first = ([ExpandOneTermReductions()] if target.kind.name in GPU_KINDS
             else [SubsampleStridedPointwise(target), WinogradConvolutions(target)])
    # TVM's LegalizeOps in legalize_passes finds nothing left to legalize after ours
    return first + backend.library_dispatch_passes(target) + [legalize_propagating_nan()] + backend.legalize_passes(target)


def pack_phase(target):
    """Passes that lay out the dense remainder's weights for the schedule rules (CPU only)."""
    return pack_dense_passes(target)


def schedule_phase(target):
    """Passes that schedule the dense remainder after legalization (CPU: ``schedule_dense``).

    On GPU targets the backend's ``legalize_passes`` already end with dlight's default schedule.
    """
    return schedule_dense_passes(target)


@dataclass(frozen=True)
class Phase:
    """One named step of the pipeline and its passes."""

    name: str
    passes: tuple


def pipeline_phases(target, sparse_passes=()):
    """The phases of the pipeline for ``target``, in order (names in :data:`PHASES`).

    Parameters
    ----------
    target : tvm.target.Target
        The compilation target (already parsed).
    sparse_passes : sequence of tvm.ir.transform.Pass
        The ``sparse`` phase (``relay_passes.route_sparse.RouteSparseLayers``); empty: all dense.

    Returns
    -------
    tuple of Phase
    """
    backend = gpu_generic if target.kind.name in GPU_KINDS else cpu_generic
    return (
        Phase("prepare", tuple(prepare_phase())),
        Phase("sparse", tuple(sparse_passes) + (relax.transform.DeadCodeElimination(),)),
        Phase("legalize", tuple(legalize_phase(target, backend))),
        Phase("pack", tuple(pack_phase(target))),
        Phase("schedule", tuple(schedule_phase(target))),
        Phase("lower", tuple(backend.dataflow_lower_passes(target) + backend.finalize_passes(target))),
    )


def build_pipeline(target, sparse_passes=(), *, start="prepare", until="lower"):
    """The phases from ``start`` through ``until`` (default: all) for ``target`` as one pass.

    Parameters
    ----------
    target : tvm.target.Target
        The compilation target (already parsed).
    sparse_passes : sequence of tvm.ir.transform.Pass
        The ``sparse`` phase; empty: all dense.
    start, until : str
        The first and the last phase to run, names from :data:`PHASES` (tuning stops after
        ``pack``; tests inspect the module after ``schedule``).

    Returns
    -------
    tvm.ir.transform.Pass
        A module pass that takes a Relax module with bound parameters; run in full, it gives a
        module ready for ``relax.build(..., relax_pipeline=None)`` (it includes the finalisation).
    """
    for name in (start, until):
        if name not in PHASES:
            raise ValueError(f"no pipeline phase {name!r}; the phases are {', '.join(PHASES)}")
    first, last = PHASES.index(start), PHASES.index(until)
    if first > last:
        raise ValueError(f"phase {start!r} comes after {until!r}")
    passes = [p for phase in pipeline_phases(target, sparse_passes)[first:last + 1] for p in phase.passes]

    @tvm.transform.module_pass(opt_level=0, name="tvm_sparse.Pipeline")
    def _pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline
