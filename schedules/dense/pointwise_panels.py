"""Which dense 1x1 layers are computed in panels or by columns on a target, and the shapes of their panels and tiles.

:mod:`schedules.dense.pointwise` (pixels in the lanes) and :mod:`schedules.dense.conv2d` (filters
in the lanes, packed weights) schedule a pointwise convolution in panels or by columns where these
decisions say so; the decisions read only the layer's shape ``(channels, filters, height, width)``
and the target's profile (``schedules/profiles.py``), and the module docstring of
:mod:`schedules.dense.pointwise` says why each pays.
"""

from dataclasses import dataclass

from ..profiles import profile_for
from ..target_info import vector_lanes
from .tiling import MIN_ACCUMULATORS, accumulator_budget, channel_block, conv_tile, divisors, largest_divisor


@dataclass(frozen=True)
class Panel:
    """How a pointwise convolution's output is cut into panels (see the module docstring).

    Attributes
    ----------
    filters : int
        Output channels of a panel (a multiple of the tile's filters).
    pixels : int
        Pixels of a panel: whole rows of the map, a multiple of the tile's pixels.
    channels : int
        Input channels summed per step: the block whose copied input, and the weights of one
        tile, take at most the profile's ``input_slab_bytes`` of the L1 cache.
    """

    filters: int
    pixels: int
    channels: int


