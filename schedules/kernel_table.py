"""One int32 table for the per-layer arrays a table-driven kernel reads (GPU kernels).

A kernel called from a Relax graph gets its arrays as one constant argument: int32 sections
(indices) and float32 sections stored bit for bit (``numpy.view``), read back in TIR with
``tirx.reinterpret``. The table rides on the PrimFunc (``schedules.compact_conv.with_table``), so
the routing pass passes it like the compact CPU kernels' table.
"""

import numpy as np


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
    from tvm.tirx.script.builder import ir as T  # pylint: disable=import-outside-toplevel

    T.func_name(name)
    T.func_attr({"global_symbol": name, "tirx.noalias": True, "tvm_sparse.kernel": kernel})
    data = T.arg("data", T.buffer(geometry.data_shape, dtype))
    bias = T.arg("bias", T.buffer((geometry.filters,), dtype)) if epilogue.bias else None
    residual = T.arg("residual", T.buffer(geometry.out_shape, dtype)) if epilogue.residual else None
    table = T.arg("table", T.buffer((table_size,), "int32"))
    out = T.arg("out", T.buffer(geometry.out_shape, dtype))
    return data, bias, residual, table, out
