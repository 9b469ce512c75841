"""The knapsack solver finds the brute-force optimum on small random instances, and names an infeasible budget."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sparse.mapping.solver import InfeasibleBudget, solve


def _brute_force(groups, budget):
    best = None
    for choice in itertools.product(*(range(len(options)) for options in groups)):
        cost = sum(groups[g][k][0] for g, k in enumerate(choice))
        weight = sum(groups[g][k][1] for g, k in enumerate(choice))
        if weight <= budget and (best is None or cost < best - 1e-9):
            best = cost
    return best


options = st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.integers(0, 50)), min_size=1, max_size=4)


@given(groups=st.lists(options, min_size=1, max_size=5), slack=st.integers(0, 120))
@settings(max_examples=200, deadline=None)
def test_integer_weights_give_the_brute_force_optimum(groups, slack):
    budget = sum(min(w for _, w in group) for group in groups) + slack
    solution = solve(groups, budget)
    assert solution.weight <= budget
    assert solution.cost == pytest.approx(_brute_force(groups, budget), abs=1e-6)


real_options = st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 5, allow_nan=False)), min_size=1,
                        max_size=4)


@given(groups=st.lists(real_options, min_size=1, max_size=4), slack=st.floats(0.5, 10))
@settings(max_examples=100, deadline=None)
def test_real_weights_stay_within_the_budget_and_near_the_optimum(groups, slack):
    budget = sum(min(w for _, w in group) for group in groups) + slack
    solution = solve(groups, budget, buckets=100000)
    assert solution.weight <= budget + 1e-9
    # rounding weights up loses at most choices within one step per group of the budget's edge
    assert solution.cost >= _brute_force(groups, budget) - 1e-6
    assert solution.cost <= _brute_force(groups, budget - len(groups) * budget / 100000) + 1e-6


def test_an_infeasible_budget_is_refused_with_the_least_weight():
    with pytest.raises(InfeasibleBudget, match="least total weight possible, 7"):
        solve([[(1.0, 3), (2.0, 5)], [(0.0, 4)]], budget=6)


def _brute_force_window(groups, floor, budget):
    totals = {}
    for choice in itertools.product(*(range(len(options)) for options in groups)):
        weight = sum(groups[g][k][1] for g, k in enumerate(choice))
        if weight <= budget:
            cost = sum(groups[g][k][0] for g, k in enumerate(choice))
            totals[weight] = min(cost, totals.get(weight, float("inf")))
    window = [cost for weight, cost in totals.items() if weight >= floor]
    return min(window) if window else totals[max(totals)]  # else: the heaviest total under the budget


@given(groups=st.lists(options, min_size=1, max_size=5), slack=st.integers(0, 120), window=st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_a_floor_keeps_the_total_weight_in_its_window_or_takes_the_heaviest_total(groups, slack, window):
    budget = sum(min(w for _, w in group) for group in groups) + slack
    floor = max(0, budget - window)
    solution = solve(groups, budget, floor=floor)
    assert solution.weight <= budget
    assert solution.cost == pytest.approx(_brute_force_window(groups, floor, budget), abs=1e-6)


@pytest.mark.parametrize("compression", [2.5, 3.0, 3.375, 4.0, 4.5])
def test_a_searched_plan_meets_its_compression_by_the_densities_of_its_schemes(compression):
    """Connectivity pruning at a rate like the rules' (0.3333) keeps a fraction of a weight by
    density: three such layers must not pass for 3.375x when they keep 1024.05 of 3456 weights."""
    from tvm_sparse.mapping.candidates import density, kept_weights
    from tvm_sparse.mapping.layers import Layer
    from tvm_sparse.mapping.search import Option, search
    from tvm_sparse.plan import PatternScheme

    layers = [Layer(f"layer{i}.weight", "conv2d", (16, 8, 3, 3), (1, 8, 8, 8), padding=(1, 1)) for i in range(3)]
    schemes = [None] + [PatternScheme(entries=4, library_size=8, connectivity=c) for c in (0.3333, 0.4567, 0.5)]
    options = {layer.name: [Option(s, 1.0 - density(s), kept_weights(layer, s), 0.0) for s in schemes]
               for layer in layers}
    chosen = search(layers, options, "compression", compression)
    kept = sum(layer.parameters * density(chosen[layer.name].scheme) for layer in layers)
    assert sum(layer.parameters for layer in layers) / kept >= compression
