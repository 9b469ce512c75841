"""``map_schemes``: the plan of a model for a target, by rules or by a search over measured latencies."""

import json
from dataclasses import asdict, dataclass

from tvm_sparse.mapping.candidates import candidates_for, density, kept_weights
from tvm_sparse.mapping.keys import candidate_key
from tvm_sparse.mapping.latency import LatencyTable, Timer, measure_table
from tvm_sparse.mapping.layers import find_layers
from tvm_sparse.mapping.rules import map_by_rules
from tvm_sparse.mapping.search import OBJECTIVES, layer_options, search
from tvm_sparse.mapping.sensitivity import sensitivities
from tvm_sparse.mapping.solver import InfeasibleBudget
from tvm_sparse.runtime_threads import default_thread_count

METHODS = ("rules", "search")


@dataclass(frozen=True)
class LayerChoice:
    """One row of a mapping's report.

    Attributes
    ----------
    name : str
    choice : str
        The candidate key (``"dense"`` or the scheme as JSON).
    reason : str
        The rule that chose it, or the table entries that made it the optimum.
    kept : float
        Kept fraction of the layer's weights.
    predicted_ms, dense_ms, sensitivity : float or None
        The table's entries for the choice and for dense, and the choice's accuracy cost (search only).
    """

    name: str
    choice: str
    reason: str
    kept: float
    predicted_ms: float = None
    dense_ms: float = None
    sensitivity: float = None


@dataclass(frozen=True)
class Mapping:
    """A plan (``{weight name: scheme}``, dense layers left out) and its per-layer report."""

    plan: dict
    report: tuple
    predicted_ms: float = None

    def table(self):
        """The report as text lines, one per layer."""
        lines = []
        for row in self.report:
            times = "" if row.predicted_ms is None else f" {row.predicted_ms:.3f} ms (dense {row.dense_ms:.3f})"
            cost = "" if row.sensitivity is None else f" sensitivity {row.sensitivity:.4f}"
            lines.append(f"{row.name}: {row.choice} kept {row.kept:.3f}{times}{cost} - {row.reason}")
        if self.predicted_ms is not None:
            lines.append(f"predicted model latency: {self.predicted_ms:.3f} ms")
        return lines

    def to_json(self):
        """The report and the prediction as a JSON string (the plan itself: ``tvm_sparse.plan.plan_to_json``)."""
        return json.dumps({"predicted_ms": self.predicted_ms, "layers": [asdict(row) for row in self.report]}, indent=1)


