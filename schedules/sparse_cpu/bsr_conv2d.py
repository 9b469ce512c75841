"""BSR 1x1 convolution kernels for CPUs, specialised to the constant weights.

A 1x1 convolution is a sparse GEMM ``[K, C] x [C, H*W]``: with stride 1 and no padding the kernel
runs over the ``H * W`` pixels as one long row (no input copy, full vectors), otherwise as a
regular 1x1 convolution. A filter block of the generated code is a BSR block row, so every input
load feeds ``bh`` FMAs. A linear layer is the same kernel on a ``[N, C, 1, 1]`` input.
Entry point: :func:`bsr_conv2d` returns a PrimFunc (used as in :mod:`schedules.sparse_cpu.pattern_conv2d`).
"""

from tvm_sparse.formats import BSRWeight

from ..epilogue import Epilogue
from .entry_point import block_rows_code, build_cpu_kernel


def bsr_terms(weight):
    """Per filter, its ``(input channel, 0, 0, weight)`` terms (zeros inside stored blocks skipped)."""
    (bh, bw), (n_rows, n_cols) = weight.block, weight.shape[:2]
    terms = {k: [] for k in range(n_rows)}
    for block_row in range(len(weight.indptr) - 1):
        for j in range(weight.indptr[block_row], weight.indptr[block_row + 1]):
            col0 = int(weight.indices[j]) * bw
            for r in range(min(bh, n_rows - block_row * bh)):
                for q in range(min(bw, n_cols - col0)):
                    value = float(weight.values[j, r, q])
                    if value != 0.0:
                        terms[block_row * bh + r].append((col0 + q, 0, 0, value))
    return terms


#: How the BSR format feeds the code generators.
BSR_CODE = block_rows_code("bsr_conv2d", BSRWeight, bsr_terms)


def bsr_conv2d(
    weight, data_shape, *, stride=1, padding=0, epilogue=Epilogue(), target=None, config=None, name="bsr_conv2d"
):
    """A BSR 1x1 convolution specialised to ``weight``, as a PrimFunc.

    Parameters
    ----------
    weight : BSRWeight
        ``[K, C]`` or ``[K, C, 1, 1]``.
    data_shape : tuple of int
        ``(N, C, H, W)``.
    stride, padding, epilogue, target, config, name
        As :func:`schedules.sparse_cpu.pattern_conv2d.pattern_conv2d`, which also says what it returns.
    """
    return build_cpu_kernel(BSR_CODE, weight, data_shape, stride=stride, padding=padding, epilogue=epilogue,
                            target=target, config=config, name=name)
