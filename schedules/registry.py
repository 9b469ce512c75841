"""The sparse kernels: one entry per kernel, read by the rules, the router and the tuner.

Each :class:`KernelSpec` names a kernel's weight formats, its target families, its entry point,
its default config, its tuning space and its default padding. The functions are named by module
path and loaded on first use, so that reading the registry (the rules, the command line) does not
import TVM.
"""

import importlib
from dataclasses import dataclass

from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight

#: The sparse weight formats by scheme name (the names of ``relay_passes.sparsity_analysis`` and plans).
FORMATS = {"pattern": PatternWeight, "block_punched": BlockPunchedWeight, "bsr": BSRWeight}

CPU_FAMILIES = ("x86", "arm_cpu")


def _load(path):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class KernelSpec:
    """One sparse kernel.

    Attributes
    ----------
    name : str
        The kernel's name (the entry point's function name).
    formats : tuple of str
        Scheme names (:data:`FORMATS`) of the weights it takes.
    families : tuple of str
        Target families it runs on (``schedules.target_info.target_family``).
    entry : str
        ``"module:function"`` of the entry point ``f(weight, data_shape, *, stride, padding,
        epilogue, target, config, name) -> PrimFunc``.
    default_padding : int
        The entry point's default padding.
    config_type : str
        ``"module:class"`` of its config.
    default : str
        ``"module:function"`` of ``f(weight, data_shape, target, *, stride, padding) -> config``.
    space : str or None
        ``"module:function"`` of ``f(weight, data_shape, target, *, stride, padding) -> [config]``,
        the candidates a tuner tries, the default first; None: not tunable.
    """

    name: str
    formats: tuple
    families: tuple
    entry: str
    default_padding: int
    config_type: str
    default: str
    space: str | None = None

    @property
    def entry_point(self):
        """The function that builds the kernel's PrimFunc."""
        return _load(self.entry)

    @property
    def config_class(self):
        """The dataclass of the kernel's knobs."""
        return _load(self.config_type)

    def takes(self, weight):
        """Whether ``weight`` (a format object) is one of the kernel's formats."""
        return any(isinstance(weight, FORMATS[scheme]) for scheme in self.formats)

    def _checked_padding(self, weight, padding):
        if not self.takes(weight):
            raise TypeError(f"{self.name} takes a {' or '.join(FORMATS[s].__name__ for s in self.formats)}, "
                            f"got {type(weight).__name__}")
        return self.default_padding if padding is None else padding

    def default_config(self, weight, data_shape, target=None, *, stride=1, padding=None):
        """The config the entry point picks for a layer when it is given none."""
        padding = self._checked_padding(weight, padding)
        return _load(self.default)(weight, data_shape, target, stride=stride, padding=padding)

    def candidates(self, weight, data_shape, target=None, *, stride=1, padding=None):
        """A small list of valid configs of one layer for a tuner, the default first.

        Raises ``ValueError`` for a kernel without a tuning space and ``TypeError`` for a weight
        of another format.
        """
        if self.space is None:
            raise ValueError(f"the {self.name} kernel has no tuning space")
        padding = self._checked_padding(weight, padding)
        return _load(self.space)(weight, data_shape, target, stride=stride, padding=padding)


_CPU = "schedules.sparse_cpu"
_CPU_CONFIG = f"{_CPU}.config:SpecializedConvConfig"
_CPU_DEFAULT = f"{_CPU}.space:layer_default_config"
_CPU_SPACE = f"{_CPU}.space:candidate_configs"

#: The kernels by name, in order of preference where two take the same format on one family.
KERNELS = {
    spec.name: spec
    for spec in (
        KernelSpec("pattern_conv2d", ("pattern",), CPU_FAMILIES, f"{_CPU}.pattern_conv2d:pattern_conv2d", 1,
                   _CPU_CONFIG, _CPU_DEFAULT, _CPU_SPACE),
        KernelSpec("block_punched_conv2d", ("block_punched",), CPU_FAMILIES,
                   f"{_CPU}.block_punched_conv2d:block_punched_conv2d", 0, _CPU_CONFIG, _CPU_DEFAULT, _CPU_SPACE),
        KernelSpec("bsr_conv2d", ("bsr",), CPU_FAMILIES, f"{_CPU}.bsr_conv2d:bsr_conv2d", 0, _CPU_CONFIG,
                   _CPU_DEFAULT, _CPU_SPACE),
        KernelSpec("pattern_conv2d_opencl", ("pattern",), ("gpu",),
                   "schedules.opencl.pattern_conv2d:pattern_conv2d_opencl", 1,
                   "schedules.opencl.pattern_conv2d:GpuTile", "schedules.opencl.pattern_conv2d:layer_default_tile"),
        KernelSpec("block_rows_conv2d_opencl", ("block_punched", "bsr"), ("gpu",),
                   "schedules.opencl.block_rows_conv2d:block_rows_conv2d_opencl", 0,
                   "schedules.opencl.block_rows_conv2d:BlockRowsTile",
                   "schedules.opencl.block_rows_conv2d:layer_default_tile"),
    )
}


def kernel(name):
    """The :class:`KernelSpec` named ``name``; ``ValueError`` for an unknown name."""
    if name not in KERNELS:
        raise ValueError(f"unknown sparse kernel {name!r}; expected one of {sorted(KERNELS)}")
    return KERNELS[name]


def kernels_for(family, weight_format=None):
    """The kernels that run on target ``family`` and, if given, take ``weight_format``.

    Parameters
    ----------
    family : str
        ``"x86"``, ``"arm_cpu"`` or ``"gpu"``.
    weight_format : str, type or None
        A scheme name (:data:`FORMATS`), a format class, or None for all.

    Returns
    -------
    list of KernelSpec
        In order of preference (an unknown family or format: empty).
    """
    if isinstance(weight_format, type):
        weight_format = next((s for s, cls in FORMATS.items() if cls is weight_format), None)
        if weight_format is None:
            return []
    return [spec for spec in KERNELS.values()
            if family in spec.families and (weight_format is None or weight_format in spec.formats)]
