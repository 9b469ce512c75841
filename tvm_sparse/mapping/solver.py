"""One option per group minimising a summed cost under a summed budget: the multiple-choice knapsack.

The mapping's search is this problem: a group per layer, an option per candidate scheme, the cost
its latency (or its accuracy loss) and the weight its kept parameters (or its latency, or its
accuracy loss). It is solved exactly by dynamic programming over the budget: exactly when the
weights are integers whose greatest common divisor leaves at most ``buckets`` steps (parameter
counts usually do), else over weights rounded *up* to ``buckets`` steps, which keeps every answer
within the budget.
"""

import math
from dataclasses import dataclass

import numpy as np


class InfeasibleBudget(ValueError):
    """No choice of one option per group fits the budget."""


@dataclass(frozen=True)
class Solution:
    """The chosen option index per group, their summed cost and summed weight."""

    choices: tuple
    cost: float
    weight: float


def _integer_steps(groups, budget, buckets):
    """Weights and budget in exact integer steps, or None when they are not integers or need too many steps."""
    values = [w for options in groups for _, w in options] + [budget]
    if not all(float(v).is_integer() and v >= 0 for v in values):
        return None
    step = 0
    for value in values:
        step = math.gcd(step, int(value))
    step = max(step, 1)
    if budget // step > buckets:
        return None
    return [[int(w) // step for _, w in options] for options in groups], int(budget) // step


def solve(groups, budget, buckets=20000, floor=None):
    """Choose one option per group with the least total cost whose total weight is at most ``budget``
    (and at least ``floor``, when given).

    Parameters
    ----------
    groups : sequence of sequence of (float, float)
        ``(cost, weight)`` of each option of each group; weights are non-negative.
    budget : float
    buckets : int
        Steps of the budget when the weights are not exact integers (resolution of the rounding).
    floor : float, optional
        The least total weight wanted; when no choice's total lies between it and the budget, the
        choices of the heaviest total under the budget are taken. When weights are rounded it
        bounds the rounded total (the true one may be up to a step per group lower).

    Returns
    -------
    Solution

    Raises
    ------
    InfeasibleBudget
        If even the lightest option of every group exceeds the budget (the message gives the
        least total weight possible).
    """
    if not groups or any(len(options) == 0 for options in groups):
        raise ValueError("every group needs at least one option")
    lightest = sum(min(w for _, w in options) for options in groups)
    if lightest > budget:
        raise InfeasibleBudget(f"the budget {budget:g} is below the least total weight possible, {lightest:g}")
    exact = _integer_steps(groups, budget, buckets)
    if exact is not None:
        steps, capacity = exact
        unit = budget / capacity if capacity else 1.0
    else:
        unit = budget / buckets if budget > 0 else 1.0
        steps = [[math.ceil(w / unit - 1e-9) for _, w in options] for options in groups]
        capacity = buckets if budget > 0 else 0
    best = np.full(capacity + 1, np.inf)
    best[0] = 0.0
    picks = []
    for options, weights in zip(groups, steps):
        merged = np.full(capacity + 1, np.inf)
        pick = np.full(capacity + 1, -1, dtype=np.int32)
        for index, ((cost, _), weight) in enumerate(zip(options, weights)):
            if weight > capacity:
                continue
            shifted = np.full(capacity + 1, np.inf)
            shifted[weight:] = best[:capacity + 1 - weight] + cost
            better = shifted < merged
            merged[better] = shifted[better]
            pick[better] = index
        best = merged
        picks.append(pick)
    reachable = np.flatnonzero(np.isfinite(best))
    if reachable.size == 0:
        raise InfeasibleBudget(f"no choice fits the budget {budget:g} once the weights are rounded up to "
                               f"{buckets} steps; raise the budget or the number of steps")
    lowest = 0 if floor is None else min(int(reachable[-1]), max(0, math.ceil(floor / unit - 1e-9)))
    end = lowest + int(np.argmin(best[lowest:]))
    choices = []
    for pick, weights in zip(reversed(picks), reversed(steps)):
        index = int(pick[end])
        choices.append(index)
        end -= weights[index]
    choices.reverse()
    cost = sum(groups[g][k][0] for g, k in enumerate(choices))
    weight = sum(groups[g][k][1] for g, k in enumerate(choices))
    return Solution(tuple(choices), float(cost), float(weight))
