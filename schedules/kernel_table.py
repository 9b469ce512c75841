"""The constant int32 table a table-driven kernel (compact CPU code, OpenCL) reads its weights from.

A kernel called from a Relax graph gets its arrays as one constant argument: int32 sections
(indices) and float32 sections stored bit for bit (``numpy.view``), read back in TIR with
``tirx.reinterpret``. The table rides on the PrimFunc (:func:`with_table`); the routing pass
passes :func:`table_argument` after the epilogue's arguments.
"""

import numpy as np
import tvm
from tvm.tirx.script.builder import ir as T

#: PrimFunc attribute holding the table argument of a table-driven kernel (a ``tvm.runtime.Tensor``).
TABLE_ATTR = "tvm_sparse.table"


def with_table(prim_func, table):
    """``prim_func`` carrying ``table`` in :data:`TABLE_ATTR`, so a caller can pass it as the ``table`` argument."""
    return prim_func.with_attr(TABLE_ATTR, tvm.runtime.tensor(table))


def table_argument(prim_func):
    """The numpy table a table-driven kernel must be called with, or None for kernels without one.

    A caller passes it (e.g. as a ``relax.const``) after ``data``, ``bias`` and ``residual``.
    """
    table = prim_func.attrs.get(TABLE_ATTR) if prim_func.attrs is not None else None
    return None if table is None else table.numpy()


def pack_sections(sections):
    """Concatenate int32 / float32 arrays into one int32 table.

    Parameters
    ----------
    sections : list of numpy.ndarray
        int32 or float32 arrays, any shape (flattened).

    Returns
    -------
    table : numpy.ndarray
        int32, at least one element.
    starts : list of int
        Where each section starts in ``table``.
    """
    flat = []
    for section in sections:
        section = np.ascontiguousarray(section).reshape(-1)
        if section.dtype == np.float32:
            section = section.view(np.int32)
        elif section.dtype != np.int32:
            raise TypeError(f"table sections are int32 or float32, got {section.dtype}")
        flat.append(section)
    starts = np.cumsum([0] + [len(s) for s in flat[:-1]]).tolist()
    table = np.concatenate(flat) if flat else np.zeros(0, np.int32)
    return (table if len(table) else np.zeros(1, np.int32)), [int(s) for s in starts]


def declare_table_kernel(name, kernel, geometry, epilogue, table_size, dtype="float32"):
    """Inside ``T.prim_func()``: name the function and declare the table-kernel parameters.

    Declares ``data``, ``[bias]``, ``[residual]``, ``table`` (int32, ``table_size``), ``out`` in
    that order (the router's calling convention) and returns them; absent ones are ``None``.
    """
    T.func_name(name)
    T.func_attr({"global_symbol": name, "tirx.noalias": True, "tvm_sparse.kernel": kernel})
    data = T.arg("data", T.buffer(geometry.data_shape, dtype))
    bias = T.arg("bias", T.buffer((geometry.filters,), dtype)) if epilogue.bias else None
    residual = T.arg("residual", T.buffer(geometry.out_shape, dtype)) if epilogue.residual else None
    table = T.arg("table", T.buffer((table_size,), "int32"))
    out = T.arg("out", T.buffer(geometry.out_shape, dtype))
    return data, bias, residual, table, out
