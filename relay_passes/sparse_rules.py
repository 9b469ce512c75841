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

    The density thresholds are break-even points measured on this 2-core x86 (AVX-512,
    ``llvm -mcpu=rocketlake``, 1 thread, relu(conv + bias), batch 1, medians of 11 interleaved
    rounds; the sparse kernel's default config against the faster of tvm_sparse's dense schedule
    and ONNX Runtime; dense time / sparse time):

    ============================  ==========  ==========  ==========
    layer                         density      density     density
    ============================  ==========  ==========  ==========
    pattern 3x3, 64 ch, 32x32     0.22: 2.28  0.33: 1.45  0.44: 1.15
    pattern 3x3, 128 ch, 16x16    0.22: 2.31  0.33: 1.69  0.44: 1.07
    pattern 3x3, 256 ch, 8x8      0.22: 1.58  0.33: 1.29  0.44: 0.89
    pattern 3x3, 512 ch, 4x4      0.22: 1.48  0.33: 0.92  0.44: 0.88
    block-punched 8x4, 128 ch     0.25: 3.01  0.40: 1.91  0.60: 1.33
    BSR 8x4 1x1, 144 -> 24, 56x56 0.23: 7.62  0.46: 4.25  0.60: 3.05
    ============================  ==========  ==========  ==========

    Measured with ``tvm-sparse bench kernels --layer L --density 0.5 0.75 1 --threads 1`` on the
    layers ``resnet18-cifar-{64x32,128x16,256x8,512x4}`` (pattern: the fraction of 3x3 kernels
    kept, times 4/9 is the density), and ``--density 0.25 0.4 0.6`` on ``block-punched-128x16``
    and ``mobilenetv2-1x1-144to24x56``. A second run gave 1.44 at density 0.27 on 4x4 maps and
    1.38 at 0.6 on the block-punched layer.

    Hence 0.34 for patterns, 0.25 on maps of :attr:`small_map_pixels` or fewer, and 0.6 for the
    block formats (the highest density measured; the break-even lies above). Other CPUs and the
    GPU kernels were not measured: the same thresholds apply to them. In a model, layers under
    ``min_macs`` lost (a 5,120-MAC linear layer: 0.02 ms against 0.007 ms dense).

    Attributes
    ----------
    pattern_max_density : float
        A pattern-sparse 3x3 layer goes to the pattern kernel at this density or below.
    small_map_pixels : int
        Output maps of at most this many pixels (per image) use ``small_map_pattern_max_density``.
    small_map_pattern_max_density : float
        The pattern threshold on small maps, where the kernels fill their vectors less well.
    block_max_density : float
        A block-punched or BSR layer goes to its kernel at this density or below.
    min_macs : int
        Layers with fewer multiply-accumulates (dense count) stay dense: too small to gain.
    max_kernel_terms : int or None
        Layers with more non-zero weights stay dense (compile time). ``None`` (default): no limit;
        the kernels' entry points switch to the compact code, whose size does not grow with the
        weights, beyond ``schedules.sparse_space.SELECTION_BUDGET``.
    """

    pattern_max_density: float = 0.34
    small_map_pixels: int = 16
    small_map_pattern_max_density: float = 0.25
    block_max_density: float = 0.6
    min_macs: int = 100_000
    max_kernel_terms: int | None = None

    def __post_init__(self):
        for name in ("pattern_max_density", "small_map_pattern_max_density", "block_max_density"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_macs < 0:
            raise ValueError(f"min_macs must be >= 0, got {self.min_macs}")
        if self.max_kernel_terms is not None and self.max_kernel_terms < 1:
            raise ValueError(f"max_kernel_terms must be >= 1 or None, got {self.max_kernel_terms}")

    def decide(self, structure, macs, family, forced=False, terms=0, pixels=None):
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
        pixels : int or None
            Output pixels per image (``OH x OW``; None: not a small map).

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
        if structure.kind != "pattern":
            limit = self.block_max_density
        elif pixels is not None and pixels <= self.small_map_pixels:
            limit = self.small_map_pattern_max_density
        else:
            limit = self.pattern_max_density
        if structure.density > limit:
            return None, f"density {structure.density:.2f} is above {limit:.2f}, where dense is faster"
        return kernel, f"density {structure.density:.2f} <= {limit:.2f}"
