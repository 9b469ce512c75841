"""Rule-based mapping: a scheme per layer from its shape and the target's facts, without measuring.

The rules (the table of ``docs/mapping.md``), first match wins:

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
====  =====================================================  ==========================================

Every pruned layer gets the same kept fraction, chosen so that the whole model (dense layers
included) meets the compression target. A block-punched block keeps whole columns, so a block
with too few columns for the rate (a 1x1 block of one channel has one) takes more input channels.
"""

from dataclasses import dataclass

from schedules.profiles import profile_for
from schedules.target_info import as_target, target_family
from tvm_sparse.plan import BlockPunchedScheme, PatternScheme

#: Block shapes of the rules per target family: ``wide`` for small 3x3 maps, ``narrow`` elsewhere.
RULE_BLOCKS = {
    "x86": {"wide": (8, 4), "narrow": (8, 1)},
    "arm_cpu": {"wide": (8, 4), "narrow": (4, 1)},
    "gpu": {"wide": (16, 4), "narrow": (8, 4)},
}


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
    (doubling its input channels) whose columns give the rate within 5% is taken, at the rate its
    columns give exactly."""
    rows, channels = block
    taps = layer.kernel_size[0] * layer.kernel_size[1]

    def achieved(columns):
        return max(1, round(kept * columns)) / columns

    widths = [channels]
    while widths[-1] < layer.in_channels:
        widths.append(widths[-1] * 2)
    close = [w for w in widths if abs(achieved(w * taps) - kept) <= 0.05 * kept]
    channels = close[0] if close else min(widths, key=lambda w: abs(achieved(w * taps) - kept))
    columns = channels * taps
    return BlockPunchedScheme(block=(rows, channels), sparsity=round(1.0 - achieved(columns), 6))


def _sparse_rule(layer, profile, blocks, kept):
    if layer.kernel_size == (3, 3):
        pixels = layer.output_pixels
        limit = profile.pattern_3x3_min_pixels
        if limit is None or pixels <= limit:
            scheme = _block_punched(blocks["wide"], kept, layer)
            where = ("the " + profile.name + " profile gives no 3x3 layer a pattern" if limit is None
                     else f"a {pixels}-pixel map (<= {limit})")
            return scheme, f"R3: 3x3, {where}: block-punched {scheme.block}"
        return _pattern(kept), f"R4: 3x3 on a {pixels}-pixel map (> {limit}): pattern + connectivity"
    if layer.kernel_size == (1, 1):
        scheme = _block_punched(blocks["narrow"], kept, layer)
        return scheme, f"R5: 1x1 or linear: block-punched {scheme.block}"
    scheme = _block_punched(blocks["narrow"], kept, layer)
    return scheme, f"R6: {layer.kernel_size[0]}x{layer.kernel_size[1]} kernel: block-punched {scheme.block}"


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
        If the layers the rules keep dense already hold more than ``1 / compression`` of the weights.
    """
    if compression < 1:
        raise ValueError(f"compression must be at least 1, got {compression}")
    target = as_target(target)
    profile = profile_for(target)
    blocks = RULE_BLOCKS[target_family(target)]
    dense_rules = {layer.name: _dense_rule(layer, profile) for layer in layers}
    total = sum(layer.parameters for layer in layers)
    kept_dense = sum(layer.parameters for layer in layers if dense_rules[layer.name])
    prunable = total - kept_dense
    if prunable == 0:
        return [RuleDecision(layer.name, None, dense_rules[layer.name]) for layer in layers]
    kept = (total / compression - kept_dense) / prunable
    if kept <= 0:
        raise ValueError(f"compression {compression:g} is out of reach: the layers kept dense hold "
                         f"{kept_dense} of {total} weights ({total / kept_dense:.2f}x at most)")
    kept = min(kept, 1.0)
    decisions = []
    for layer in layers:
        if dense_rules[layer.name]:
            decisions.append(RuleDecision(layer.name, None, dense_rules[layer.name]))
        else:
            scheme, rule = _sparse_rule(layer, profile, blocks, kept)
            decisions.append(RuleDecision(layer.name, scheme, f"{rule}, keeping {1 / scheme.compression:.3f}"))
    reached = total / sum(layer.parameters / (d.scheme.compression if d.scheme else 1.0)
                          for layer, d in zip(layers, decisions))
    if reached < compression * 0.99:
        raise ValueError(f"compression {compression:g} is out of reach of the rules' schemes: they reach "
                         f"{reached:.1f}x (a pattern keeps at least 5% of its kernels, a block one column)")
    return decisions