def default_panel(target, shape, tile, filters_in_lanes=False, ragged=False):
    """The panels of a pointwise convolution on ``target``, or None where the tiles read the input directly.

    Parameters
    ----------
    target : tvm.target.Target
    shape : tuple of int
        ``(channels, filters, height, width)`` of the convolution.
    tile : tuple of int
        ``(kt, xt)``: filters and pixels of the register tile.
    filters_in_lanes : bool
        Whether the tile's vector lanes are filters (see :func:`schedule_panels`), not pixels.
    ragged : bool
        Whether the tile's pixels need not divide the map (:func:`ragged_filter_panel`): the panel
        is then the whole map, its last tile ragged.

    Returns
    -------
    Panel or None
        None when the profile sets no ``panel_pixels``; when the convolution has fewer than
        ``panel_min_channels`` input channels (the input column of a tile is then short), or
        fewer than ``panel_min_filters`` output channels, or fewer than
        ``panel_min_channels_in_l2`` input channels and an input that fits in ``l2_bytes``
        (:func:`panels_pay`); when
        the map is no larger than one panel with pixels in the lanes (the tiles then read whole
        rows of input already), or no larger than a vector with filters in the lanes (the 1x1 map
        of a squeeze-excite); or when no whole number of rows is a multiple of the tile. The panel
        is the most whole rows within ``panel_pixels``, or else the fewest rows that make whole tiles;
        its filters are :func:`panel_filters`.
    """
    profile = profile_for(target)
    channels, _, height, width = shape
    kt, xt = tile
    if profile.panel_pixels is None or not panels_pay(profile, shape):
        return None
    if height * width <= (vector_lanes(target) if filters_in_lanes else profile.panel_pixels):
        return None
    rows = [height] if ragged else [r for r in divisors(height, height) if (r * width) % xt == 0]
    if not rows:
        return None
    within = [r for r in rows if r * width <= profile.panel_pixels]
    pixels = (within[0] if within else rows[-1]) * width
    slab = largest_divisor(channels, profile.input_slab_bytes // (4 * (pixels + kt)))
    return Panel(panel_filters(profile, shape, kt, pixels), pixels, slab)


def filter_lane_panel(target, shape, kb, max_width=8):
    """The tile ``(kb, xt)`` and :class:`Panel` of a 1x1 layer with ``kb`` filters in the lanes, or None without panels.

    A panel's tiles run along the flattened map, so the tile's pixels are
    :func:`~schedules.dense.tiling.conv_tile`'s on one row of all the map's pixels. The weight
    packing and the schedule (``schedules.dense.conv2d``) both ask this, so that they agree.
    """
    _, _, height, width = shape
    tile = (kb, conv_tile(target, kb, 1, height * width, max_width)[1])
    panel = default_panel(target, shape, tile, filters_in_lanes=True)
    return None if panel is None else (tile, panel)


def panel_filters(profile, shape, kt, pixels):
    """Output channels of a panel of ``pixels`` pixels: the most filter tiles of ``kt`` that the profile allows.

    The panel's partial sums take at most ``panel_accumulator_bytes``. Where the profile knows its
    L2 cache and the whole input fits in half of it, a group's weights fit there too: they are
    read again for every panel of pixels. The parallel tasks (panels of pixels x groups of
    filters) are a multiple of the profile's ``panel_task_multiple`` where a group allows it, else
    at least ``parallel_tasks``. ``kt`` when no group qualifies.
    """
    channels, filters, height, width = shape
    panels = height * width // pixels
    groups = [kt * d for d in divisors(filters // kt, filters) if kt * d * pixels * 4 <= profile.panel_accumulator_bytes]
    half_l2 = None if profile.l2_bytes is None else profile.l2_bytes // 2
    if panels > 1 and half_l2 is not None and input_bytes(shape) <= half_l2:
        groups = [g for g in groups if 4 * g * channels <= half_l2]
    even = [g for g in groups if splits_evenly(profile, panels * filters // g)]
    enough = [g for g in groups if panels * filters // g >= profile.parallel_tasks]
    return (even or enough or [kt])[0]


def splits_evenly(profile, tasks):
    """Whether ``tasks`` parallel tasks are a multiple of the profile's ``panel_task_multiple`` (False without one)."""
    return profile.panel_task_multiple is not None and tasks % profile.panel_task_multiple == 0


def panel_tasks(shape, panel):
    """The parallel tasks of a pointwise convolution of ``shape`` in ``panel``: its panels of pixels x groups of filters."""
    _, filters, height, width = shape
    return height * width // panel.pixels * (filters // panel.filters)


def input_bytes(shape):
    """Bytes of the float32 input of a pointwise convolution of ``shape`` ``(channels, filters, height, width)``."""
    channels, _, height, width = shape
    return 4 * channels * height * width


def output_bytes(shape):
    """Bytes of the float32 output of a pointwise convolution of ``shape`` ``(channels, filters, height, width)``."""
    _, filters, height, width = shape
    return 4 * filters * height * width


def panels_pay(profile, shape):
    """Whether a pointwise convolution of ``shape`` ``(channels, filters, height, width)`` is long enough for panels.

    A panel copies its input once for all its filter tiles, and stores and reloads its partial
    sums once per output: that pays where the reduction is long, or where the input is too large
    for the L2 cache (the tiles would read it from beyond, once per filter tile), and only with
    enough filter tiles to share the copy (the ``panel_*`` fields of ``profile``).
    """
    channels = shape[0]
    fits_l2 = profile.l2_bytes is None or input_bytes(shape) <= profile.l2_bytes
    return shares_input_copy(profile, shape) and (channels >= profile.panel_min_channels_in_l2 or not fits_l2)


def shares_input_copy(profile, shape):
    """Whether a pointwise convolution of ``shape`` ``(channels, filters, height, width)`` pays for a copy of its input.

    Panels and columns copy their input once for all their filter tiles: the copy pays with at
    least ``panel_min_channels`` input channels (on shorter reductions a tile's input column stays
    in the L1 cache) and ``panel_min_filters`` filters to share it.
    """
    channels, filters, _, _ = shape
    return channels >= profile.panel_min_channels and filters >= profile.panel_min_filters


def ragged_filter_panel(target, shape):
    """The tile ``(kb, xt)`` and :class:`Panel` of a 1x1 layer with filters in the lanes, its last tile of pixels ragged; or None.

    On maps whose pixel count has no divisor that fills the accumulators (7x7: 49 pixels, 8
    filters x 7 pixels on AVX2, fewer accumulators than :data:`~schedules.dense.tiling.MIN_ACCUMULATORS`),
    two vectors of filters take as many pixels as the accumulators allow (16 x 6 on AVX2), and
    the last tile of the flattened map computes padding. Where the panel's parallel tasks would
    not split evenly between the threads (:func:`splits_evenly`: 96 filters on a 14x14 map make
    3 tasks of 32), one vector of filters takes twice the pixels, if that gives an even count.
    None where the whole tiles of :func:`~schedules.dense.tiling.channel_block` fill the
    accumulators, where two vectors do not divide the filters, where the padding exceeds the
    profile's ``tile_waste``, or where the layer gets no panels.

    Parameters
    ----------
    target : tvm.target.Target
    shape : tuple of int
        ``(channels, filters, height, width)`` of the convolution (its output map).

    Returns
    -------
    tuple or None
        ``((kb, xt), panel)``: the weight is packed by ``kb``, and the panel is the whole map.
    """
    _, filters, height, width = shape
    lanes, pixels = vector_lanes(target), height * width
    kb = channel_block(filters, target, 1, pixels)  # the tiles run along the flattened map
    if -(-kb // lanes) * conv_tile(target, kb, 1, pixels)[1] >= MIN_ACCUMULATORS or filters % (2 * lanes):
        return None
    profile, choices = profile_for(target), []
    for vectors in (2, 1):
        tile = (vectors * lanes, accumulator_budget(target) // vectors)
        panel = default_panel(target, shape, tile, filters_in_lanes=True, ragged=True)
        if panel is not None and not profile.exceeds_tile_waste(pixels, tile[1]):
            choices.append((tile, panel))
    even = [choice for choice in choices if splits_evenly(profile, panel_tasks(shape, choice[1]))]
    return (even or choices or [None])[0]


def column_tile(target, shape):
    """The register tile ``(kt, xt)`` of a pointwise convolution computed by columns on ``target``, or None.

    Columns take the layers whose input copy pays (:func:`shares_input_copy`; :func:`panels_pay`
    also asks panels for a long reduction or an input beyond the L2 cache) where the profile sets
    ``pointwise_columns`` and the output fits in ``l2_bytes``: a
    column writes a short piece of every filter's row, as many streams as filters, which the
    hardware prefetchers do not follow beyond the L2 cache (``docs/performance.md``).

    The tile is the profile's ``pointwise_pixel_vectors`` vectors of pixels, else one, times
    :data:`~schedules.dense.tiling.MIN_ACCUMULATORS` filters (or the largest divisor of the
    filters below it, within the accumulator budget): the first whose vectors divide the map,
    whose column fits in ``input_slab_bytes``, whose accumulators are at least
    :data:`~schedules.dense.tiling.MIN_ACCUMULATORS` and whose columns are at least
    ``parallel_tasks``. None where none is, or where the map does not hold whole vectors.

    Parameters
    ----------
    target : tvm.target.Target
    shape : tuple of int
        ``(channels, filters, height, width)`` of the convolution.
    """
    profile = profile_for(target)
    channels, filters, height, width = shape
    lanes, pixels = vector_lanes(target), height * width
    output_fits_l2 = profile.l2_bytes is None or output_bytes(shape) <= profile.l2_bytes
    if not profile.pointwise_columns or pixels % lanes or not shares_input_copy(profile, shape) or not output_fits_l2:
        return None
    for vectors in sorted({profile.pointwise_pixel_vectors, 1}, reverse=True):
        kt = largest_divisor(filters, min(MIN_ACCUMULATORS, accumulator_budget(target) // vectors))
        if ((pixels // lanes) % vectors == 0 and 4 * channels * lanes * vectors <= profile.input_slab_bytes
                and kt * vectors >= MIN_ACCUMULATORS and pixels // (lanes * vectors) >= profile.parallel_tasks):
            return kt, lanes * vectors
    return None