def map_schemes(model, example, target="llvm", method="rules", *, compression=None, latency_ms=None,
                accuracy_budget=None, data=None, sensitivity="loss", table=None, rpc=None, candidates=None,
                timer=None, progress=None):
    """Choose a pruning scheme, block and rate for every layer of ``model`` on ``target``.

    Parameters
    ----------
    model : torch.nn.Module
        The dense model, in eval mode.
    example : torch.Tensor
        An input of the shape the model will be compiled for.
    target : str or tvm.target.Target
    method : str
        ``"rules"`` (instant, needs ``compression``) or ``"search"`` (measures a latency table).
    compression, latency_ms, accuracy_budget : float
        The search's objective, exactly one: a global compression (dense over kept weights of
        all layers), a latency target in milliseconds, or a budget of summed sensitivities.
    data : sequence of (inputs, labels), optional
        Calibration batches for the sensitivities (needed by ``latency_ms`` and ``accuracy_budget``).
    sensitivity : str
        ``"loss"``, ``"first_order"`` or ``"recovered_loss"`` (:func:`tvm_sparse.mapping.sensitivity.sensitivities`).
    table : str or os.PathLike or LatencyTable, optional
        Where the latency table is kept and resumed (a JSON file or a folder); in memory if None.
        A table measured here records the thread count, and is reused only with the same one.
    rpc : tuple (tracker address, key), optional
        Measure on the device behind this tracker instead of this machine.
    candidates : callable, optional
        ``candidates(layer, target)`` to narrow the candidate set (default
        :func:`tvm_sparse.mapping.candidates.candidates_for`). Under a compression target the
        rules' choice of each layer at that compression joins its candidates.
    timer : tvm_sparse.mapping.latency.Timer, optional
        How long each entry is timed (default ``Timer(rpc)``); ``rpc`` is then the timer's.
    progress : callable, optional
        ``progress(done, total)`` while the table is measured.

    Returns
    -------
    Mapping
    """
    from tvm_sparse.target import parse_target  # noqa: PLC0415

    if method not in METHODS:
        raise ValueError(f"unknown mapping method {method!r}; choose one of {METHODS}")
    target = parse_target(target)
    layers = find_layers(model, example)
    if not layers:
        raise ValueError("the model has no convolution or linear layer to map")
    if method == "rules":
        if compression is None:
            raise ValueError("rule-based mapping needs a compression target")
        decisions = map_by_rules(layers, target, compression)
        report = tuple(LayerChoice(d.name, candidate_key(d.scheme), d.rule, density(d.scheme)) for d in decisions)
        return Mapping({d.name: d.scheme for d in decisions if d.scheme is not None}, report)

    objectives = {"compression": compression, "latency_ms": latency_ms, "accuracy_budget": accuracy_budget}
    given = [name for name, value in objectives.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"search-based mapping needs exactly one of {', '.join(OBJECTIVES)}; got {given or 'none'}")
    objective = given[0]
    if objective != "compression" and data is None:
        raise ValueError(f"{objective} is a budget on accuracy: pass calibration batches as data=")
    candidate_sets = {layer.name: (candidates or candidates_for)(layer, target) for layer in layers}
    if objective == "compression":
        _check_reachable(layers, candidate_sets, compression)
        rule_choices = _rule_choices(layers, target, compression)
        for name, scheme in rule_choices.items():
            if scheme not in candidate_sets[name]:
                candidate_sets[name] = [*candidate_sets[name], scheme]
    else:
        rule_choices = {}
    if not isinstance(table, LatencyTable):
        remote = rpc is not None or (timer is not None and timer.rpc is not None)
        threads = None if remote else default_thread_count()
        table = LatencyTable.open(table, target, threads) if table is not None else LatencyTable(_slug(target), threads)
    measure_table(model, example, layers, candidate_sets, target, table, timer or Timer(rpc), progress)
    costs = sensitivities(model, layers, candidate_sets, data, method=sensitivity) if data is not None else None
    options = layer_options(layers, candidate_sets, table, costs)
    chosen = search(layers, options, objective, objectives[objective], table.calibration)
    report = []
    for layer in layers:
        option = chosen[layer.name]
        dense = table.get(layer, None)
        reason = (f"least {'accuracy cost' if objective == 'latency_ms' else 'latency'} under the {objective} budget "
                  f"({len(options[layer.name])} candidates measured)")
        if len(options[layer.name]) == 1:
            reason = layer.dense_reason() or "the only candidate"
        elif rule_choices.get(layer.name, ()) == option.scheme:
            reason += ", the rules' choice too"
        report.append(LayerChoice(layer.name, candidate_key(option.scheme), reason, density(option.scheme),
                                  option.milliseconds, dense, option.sensitivity if costs else None))
    plan = {name: option.scheme for name, option in chosen.items() if option.scheme is not None}
    predicted = table.calibration.predict_ms(sum(option.milliseconds for option in chosen.values()))
    return Mapping(plan, tuple(report), predicted)


def _rule_choices(layers, target, compression):
    """``{layer name: scheme}`` the rules choose at ``compression`` (none when they cannot reach it).

    The search weighs them with its own candidates: their rates follow each layer's map, which
    a grid of rates only approximates. So wherever the rules' plan keeps what the search's window
    allows, the search's plan is at least as fast by the table.
    """
    try:
        decisions = map_by_rules(layers, target, compression)
    except ValueError:
        return {}
    return {d.name: d.scheme for d in decisions if d.scheme is not None}


def _check_reachable(layers, candidate_sets, compression):
    """Refuse, before measuring anything, a compression no choice of candidates reaches."""
    total = sum(layer.parameters for layer in layers)
    least = sum(min(kept_weights(layer, s) for s in candidate_sets[layer.name]) for layer in layers)
    if total / least < compression:
        raise InfeasibleBudget(f"compression {compression:g} is out of reach: the candidates keep at least "
                               f"{least} of {total} weights ({total / least:.2f}x at most)")


def _slug(target):
    from tvm_sparse.target import target_slug  # noqa: PLC0415

    return target_slug(target)
