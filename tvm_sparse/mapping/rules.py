"""Rule-based mapping: a scheme and a rate per layer from its shape and the target's facts, without measuring.

The schemes (the table of ``docs/mapping.md``), first match wins:

====  =====================================================  ==========================================
rule  layer                                                   scheme
====  =====================================================  ==========================================
R1    grouped, depthwise or dilated; or the stem (< 8 inputs) dense: no sparse kernel takes it
R2    fewer MACs than the target profile's ``min_macs``       dense: a kernel launch costs more than it saves
R3    3x3 whose output map has at most the profile's           block-punched, the family's wide block: a
      ``pattern_3x3_min_pixels`` (any map when None)          pattern kernel has too few pixels to fill
                                                              its vectors, a block shares each load
R4    other 3x3                                               pattern (4 entries, 5 when the rate keeps
                                                              more than 4 of 9) + connectivity
R5    1x1 and linear                                          block-punched, the family's narrow block
R6    any other kernel size                                   block-punched, the family's narrow block
R7    a rate (below) above the profile's largest density      dense: its sparse kernel would be slower
====  =====================================================  ==========================================

The rate: a weight costs one multiply-add per output pixel, so pruning a weight of a layer with a
large output map saves more time than one of a small map. Each pruned layer keeps
``c / output pixels`` of its weights, at least :data:`MIN_KEPT`, with ``c`` the largest that meets
the compression target over the whole model (dense layers counted whole); a layer whose rate is
above the profile's largest density for its scheme (``pattern_max_density``, ``block_max_density``:
there the sparse kernel is slower than the dense one) stays dense. A block-punched block
keeps whole columns, so a block with too few columns for its rate (a 1x1 block of one channel has
one) takes more input channels; a layer at :data:`MIN_KEPT` keeps the family's block when its
columns come near the floor, as wide blocks are slower.
"""

from dataclasses import dataclass

from schedules.profiles import profile_for
from schedules.target_info import as_target, target_family
from tvm_sparse.mapping.candidates import density
from tvm_sparse.plan import BlockPunchedScheme, PatternScheme

#: Block shapes of the rules per target family: ``wide`` for small 3x3 maps, ``narrow`` elsewhere.
RULE_BLOCKS = {
    "x86": {"wide": (8, 4), "narrow": (8, 1)},
    "arm_cpu": {"wide": (8, 4), "narrow": (4, 1)},
    "gpu": {"wide": (16, 4), "narrow": (8, 4)},
}

#: The least fraction of its weights a layer keeps under the rules (a 3x3 block of 4 channels keeps 2 of its 36 columns).
MIN_KEPT = 0.05

#: How far a block's whole columns may take a layer from its rate before the block is widened (relative).
BLOCK_RATE_TOLERANCE = 0.02

#: The same for a layer kept at :data:`MIN_KEPT`, whose rate is a floor rather than the constant
#: ``c``'s (the layers above the floor absorb the difference): wide blocks cost speed
#: (docs/performance.md, "Per-layer mapping"), so the family's block is kept when its columns
#: come this near.
FLOOR_RATE_TOLERANCE = 0.15

#: How far above ``total / compression`` the rules' kept weights may end, when that is nearer to it.
OVER_BUDGET = 0.02

#: Bisection steps over the rate constant ``c`` (each halves its interval, on a log scale).
_RATE_STEPS = 60


@dataclass(frozen=True)
class RuleDecision:
    """The scheme of one layer (``None``: dense) and the rule that chose it, as a sentence."""

    name: str
    scheme: object
    rule: str


def _dense_rule(layer, profile):
    reason = layer.dense_reason()
    if reason is not None:
        return f"R1: {reason}"
    macs = layer.macs
    if macs < profile.min_macs:
        return f"R2: {macs} MACs, below the {profile.name} profile's min_macs {profile.min_macs}"
    return None


def _pattern(kept):
    entries = 5 if kept > 4 / 9 else 4
    connectivity = min(max(0.0, 1.0 - kept * 9 / entries), 0.95)
    return PatternScheme(entries=entries, library_size=8, connectivity=round(connectivity, 4))


def _block_punched(block, kept, layer):
    """Block-punched keeping about ``kept``: a block keeps whole columns, so the narrowest block
    (doubling its input channels) whose columns give the rate within :data:`BLOCK_RATE_TOLERANCE`
    (:data:`FLOOR_RATE_TOLERANCE` at the floor, ``kept`` = :data:`MIN_KEPT`) is taken, at the
    rate its columns give exactly."""
    tolerance = FLOOR_RATE_TOLERANCE if kept <= MIN_KEPT else BLOCK_RATE_TOLERANCE
    rows, channels = block
    taps = layer.kernel_size[0] * layer.kernel_size[1]

    def achieved(columns):
        return max(1, round(kept * columns)) / columns

    widths = [channels]
    while widths[-1] < layer.in_channels:
        widths.append(widths[-1] * 2)
    close = [w for w in widths if abs(achieved(w * taps) - kept) <= tolerance * kept]
    channels = close[0] if close else min(widths, key=lambda w: abs(achieved(w * taps) - kept))
    columns = channels * taps
    return BlockPunchedScheme(block=(rows, channels), sparsity=round(1.0 - achieved(columns), 6))


