"""The default knobs of the literal-weight code for a layer and a target: register tile, L1 blocking, split."""

import math

from ..target_info import vector_registers
from .config import SpecializedConvConfig, estimated_code_size

#: Fewest input channels per block chosen by :func:`default_config`.
MIN_CHANNEL_BLOCK = 8


def tile_within_waste(extent, most, profile):
    """The largest tile side up to ``most`` (at least 1) whose whole tiles cover ``extent`` with
    at most the profile's ``tile_waste`` computed per valid element."""
    tile = max(1, most)
    while tile > 1 and profile.exceeds_tile_waste(extent, tile):
        tile -= 1
    return tile


def lanes_within_waste(extent, lanes, profile):
    """``lanes`` halved (down to 4) while vectors of them would cover ``extent`` with more than the
    profile's ``vector_waste`` computed per valid element."""
    while lanes > 4 and profile.exceeds_vector_waste(extent, lanes):
        lanes //= 2
    return lanes


def default_config(geometry, lanes, n_terms, profile, filters=2, accumulators=16):
    """Knobs of the literal-weight code that fit the register file, the L1 cache and a compile-time budget.

    Parameters
    ----------
    geometry : ConvGeometry
    lanes : int
        The target's float32 SIMD width (16 AVX-512, 8 AVX2, 4 NEON).
    n_terms : int
        Terms of all filters (:func:`schedules.sparse_cpu.config.estimated_code_size`).
    profile : schedules.profiles.TargetProfile
        The target's input slab size, tile waste, parallel tasks and code-size ceiling.
    filters : int
        Preferred filters per register tile; raised when fewer rows fit the code budget.
    accumulators : int
        Vector registers the register tile may use (half the register file: 16 on AVX-512 and
        AArch64, 8 on AVX2); see :func:`accumulators_for`.
    """
    out_h, out_w = geometry.out_height, geometry.out_width
    # Narrower vectors when the output width would waste more of a wide one than the profile allows.
    lanes = lanes_within_waste(out_w, lanes, profile)
    # Accumulators: filters x rows x vectors = about half of the register file.
    registers = accumulators
    width_vectors = math.ceil(out_w / lanes)
    vectors = max(1, min(width_vectors, registers // (filters * 2), 4))
    while width_vectors % vectors:
        vectors -= 1
    rows = max(1, min(out_h, registers // (filters * vectors), 4))
    while rows > 1 and estimated_code_size(n_terms, rows, vectors) > profile.code_budget_ceiling:
        rows -= 1
    rows = tile_within_waste(out_h, rows, profile)
    filters = max(filters, registers // (rows * vectors))
    # A task runs its share of the code over all rows of an image: the code of a (channel block,
    # filter block) region, far larger than the instruction cache, is then fetched once and run
    # on every row tile. Tasks split the filter blocks instead.
    row_tiles = math.ceil(out_h / rows)
    filter_splits = filter_parts(geometry, 1, profile)
    slab_rows = (row_tiles * rows - 1) * geometry.stride[0] + geometry.kernel[0]
    slab_width = width_vectors * lanes + geometry.kernel[1]
    # An L1-sized input slab, but at least MIN_CHANNEL_BLOCK channels so that a region's FMAs
    # outweigh re-reading its partial sums; for a 1x1 layer, whose slab is the whole map (one row
    # of all pixels), MIN_CHANNEL_BLOCK kept channels.
    min_block = MIN_CHANNEL_BLOCK
    if geometry.kernel == (1, 1) and n_terms:
        density = n_terms / (geometry.filters * geometry.channels)
        min_block = math.ceil(MIN_CHANNEL_BLOCK / density)
    channel_block = max(min_block, profile.input_slab_bytes // (4 * slab_rows * slab_width))
    channel_block = min(geometry.channels, channel_block)
    return SpecializedConvConfig(lanes, vectors, rows, filters, channel_block, row_tiles, filter_splits)


def filter_parts(geometry, pixel_blocks, profile):
    """Parts the filters are split into: with ``pixel_blocks`` blocks of each image's pixels, the
    profile's ``parallel_tasks`` tasks (at least one part)."""
    return max(1, math.ceil(profile.parallel_tasks / (geometry.batch * pixel_blocks)))


def accumulators_for(target):
    """Vector accumulators of a register tile on ``target``: half its SIMD registers."""
    return vector_registers(target) // 2

