"""When a sparse layer is worth a sparse kernel: the rules of the ``decide`` step."""

import dataclasses
from dataclasses import dataclass

from schedules.profiles import CORTEX_A76, GENERIC_X86, MALI, profile_for
from schedules.registry import kernels_for

#: The profile whose thresholds a family takes when the rules were not made for a target.
FAMILY_PROFILES = {"x86": GENERIC_X86, "arm_cpu": CORTEX_A76, "gpu": MALI}

_PROFILE_THRESHOLDS = ("pattern_max_density", "small_map_pixels", "small_map_pattern_max_density",
                       "block_max_density", "min_macs")


@dataclass(frozen=True)
class SparseRules:
    """Thresholds above which the dense schedule is kept.

    A threshold left None is the target's (:meth:`for_target`; the router makes its rules so),
    from its :class:`schedules.profiles.TargetProfile`: break-even points of the sparse kernels
    against the best dense code, measured with ``tvm-sparse bench kernels --density ...`` (see
    ``docs/sparse-kernels.md``). In a model, layers under ``min_macs`` lose to the dense code's
    lower overhead. A threshold given explicitly wins over the profile.

    Attributes
    ----------
    pattern_max_density : float or None
        A pattern-sparse 3x3 layer goes to the pattern kernel at this density or below.
    small_map_pixels : int or None
        Output maps of at most this many pixels (per image) use ``small_map_pattern_max_density``.
    small_map_pattern_max_density : float or None
        The pattern threshold on small maps, where the kernels fill their vectors less well.
    block_max_density : float or None
        A block-punched or BSR layer goes to its kernel at this density or below.
    min_macs : int or None
        Layers with fewer multiply-accumulates (dense count) stay dense: too small to gain.
    max_kernel_terms : int or None
        Layers with more non-zero weights stay dense (compile time). ``None`` (default): no limit;
        the kernels' entry points switch to the compact code, whose size does not grow with the
        weights, beyond the target profile's ``code_budget_default``.
    """

    pattern_max_density: float | None = None
    small_map_pixels: int | None = None
    small_map_pattern_max_density: float | None = None
    block_max_density: float | None = None
    min_macs: int | None = None
    max_kernel_terms: int | None = None

    def __post_init__(self):
        for name in ("pattern_max_density", "small_map_pattern_max_density", "block_max_density"):
            if getattr(self, name) is not None and not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_macs is not None and self.min_macs < 0:
            raise ValueError(f"min_macs must be >= 0, got {self.min_macs}")
        if self.max_kernel_terms is not None and self.max_kernel_terms < 1:
            raise ValueError(f"max_kernel_terms must be >= 1 or None, got {self.max_kernel_terms}")

    def with_profile(self, profile):
        """These rules with every threshold left None taken from ``profile`` (a ``TargetProfile``)."""
        return dataclasses.replace(self, **{name: getattr(profile, name) for name in _PROFILE_THRESHOLDS
                                            if getattr(self, name) is None})

    def for_target(self, target):
        """These rules with every threshold left None taken from ``target``'s profile."""
        return self.with_profile(profile_for(target))

    def decide(self, structure, macs, family, forced=False, terms=0, pixels=None):
        """Decide whether a layer runs a sparse kernel.

        Parameters
        ----------
        structure : relay_passes.sparsity_analysis.WeightStructure
        macs : int
            Dense multiply-accumulates of the layer.
        family : str
            Target family: ``"x86"``, ``"arm_cpu"`` or ``"gpu"``; thresholds left None are those of
            its :data:`FAMILY_PROFILES` entry.
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
        kernels = kernels_for(family, structure.kind)
        kernel = kernels[0].name if kernels else None
        if structure.kind in ("dense", "unstructured"):
            return None, f"{structure.kind} weight: the dense schedule is faster"
        if kernel is None:
            return None, f"no {structure.kind} kernel for {family} targets yet"
        if self.max_kernel_terms is not None and terms > self.max_kernel_terms:
            return None, f"{terms} weights > max_kernel_terms={self.max_kernel_terms} (compile time)"
        if forced:
            return kernel, "the plan asks for it"
        rules = self.with_profile(FAMILY_PROFILES[family])
        if macs < rules.min_macs:
            return None, f"{macs} MACs is below min_macs={rules.min_macs}"
        if structure.kind != "pattern":
            limit = rules.block_max_density
        elif pixels is not None and pixels <= rules.small_map_pixels:
            limit = rules.small_map_pattern_max_density
        else:
            limit = rules.pattern_max_density
        if structure.density > limit:
            return None, f"density {structure.density:.2f} is above {limit:.2f}, where dense is faster"
        return kernel, f"density {structure.density:.2f} <= {limit:.2f}"
