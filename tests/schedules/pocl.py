"""Run TVM-generated OpenCL code on PoCL (OpenCL on this CPU) with PyOpenCL.

The TVM runtime of the wheel is built without OpenCL, so it cannot launch the kernels itself.
This harness does what its OpenCL runtime would: it lowers a PrimFunc for the OpenCL target,
reads from the host code which device kernels are launched, in which order, with which buffers
and launch sizes (``call_ffi_kernel(name, buffers..., extents..., launch_params=[...])``), builds
the generated OpenCL source with PyOpenCL and launches them. :func:`run_module` goes one level
up: it runs a Relax ``main`` made only of ``call_tir`` bindings (one layer after the pipeline).
"""

import re
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.tirx.build import split_host_device_mods

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


@dataclass(frozen=True)
class KernelLaunch:
    """One device kernel launch: the kernel, its buffer arguments and its OpenCL sizes."""

    name: str
    buffers: tuple
    global_size: tuple
    local_size: tuple


def _lowered(prim_func, target):
    """``prim_func`` through TVM's default TIR pipeline, split into host and device modules."""
    mod = tvm.IRModule({"main": prim_func.with_attr("global_symbol", "main")})
    mod = tvm.tirx.transform.BindTarget(target.with_host(target.host))(mod)
    pipeline, _, _ = tvm.tirx.get_tir_pipeline("default")  # what tvm.compile runs
    return split_host_device_mods(pipeline(mod))


_LAUNCH = re.compile(r'T\.call_ffi_kernel\("(\w+)", (.*?), launch_params=\[(.*?)\]')


def _integer(text):
    return int(re.fullmatch(r"(?:T\.int\d+\()?(\d+)\)?", text.strip()).group(1))


def _buffer_name(pointer, names):
    """The parameter behind a host pointer argument such as ``x_1.data``."""
    name = pointer.removesuffix(".data")
    return name if name in names else re.sub(r"_\d+$", "", name)


def kernel_launches(prim_func, target):
    """The device kernel launches of ``prim_func`` on an OpenCL ``target``, in launch order.

    Read from the host code's ``call_ffi_kernel`` calls (TVM 0.27's Python has no TIR visitor).
    Buffer arguments are named after the PrimFunc's buffers; launch sizes must be static.
    """
    host, _ = _lowered(prim_func, target)
    names = {param.name for param in prim_func.params}
    launches = []
    for name, arguments, params in _LAUNCH.findall(host["main"].script()):
        params = [p.strip().strip('"') for p in params.split(",")]
        arguments = [a.strip() for a in arguments.split(",")]
        pointers, extents = arguments[: -len(params)], arguments[-len(params) :]
        extents = dict(zip(params, map(_integer, extents)))
        buffers = tuple(_buffer_name(pointer, names) for pointer in pointers)
        local = tuple(extents.get(f"threadIdx.{axis}", 1) for axis in "xyz")
        groups = tuple(extents.get(f"blockIdx.{axis}", 1) for axis in "xyz")
        launches.append(KernelLaunch(name, buffers, tuple(g * t for g, t in zip(groups, local)), local))
    if not launches:
        raise ValueError(f"{prim_func.attrs.get('global_symbol', 'the function')} launches no OpenCL kernel")
    return launches


def run_primfunc(opencl_context, prim_func, arrays, target):
    """Run ``prim_func`` on PoCL; ``arrays`` maps buffer names to inputs; returns all buffers by name.

    Buffers not in ``arrays`` (outputs, intermediates) start as NaN, so a value never written shows.
    """
    cl, context, queue = opencl_context
    target = tvm.target.Target(target)
    source = tvm.compile(tvm.IRModule({"main": prim_func.with_attr("global_symbol", "main")}), target=target)
    program = cl.Program(context, source.mod.imports[0].inspect_source()).build()
    host = {}
    for param in prim_func.params:
        shape, dtype = tuple(int(d) for d in param.ty.shape), str(param.ty.dtype)
        given = arrays.get(param.name)
        if given is not None and given.shape != shape:
            raise ValueError(f"buffer {param.name}: expected shape {shape}, got {given.shape}")
        host[param.name] = np.ascontiguousarray(given if given is not None else np.full(shape, np.nan, dtype))
    flags = cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR
    device = {name: cl.Buffer(context, flags, hostbuf=value) for name, value in host.items()}
    for launch in kernel_launches(prim_func, target):
        kernel = getattr(program, launch.name)
        kernel(queue, launch.global_size, launch.local_size, *(device[name] for name in launch.buffers))
    for name, value in host.items():
        cl.enqueue_copy(queue, value, device[name])
    queue.finish()
    return host


def _constant(expr):
    return expr.value.numpy()


def run_module(opencl_context, mod, target, *inputs):
    """Run the Relax ``main`` of ``mod`` (``call_tir`` and tuple bindings) on PoCL; returns its output.

    A tuple output comes back as a Python tuple.
    """
    main = mod["main"]
    values = {param: np.asarray(x, dtype="float32") for param, x in zip(main.params, inputs)}

    def value_of(expr):
        return _constant(expr) if isinstance(expr, tvm.ir.expr.Constant) else values[expr]

    for block in main.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if isinstance(call, relax.Var):
                values[binding.var] = values[call]
                continue
            if isinstance(call, relax.Tuple):
                values[binding.var] = tuple(value_of(field) for field in call.fields)
                continue
            if not (isinstance(call, relax.Call) and call.op.same_as(_CALL_TIR)):
                raise NotImplementedError(f"only call_tir bindings run on PoCL here, got {call}")
            func = mod[call.args[0]]
            names = [param.name for param in func.params]
            arrays = dict(zip(names, (value_of(arg) for arg in call.args[1].fields)))
            values[binding.var] = run_primfunc(opencl_context, func, arrays, target)[names[-1]]
    return values[main.body.body]


def run_torch_model(opencl_context, model, example, *, rules, plan=None, device="mali"):
    """``model`` through ``tvm_sparse``'s pipeline up to ``schedule`` for an OpenCL GPU, run on PoCL.

    Returns the output array, or None when ``tvm_sparse.compile`` refuses the model with a
    ``ModelError`` or its Relax ``main`` keeps bindings other than ``call_tir`` at that phase
    (such models are checked for compiling only).
    """
    import tvm_sparse
    from relay_passes import pipeline
    from relay_passes.layer_chains import weight_names
    from relay_passes.route_sparse import RouteSparseLayers
    from tvm_sparse.checks import ModelError
    from tvm_sparse.relax_utils import bind_params
    from tvm_sparse.target import parse_target

    target = parse_target({"kind": "opencl", "device": device})
    mod, params = tvm_sparse.from_torch(model, example)
    try:
        tvm_sparse.compile(mod, params, target=target, rules=rules, plan=plan)
    except ModelError:
        return None
    router = RouteSparseLayers(target, rules, plan, weight_names(mod["main"]))
    scheduled = pipeline.build_pipeline(target, [router], until="schedule")(bind_params(mod, params))
    try:
        actual = run_module(opencl_context, scheduled, target.with_host("llvm"), example.numpy())
    except NotImplementedError:
        return None
    if isinstance(actual, tuple):
        (actual,) = actual
    return actual