def _scheme_rule(layer, profile, blocks):
    """``(make_scheme(kept), largest density, sentence)`` of the scheme rules R3-R6."""
    if layer.kernel_size == (3, 3):
        pixels = layer.output_pixels
        limit = profile.pattern_3x3_min_pixels
        if limit is None or pixels <= limit:
            where = ("the " + profile.name + " profile gives no 3x3 layer a pattern" if limit is None
                     else f"a {pixels}-pixel map (<= {limit})")
            return (lambda kept: _block_punched(blocks["wide"], kept, layer), profile.block_max_density,
                    f"R3: 3x3, {where}: block-punched")
        return (_pattern, profile.pattern_max_density,
                f"R4: 3x3 on a {pixels}-pixel map (> {limit}): pattern + connectivity")
    kind = "R5: 1x1 or linear" if layer.kernel_size == (1, 1) else \
        f"R6: {layer.kernel_size[0]}x{layer.kernel_size[1]} kernel"
    return (lambda kept: _block_punched(blocks["narrow"], kept, layer), profile.block_max_density,
            f"{kind}: block-punched")


def _decide(layer, rule, rate_constant, profile):
    """The :class:`RuleDecision` of a prunable layer at the rate constant ``c``."""
    make, largest, sentence = rule
    kept = max(MIN_KEPT, rate_constant / layer.output_pixels)
    scheme = make(min(kept, 1.0))
    if density(scheme) > largest:
        return RuleDecision(layer.name, None, f"R7: keeping {min(kept, 1.0):.3f} is above the {profile.name} "
                                              f"profile's largest density {largest} for its scheme")
    block = f" {scheme.block}" if isinstance(scheme, BlockPunchedScheme) else ""
    floor = f", the floor {MIN_KEPT}" if kept <= MIN_KEPT else ""
    return RuleDecision(layer.name, scheme, f"{sentence}{block}, keeping {density(scheme):.3f} "
                                            f"({layer.output_pixels}-pixel map{floor})")


def _kept_weights(layers, decisions):
    return sum(layer.parameters * density(d.scheme) for layer, d in zip(layers, decisions))


def map_by_rules(layers, target, compression):
    """A :class:`RuleDecision` per layer for ``target``, meeting ``compression`` over all the layers' weights.

    Parameters
    ----------
    layers : sequence of tvm_sparse.mapping.layers.Layer
    target : str or tvm.target.Target
    compression : float
        Dense over kept weights of all the layers together (the dense ones count whole).

    Raises
    ------
    ValueError
        If the rules cannot prune that far: the layers they keep dense hold too many weights, or
        every prunable layer at :data:`MIN_KEPT` keeps too many.
    """
    if compression < 1:
        raise ValueError(f"compression must be at least 1, got {compression}")
    target = as_target(target)
    profile = profile_for(target)
    blocks = RULE_BLOCKS[target_family(target)]
    dense_rules = {layer.name: _dense_rule(layer, profile) for layer in layers}
    scheme_rules = {layer.name: _scheme_rule(layer, profile, blocks) for layer in layers
                    if dense_rules[layer.name] is None}
    total = sum(layer.parameters for layer in layers)
    budget = total / compression

    def decisions_at(rate_constant):
        return [RuleDecision(layer.name, None, dense_rules[layer.name]) if dense_rules[layer.name] else
                _decide(layer, scheme_rules[layer.name], rate_constant, profile) for layer in layers]

    # c below MIN_KEPT * the smallest map prunes every layer to MIN_KEPT; above largest map, all dense
    low = MIN_KEPT * min((layer.output_pixels for layer in layers), default=1)
    high = max((layer.output_pixels for layer in layers), default=1)
    best = decisions_at(low)
    best_kept = _kept_weights(layers, best)
    if best_kept > budget * (1 + OVER_BUDGET):
        raise ValueError(f"compression {compression:g} is out of reach of the rules: they reach "
                         f"{total / best_kept:.2f}x (layers kept dense by R1/R2 count whole, the others keep "
                         f"at least {MIN_KEPT})")
    for _ in range(_RATE_STEPS):
        middle = (low * high) ** 0.5
        candidate = decisions_at(middle)
        candidate_kept = _kept_weights(layers, candidate)
        if candidate_kept <= budget:
            low, best, best_kept = middle, candidate, candidate_kept
        else:
            high = middle
    # the kept weights grow in steps (whole columns; a layer turning dense): the step just above
    # the budget is taken when it is nearer to it and within OVER_BUDGET
    above = decisions_at(high)
    kept_above = _kept_weights(layers, above)
    if kept_above <= budget * (1 + OVER_BUDGET) and kept_above - budget < budget - best_kept:
        return above
    return best
