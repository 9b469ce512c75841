"""From a sum of layer entries to a whole model's latency: a line fitted on two models timed together.

A latency-table entry is one layer compiled and timed alone. Inside a model the same layer costs
something else: its input arrives in the layout the previous kernel left (a layer alone packs
and unpacks it), its epilogue is fused, the VM's allocations are planned once. Pooling and
element-wise tails cost on top. A constant remainder does not carry these over from a dense
model to a pruned one, so the table predicts a model as a line of its entries' sum::

    predicted = offset_ms + scale * sum(entries)

fitted on two whole models timed in one interleaved row: the dense model, and the *reference*
model whose every layer takes its fastest candidate in the table (a mapped model lies between
the two, mostly close to the reference).
"""

from dataclasses import asdict, dataclass

#: The two models of the fit must differ by at least this fraction of their entries' sums; closer,
#: only the offset is fitted (scale 1).
MIN_SPREAD = 0.05


@dataclass(frozen=True)
class ModelCalibration:
    """``predicted = offset_ms + scale * sum(entries)``, and the two measurements it was fitted on.

    Attributes
    ----------
    scale, offset_ms : float
    dense_ms, dense_sum_ms : float
        The dense model's time, and the sum of its layers' dense entries.
    reference_ms, reference_sum_ms : float
        The same for the model of each layer's fastest candidate.
    """

    scale: float
    offset_ms: float
    dense_ms: float
    dense_sum_ms: float
    reference_ms: float
    reference_sum_ms: float

    @classmethod
    def fit(cls, dense_ms, dense_sum_ms, reference_ms, reference_sum_ms):
        """The line through (sum, time) of the dense and the reference model.

        When the sums are too close for a slope (:data:`MIN_SPREAD`), or the slope is not
        positive (the timings contradict the entries), the scale is 1 and the offset the mean of
        the two differences: the entries' ranking is kept either way.
        """
        spread = dense_sum_ms - reference_sum_ms
        scale = (dense_ms - reference_ms) / spread if abs(spread) > MIN_SPREAD * max(dense_sum_ms, reference_sum_ms) else 0.0
        if scale <= 0:
            scale = 1.0
            offset = ((dense_ms - dense_sum_ms) + (reference_ms - reference_sum_ms)) / 2
        else:
            offset = reference_ms - scale * reference_sum_ms
        return cls(scale, offset, dense_ms, dense_sum_ms, reference_ms, reference_sum_ms)

    def predict_ms(self, entries_sum_ms):
        """The predicted latency of a model whose layers' entries sum to ``entries_sum_ms``."""
        return self.offset_ms + self.scale * entries_sum_ms

    def entries_budget_ms(self, latency_ms):
        """The largest sum of entries whose prediction is at most ``latency_ms``."""
        return (latency_ms - self.offset_ms) / self.scale

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__})


def fastest_plan(layers, candidates, table):
    """``{weight name: scheme}`` of each layer's fastest candidate in ``table`` (dense layers left out)."""
    plan = {}
    for layer in layers:
        scheme = min(candidates[layer.name], key=lambda s, layer=layer: table.get(layer, s))
        if scheme is not None:
            plan[layer.name] = scheme
    return plan


def entries_sum_ms(layers, table, plan):
    """The sum of the table's entries of ``layers`` under ``plan`` (a layer not in it: dense)."""
    return sum(table.get(layer, plan.get(layer.name)) for layer in layers)
