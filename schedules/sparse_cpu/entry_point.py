"""What the three sparse CPU entry points (pattern, block-punched, BSR) share.

An entry point checks its weight and target, works out the convolution, takes the given config or
the default one (:func:`schedules.sparse_cpu.space.default_sparse_config`) and writes the kernel
with the code generator the config names: literal weights
(:mod:`schedules.sparse_cpu.specialized`) or the table-driven compact code
(:mod:`schedules.sparse_cpu.compact`). Only the format's terms, filter blocks and compact code
differ, described by a :class:`FormatCode`.
"""

from dataclasses import dataclass

from ..target_info import as_target, target_family
from .compact import block_row_entries, build_block_rows_compact
from .space import block_rows_of, default_sparse_config, kernel_geometry, stored_terms
from .specialized import build_specialized_conv, filter_blocks_of


@dataclass(frozen=True)
class FormatCode:
    """How one sparse format feeds the code generators.

    Attributes
    ----------
    kernel : str
        The entry point's name (for error messages).
    weight_type : type
        The format class.
    terms : callable
        ``terms(weight)``: per filter, its ``(input channel, tap row, tap column, weight)`` terms.
    filter_blocks : callable
        ``filter_blocks(weight, terms, size)``: the filters of each register tile of the literal
        code, every filter once, at most ``size`` per tile.
    compact : callable
        ``compact(weight, geometry, epilogue, config, name, param_shapes)``: the compact kernel,
        with its table attached.
    """

    kernel: str
    weight_type: type
    terms: object
    filter_blocks: object
    compact: object


def check_cpu_kernel_args(weight, weight_type, target, kernel_name):
    """Raise unless ``weight`` is a ``weight_type`` and ``target`` a CPU; return the parsed target."""
    if not isinstance(weight, weight_type):
        raise TypeError(f"weight must be a {weight_type.__name__}, got {type(weight).__name__}")
    target = as_target(target)
    if target_family(target) == "gpu":
        raise ValueError(f"{kernel_name} is the CPU kernel; use the OpenCL schedule for GPU targets")
    return target


def build_cpu_kernel(code, weight, data_shape, *, stride, padding, epilogue, target, config, name):
    """The PrimFunc of a sparse CPU entry point.

    Parameters
    ----------
    code : FormatCode
    weight, data_shape, stride, padding, epilogue, target, config, name
        As :func:`schedules.sparse_cpu.pattern_conv2d.pattern_conv2d`, which also says what it returns.
    """
    target = check_cpu_kernel_args(weight, code.weight_type, target, code.kernel)
    geometry, param_shapes = kernel_geometry(weight, data_shape, stride, padding)
    config = config or default_sparse_config(geometry, target, stored_terms(weight), block_rows_of(weight))
    if config.codegen == "compact":
        return code.compact(weight, geometry, epilogue, config, name, param_shapes)
    terms = code.terms(weight)
    blocks = code.filter_blocks(weight, terms, config.filters)
    return build_specialized_conv(geometry, blocks, terms, epilogue, config, name, param_shapes)


def block_rows_code(kernel, weight_type, terms, tile_entries=None):
    """The :class:`FormatCode` of a format whose block rows of filters share their input columns
    (block-punched, BSR): a register tile is a block row, cut to the config's ``filters``, so every
    input load of a column feeds the tile's filters.

    ``tile_entries(weight, tiles)`` gives the compact code's entries of each tile where the format
    builds them from its arrays; by default they come from its terms (:func:`block_row_entries`),
    one Python tuple per stored weight, which costs seconds on large layers.
    """

    def filter_blocks(weight, _terms, size):
        return filter_blocks_of(weight.shape[0], weight.block[0], size)

    def compact(weight, geometry, epilogue, config, name, param_shapes):
        tiles = filter_blocks_of(weight.shape[0], weight.block[0], config.filters)
        entries = tile_entries(weight, tiles) if tile_entries else block_row_entries(terms(weight), tiles)
        return build_block_rows_compact(geometry, tiles, entries, epilogue, config, name, param_shapes)

    return FormatCode(kernel, weight_type, terms, filter_blocks, compact)
