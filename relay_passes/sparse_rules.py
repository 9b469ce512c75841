"""When a sparse layer is worth a sparse kernel: the rules of the ``decide`` step."""

from dataclasses import dataclass

_CPU_KERNELS = {"pattern": "pattern_conv2d", "block_punched": "block_punched_conv2d", "bsr": "bsr_conv2d"}

_GPU_KERNELS = {"pattern": "pattern_conv2d_opencl", "block_punched": "block_rows_conv2d_opencl",
                "bsr": "block_rows_conv2d_opencl"}

#: Structures that have a kernel in ``schedules``, per target family (``schedules.target_info``).
KERNELS = {"x86": _CPU_KERNELS, "arm_cpu": _CPU_KERNELS, "gpu": _GPU_KERNELS}


@dataclass(frozen=True)
class SparseRules:
    """Thresholds above which the dense schedule is kept.

    Calibrated on ResNet-18-CIFAR pruned 8x (pattern density 0.125 on 3x3 layers, block-punched
    density 0.25 on 1x1 and linear layers), timing each function inside the compiled model
    (Relax VM instrument, 1 thread, ``llvm -mcpu=rocketlake``) against the dense function it
    replaced, on a loaded machine: the routed 3x3 layers were faster (64 channels 32x32: 0.3-0.6 ms
    against 0.8-0.9 ms; 512 channels 4x4: 1.0-1.2 ms against 1.4-1.8 ms) but for one close call
    (stride 2, 128 to 256 channels: 0.29 ms in one run, 0.74 ms in another, against 0.52-0.64 ms
    dense), the 1x1 stride-2 projections at 0.25 were
    between 2x faster and 3x slower (noise), and the linear layer (5,120 MACs) was 3x slower
    (0.02 ms against 0.007 ms), hence ``min_macs``. No layer was measured between 0.25 and the
    thresholds below: they are upper bounds to re-measure, not measured break-even points.

    Attributes
    ----------
    pattern_max_density : float
        A pattern-sparse 3x3 layer goes to the pattern kernel at this density or below.
    block_max_density : float
        A block-punched layer goes to the block-punched kernel at this density or below.
    min_macs : int
        Layers with fewer multiply-accumulates (dense count) stay dense: too small to gain.
    max_kernel_terms : int or None
        Layers with more non-zero weights stay dense (compile time). ``None`` (default): no limit;
        the kernels' entry points switch to the compact code, whose size does not grow with the
        weights, beyond ``schedules.sparse_space.SELECTION_BUDGET``.
    """

    pattern_max_density: float = 0.34
    block_max_density: float = 0.34
    min_macs: int = 100_000
    max_kernel_terms: int | None = None

    def __post_init__(self):
        for name in ("pattern_max_density", "block_max_density"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_macs < 0:
            raise ValueError(f"min_macs must be >= 0, got {self.min_macs}")
        if self.max_kernel_terms is not None and self.max_kernel_terms < 1:
            raise ValueError(f"max_kernel_terms must be >= 1 or None, got {self.max_kernel_terms}")

    def decide(self, structure, macs, family, forced=False, terms=0):
        """Decide whether a layer runs a sparse kernel.

        Parameters
        ----------
        structure : relay_passes.sparsity_analysis.WeightStructure
        macs : int
            Dense multiply-accumulates of the layer.
        family : str
            Target family: ``"x86"``, ``"arm_cpu"`` or ``"gpu"``.
        forced : bool
            A verified plan asks for this structure: the density and size thresholds do not apply.
        terms : int
            Non-zero weights of the layer (the size of the specialised code).

        Returns
        -------
        (str or None, str)
            The kernel name (None: stay dense) and the reason.
        """
        kernel = KERNELS.get(family, {}).get(structure.kind)
        if structure.kind in ("dense", "unstructured"):
            return None, f"{structure.kind} weight: the dense schedule is faster"
        if kernel is None:
            return None, f"no {structure.kind} kernel for {family} targets yet"
        if self.max_kernel_terms is not None and terms > self.max_kernel_terms:
            return None, f"{terms} weights > max_kernel_terms={self.max_kernel_terms} (compile time)"
        if forced:
            return kernel, "the plan asks for it"
        if macs < self.min_macs:
            return None, f"{macs} MACs is below min_macs={self.min_macs}"
        limit = self.pattern_max_density if structure.kind == "pattern" else self.block_max_density
        if structure.density > limit:
            return None, f"density {structure.density:.2f} is above {limit:.2f}, where dense is faster"
        return kernel, f"density {structure.density:.2f} <= {limit:.2f}"
