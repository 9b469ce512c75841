"""Search-based mapping: one candidate per layer, the fastest under a budget, solved exactly.

Three objectives, one knapsack each (:mod:`tvm_sparse.mapping.solver`):

* ``compression``: least latency whose kept weights are at most ``total / compression`` and at
  least :data:`COMPRESSION_WINDOW` of that, or as close as the candidates come (a compression
  target is met, not overshot: pruning beyond it would buy speed with the accuracy the target
  stands for);
* ``accuracy_budget``: least latency whose summed sensitivity is at most the budget;
* ``latency_ms``: least summed sensitivity whose predicted latency is at most the target.

Layers of equal signature are separate groups (each has its own weight and sensitivity) that
share their latency entries.
"""

import math
from dataclasses import dataclass

from tvm_sparse.mapping.candidates import kept_weights
from tvm_sparse.mapping.keys import candidate_key
from tvm_sparse.mapping.solver import solve

OBJECTIVES = ("compression", "accuracy_budget", "latency_ms")

#: The least fraction of ``total / compression`` a plan of the compression objective keeps.
COMPRESSION_WINDOW = 0.95


@dataclass(frozen=True)
class Option:
    """A candidate of one layer with its measured latency, kept weights and accuracy cost."""

    scheme: object
    milliseconds: float
    kept: int
    sensitivity: float


def layer_options(layers, candidates, table, costs=None):
    """``{layer name: [Option]}`` from the latency table and the sensitivities (0 when not given)."""
    options = {}
    for layer in layers:
        rows = []
        for scheme in candidates[layer.name]:
            milliseconds = table.get(layer, scheme)
            if milliseconds is None:
                raise KeyError(f"{layer.name}: the latency table has no entry for {candidate_key(scheme)}")
            kept = kept_weights(layer, scheme)
            sensitivity = costs[layer.name][candidate_key(scheme)] if costs else 0.0
            rows.append(Option(scheme, milliseconds, kept, sensitivity))
        options[layer.name] = rows
    return options


def search(layers, options, objective, value, calibration=None):
    """The chosen :class:`Option` per layer name for ``objective`` at ``value``.

    ``calibration`` (:class:`tvm_sparse.mapping.calibration.ModelCalibration`) turns a latency
    target into a budget on the sum of entries; without it the target is that sum.

    Raises
    ------
    tvm_sparse.mapping.solver.InfeasibleBudget
        If no choice meets the budget (the message names the least reachable total).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    rows = [options[layer.name] for layer in layers]
    # ties in the objective are broken by the other quantity, by a margin far below any difference
    if objective == "compression":
        total = sum(layer.parameters for layer in layers)
        groups = [[(o.milliseconds + 1e-9 * o.sensitivity, o.kept) for o in row] for row in rows]
        budget = math.floor(total / value)  # kept weights are whole numbers
        floor = COMPRESSION_WINDOW * total / value
    elif objective == "accuracy_budget":
        groups = [[(o.milliseconds, o.sensitivity) for o in row] for row in rows]
        budget, floor = value, None
    else:
        groups = [[(o.sensitivity + 1e-9 * o.milliseconds, o.milliseconds) for o in row] for row in rows]
        budget = value if calibration is None else calibration.entries_budget_ms(value)
        floor = None
    solution = solve(groups, budget, floor=floor)
    return {layer.name: row[index] for layer, row, index in zip(layers, rows, solution.choices)}
