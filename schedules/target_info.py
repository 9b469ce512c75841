"""What the schedules need to know about a target: its family, its vector width and its vector registers."""

import tvm
from tvm.target import Target, codegen


def as_target(target):
    """A ``tvm.target.Target`` from a Target, a dict, or None (the host CPU, with its real ``mcpu``)."""
    if target is None:
        return Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})
    return target if isinstance(target, Target) else Target(target)


def target_family(target):
    """``"x86"``, ``"arm_cpu"`` or ``"gpu"`` (OpenCL: Mali, Adreno)."""
    target = as_target(target)
    if target.kind.name == "opencl":
        return "gpu"
    if target.kind.name != "llvm":
        raise ValueError(f"no sparse schedule for target kind {target.kind.name!r}")
    return "arm_cpu" if "arm_cpu" in target.keys else "x86"


def vector_lanes(target, dtype="float32"):
    """How many ``dtype`` values one SIMD register of the target's CPU holds.

    x86 with AVX-512: 16 float32, AVX/AVX2: 8, SSE and ARM NEON: 4. (LLVM's own
    ``llvm_get_vector_width`` answers 512 bits for every x86 CPU in TVM 0.27, so the CPU features
    decide.)
    """
    target = as_target(target)
    bits = 128
    if target_family(target) == "x86":
        if codegen.llvm_cpu_has_features("avx512f", target):
            bits = 512
        elif codegen.llvm_cpu_has_features("avx", target):
            bits = 256
    return max(1, bits // tvm.runtime.DataType(dtype).bits)


def vector_registers(target):
    """How many SIMD registers the target's CPU has: 32 on AVX-512 and AArch64, else 16."""
    target = as_target(target)
    if target_family(target) == "arm_cpu":
        return 32 if "aarch64" in str(target.attrs.get("mtriple", "")) else 16
    return 32 if codegen.llvm_cpu_has_features("avx512f", target) else 16
