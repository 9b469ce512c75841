"""Small Relax helpers shared by compiling, tuning and remote execution: weights in, outputs out.

They sit below :mod:`tvm_sparse.compiler`, :mod:`tvm_sparse.tuning` and :mod:`tvm_sparse.rpc` so that
none of those imports another for a helper.
"""

import numpy as np
import tvm
from tvm import relax


def to_numpy(value):
    """A numpy array of ``value``: a ``tvm.runtime.Tensor``, a torch tensor or anything numpy takes."""
    if isinstance(value, tvm.runtime.Tensor):
        return value.numpy()
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def unpack_outputs(outputs):
    """Turn a VM result (a tensor or a tuple of them) into numpy: one array, or a tuple of arrays."""
    if isinstance(outputs, tvm.runtime.Tensor):
        return outputs.numpy()
    arrays = tuple(unpack_outputs(item) for item in outputs)
    return arrays[0] if len(arrays) == 1 else arrays


def bind_params(mod, params):
    """Bind weights to ``main``'s parameters of the same names, checking names, shapes and dtypes.

    Parameters
    ----------
    mod : tvm.IRModule
    params : dict[str, array-like]
        Name -> numpy array, ``tvm.runtime.Tensor`` or torch tensor.

    Returns
    -------
    tvm.IRModule

    Raises
    ------
    ValueError
        For a name ``main`` does not take, or a shape or dtype that differs from the parameter's.
    """
    main = mod["main"]
    by_name = {param.name: param for param in main.params}
    arrays = {}
    for name, value in params.items():
        if name not in by_name:
            raise ValueError(f"params has {name!r}, which is not a parameter of main; "
                             f"main takes {[p.name for p in main.params]}")
        array = to_numpy(value)
        expected = by_name[name].ty
        shape = tuple(int(dim) for dim in expected.shape)
        if tuple(array.shape) != shape or str(array.dtype) != expected.dtype:
            raise ValueError(f"param {name!r} is {array.dtype}{list(array.shape)}, "
                             f"but main expects {expected.dtype}{list(shape)}")
        arrays[name] = tvm.runtime.tensor(array)
    return relax.transform.BindParams("main", arrays)(mod)


def workload_module(func):
    """A PrimFunc as the one-function module MetaSchedule keys its tuning records by."""
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
