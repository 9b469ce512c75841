"""Register-tile sizes shared by the dense CPU schedules (``schedules.dense``).

A dense kernel keeps a tile of outputs in vector registers while it walks the reduction: the
tile must fit the register file (with a few registers left for the operands) and its sides must
divide the output extents, so that the loops need no bound checks and LLVM can unroll them.
"""

from ..profiles import profile_for
from ..target_info import vector_lanes, vector_registers


def accumulator_budget(target):
    """Vector accumulators a register tile may hold, leaving registers for the loaded operands."""
    registers = vector_registers(target)
    return registers - 8 if registers > 16 else registers - 4


#: Independent vector accumulators a register tile needs so that its multiply-adds never wait on
#: each other: an FMA's latency (4 cycles) times the FMA pipes (2) on the x86 and Cortex-A7x cores.
MIN_ACCUMULATORS = 8


#: Bytes below which TVM keeps a constant-size buffer on the stack (``runtime::kMaxStackAlloca``); a
#: larger accumulator tile is allocated from the workspace pool, zeroed, stored and reloaded per tile.
STACK_BYTES = 1024


def filter_tiles_innermost(target, weight_elements, input_bytes=None, output_bytes=None):
    """Whether a convolution's loop over register tiles takes every filter tile of a pixel tile in turn.

    Where all its ``weight_elements`` float32 weights fit in the L1 data cache they stay there, and
    the input of a pixel tile is read from memory once for all its filter tiles; with the filter
    tiles outermost, each of them would stream the whole input again. Not where the profile knows
    its L2 cache and the output (``output_bytes``) is larger than it while the input
    (``input_bytes``) fits: every pixel tile would then write a piece of every filter's row, as
    many streams as filters, which miss to memory in a running model, while the filter tiles
    outermost write a few rows in sequence and read the input again from L2
    (``docs/performance.md``, "Expansions by filter tiles").
    """
    profile = profile_for(target)
    if 4 * weight_elements > profile.l1_data_bytes:
        return False
    return not (profile.l2_bytes is not None and output_bytes is not None and input_bytes is not None
                and output_bytes > profile.l2_bytes >= input_bytes)


def stack_accumulators(target):
    """Float32 vector accumulators a register tile may hold and still be a stack buffer (15 on AVX-512)."""
    return (STACK_BYTES - 1) // (4 * vector_lanes(target))


def divisors(extent, limit):
    """The divisors of ``extent`` that are at most ``limit``, largest first."""
    return [d for d in range(min(extent, limit), 0, -1) if extent % d == 0]


def largest_divisor(extent, limit):
    """The largest divisor of ``extent`` that is at most ``limit`` (at least 1)."""
    return divisors(extent, max(1, limit))[0]


def channel_block(channels, target, height, width, max_width=8):
    """Output channels per register tile of a convolution with a ``height`` x ``width`` output map.

    One vector of the target when it divides ``channels``; two vectors when they divide
    ``channels`` and their tile (:func:`conv_tile`) holds at least as many accumulators, with 16
    registers (AVX2, 32-bit ARM; on maps 7 wide two vectors leave room for one pixel only), or
    more accumulators, with 32 where the profile sets ``filter_vector_pairs``. A channel count that
    no vector width divides gets its largest divisor below the vector width.
    """
    lanes = vector_lanes(target)
    one_vector = largest_divisor(channels, lanes)
    many_registers = vector_registers(target) > 16
    if channels % (2 * lanes) or (many_registers and not profile_for(target).filter_vector_pairs):
        return one_vector

    def accumulators(kb):
        yt, xt = conv_tile(target, kb, height, width, max_width)
        return -(-kb // lanes) * yt * xt

    if many_registers:
        return 2 * lanes if accumulators(2 * lanes) > accumulators(one_vector) else one_vector
    return max((2 * lanes, one_vector), key=accumulators)


def conv_tile(target, kb, height, width, max_width=8):
    """Rows and columns of the untuned register tile of ``kb`` output channels: what the accumulators allow."""
    pixels = accumulator_budget(target) // max(1, kb // vector_lanes(target))
    return spatial_tile(height, width, max(1, pixels), max_width)


def spatial_tile(height, width, pixels, max_width=8):
    """Rows and columns ``(yt, xt)`` of an output tile of at most ``pixels`` pixels.

    The columns (the contiguous axis) come first, up to ``max_width``; the rows fill the rest of
    the budget. Both divide the output extents.
    """
    xt = largest_divisor(width, min(max_width, pixels))
    yt = largest_divisor(height, max(1, pixels // xt))
    return yt, xt


def sample_divisor(sch, extent, limit, default):
    """A tunable choice (``sch.sample_categorical``) among the divisors of ``extent`` up to ``limit``.

    The candidates are equally likely; ``default`` is the first one and the initial decision, so
    an untuned trace of the space is the untuned schedule.
    """
    candidates = [default] + [d for d in divisors(extent, limit) if d != default]
    return sch.sample_categorical(candidates, [1.0 / len(candidates)] * len(candidates), decision=0)
