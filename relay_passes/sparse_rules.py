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

    Attributes
    ----------
    pattern_max_density : float
        A pattern-sparse 3x3 layer goes to the pattern kernel at this density or below.
    block_max_density : float
        A block-punched layer goes to the block-punched kernel at this density or below.
    min_macs : int
        Layers with fewer multiply-accumulates (dense count) stay dense: too small to gain.
    max_kernel_terms : int or None
        Layers with more non-zero weights stay dense. The kernels are specialised to every weight
        (a literal in the code), so their compile time grows with this count: a 64-channel 3x3
        layer at 8x (4,608 weights) took 35-110 s to compile on this loaded 2-core machine.
        ``None`` lifts the limit.
    """

    pattern_max_density: float = 0.34
    block_max_density: float = 0.34
    min_macs: int = 100_000
    max_kernel_terms: int | None = 10_000

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
