"""Build one dense layer as a Relax module, run it through the tvm_sparse pipeline, compare with PyTorch."""

import numpy as np
import torch
import tvm
from tvm import relax
from tvm.target import codegen

from relay_passes import pipeline
from tests.conftest import skip_unless_this_cpu_runs


#: An AVX-512 CPU (Zen 4), for checks of what the schedules decide there, whatever this CPU is.
AVX512 = {"kind": "llvm", "mcpu": "znver4"}

#: AVX2 with FMA and 16 vector registers: its code runs on every x86 CPU these tests run on.
AVX2 = {"kind": "llvm", "mcpu": "skylake"}


#: AVX2 on a CPU whose profile computes pointwise convolutions in panels (``panel_pixels``, Zen 3).
ZEN3 = {"kind": "llvm", "mcpu": "znver3"}


def host_target():
    """This CPU, with its real features (AVX-512 here), as the benchmarks use it."""
    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def conv2d_module(x_shape, w, stride, padding, dilation, groups, bias, epilogue, residual_shape):
    """A Relax ``main(x[, residual])`` computing ``epilogue(conv2d(x, w) + bias [+ residual])``."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    params = [x]
    if residual_shape is not None:
        params.append(relax.Var("residual", relax.TensorType(residual_shape, "float32")))
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), strides=stride, padding=padding,
                                           dilation=dilation, groups=groups))
            if bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, -1, 1, 1))))
            if residual_shape is not None:
                y = bb.emit(relax.op.add(y, params[1]))
            if epilogue == "relu":
                y = bb.emit(relax.op.nn.relu(y))
            elif epilogue == "relu6":
                y = bb.emit(relax.op.clip(y, 0.0, 6.0))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def linear_module(x_shape, w, bias, epilogue):
    """A Relax ``main(x)`` computing ``epilogue(x @ w.T + bias)`` as PyTorch's ``linear`` imports."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.op.permute_dims(relax.const(w))))
            if bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(bias)))
            if epilogue == "relu":
                y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def scheduled_module(mod, target):
    """``mod`` after the pipeline's phases up to and including ``schedule`` (for inspection)."""
    return pipeline.build_pipeline(target, until="schedule")(mod)


def primfuncs(mod):
    """``{name: PrimFunc}`` of a module."""
    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def build_scheduled(scheduled, target):
    """Finish the pipeline on a module from :func:`scheduled_module` and return a VM on this CPU.

    Continuing from the inspected module (instead of compiling from scratch) halves the test time:
    the ``prepare`` and ``legalize`` phases (their constant folding builds code) run once.
    """
    skip_unless_this_cpu_runs(target)
    executable = tvm.compile(scheduled, target=target, relax_pipeline=pipeline.build_pipeline(target, start="lower"))
    return relax.VirtualMachine(executable, tvm.cpu())


def run(scheduled, target, *inputs):
    """Build a module from :func:`scheduled_module` and run ``main`` on this CPU."""
    vm = build_scheduled(scheduled, target)
    return vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs]).numpy()


def torch_conv2d(x, w, bias, stride, padding, dilation, groups, residual, epilogue):
    """The PyTorch reference of :func:`conv2d_module`."""
    with torch.no_grad():
        y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                       None if bias is None else torch.from_numpy(bias),
                                       stride, padding, dilation, groups)
        if residual is not None:
            y = y + torch.from_numpy(residual)
        if epilogue == "relu":
            y = torch.relu(y)
        elif epilogue == "relu6":
            y = torch.clamp(y, 0.0, 6.0)
    return y.numpy()
