"""Benchmark of the mapping's accuracy side: searched plans vs uniform plans after the same ClickTrain training.

On Fashion-MNIST (padded to 32x32) a :class:`~tvm_sparse.pruning.small_resnet.SmallResNet` is
first trained dense for a short while, which gives the sensitivities their meaning. Each uniform
one-shot plan (every 3x3 layer block-punched 8x4, or pattern, at ``compression``; 1x1 and linear
block-punched 8x4 at 0.75) sets a budget for the search, which maps for the least latency: its
summed sensitivity (``objective="accuracy_budget"``: the same estimated accuracy cost), or its
global compression (``objective="compression"``: as many weights kept). Every plan is then trained from scratch
with ClickTrain under the same seeds; the test accuracies are compared, and the models of the
first seed are compiled and timed side by side (medians of interleaved rounds).
"""

import dataclasses
import statistics
from dataclasses import dataclass

import torch

#: The uniform plans the mapped ones are compared with: label -> ``one_shot_config``'s ``scheme_3x3``.
UNIFORM = {"uniform block-punched 8x4": "block_punched", "uniform pattern": "pattern"}

#: The label of a mapped plan: its objective's words, then the uniform plan's label.
MAPPED_AT = {"accuracy_budget": "mapped at the cost of ", "compression": "mapped at the compression of "}


@dataclass
class PlanResult:
    """One plan: its accuracies over the seeds, latency of the first seed's model, compression, costs."""

    label: str
    accuracies: list
    milliseconds: float
    compression: float
    estimated_cost: float
    predicted_ms: float = None
    max_error: float = None

    @property
    def median_accuracy(self):
        return statistics.median(self.accuracies)


def _without_library(config):
    """The plan's schemes with pattern libraries dropped: ClickTrain chooses its own from the weights."""
    return {name: dataclasses.replace(scheme, library=None) if hasattr(scheme, "library") else scheme
            for name, scheme in config.items()}


def run(compression=8.0, seeds=(0, 1, 2), epochs=3, pretrain_epochs=1, train_limit=6000, rounds=15,
        target="llvm", table=None, objective="accuracy_budget", sensitivity="loss", progress=print):
    """Map, train, compile and time; one :class:`PlanResult` per plan (uniform ones first).

    Parameters
    ----------
    compression : float
        Of the uniform plans' 3x3 layers.
    seeds : sequence of int
        ClickTrain runs per plan (the same seeds for every plan).
    epochs, pretrain_epochs : int
        ClickTrain epochs; dense epochs of the model the sensitivities are measured on.
    train_limit : int or None
        Fashion-MNIST training images used (None: all 60,000).
    rounds : int
        Interleaved timing rounds.
    target : str
    table : str, optional
        Where the latency table is kept (a folder or JSON file); in memory if None.
    objective : str
        The search's budget taken from each uniform plan: ``"accuracy_budget"`` or ``"compression"``.
    sensitivity : str
        How the candidates' costs are measured (:func:`tvm_sparse.mapping.sensitivity.sensitivities`).
    progress : callable
        ``progress(text)`` before each step.
    """
    from tvm_sparse.bench.mapping import BENCH_BLOCKS, BENCH_PATTERNS, BENCH_SPARSITIES, time_side_by_side  # noqa: PLC0415
    from tvm_sparse.data import load_fashion_mnist  # noqa: PLC0415
    from tvm_sparse.mapping.candidates import candidates_for, density  # noqa: PLC0415
    from tvm_sparse.mapping.keys import candidate_key  # noqa: PLC0415
    from tvm_sparse.mapping.layers import find_layers  # noqa: PLC0415
    from tvm_sparse.mapping.mapper import map_schemes  # noqa: PLC0415
    from tvm_sparse.mapping.sensitivity import sensitivities  # noqa: PLC0415
    from tvm_sparse.pruning.one_shot import global_compression, one_shot_config  # noqa: PLC0415
    from tvm_sparse.pruning.small_resnet import SmallResNet  # noqa: PLC0415
    from tvm_sparse.pruning.workflows import TrainSettings, train_dense, train_with_clicktrain  # noqa: PLC0415

    data = load_fashion_mnist(size=32, train_limit=train_limit)
    settings = TrainSettings(epochs=epochs)
    progress(f"dense training for the sensitivities ({pretrain_epochs} epoch(s), {len(data.x_train)} images)")
    pretrained = train_dense(data, dataclasses.replace(settings, epochs=pretrain_epochs), SmallResNet).model.eval()
    example = torch.from_numpy(data.x_test[:1])
    calibration = [(torch.from_numpy(data.x_train[i:i + 128]), torch.from_numpy(data.y_train[i:i + 128]))
                   for i in range(0, 512, 128)]
    layers = find_layers(pretrained, example)
    uniform = {label: one_shot_config(pretrained, compression=compression, scheme_3x3=scheme)
               for label, scheme in UNIFORM.items()}

    def candidates(layer, target_):
        found = candidates_for(layer, target_, blocks=BENCH_BLOCKS, sparsities=BENCH_SPARSITIES, patterns=BENCH_PATTERNS)
        keys = {candidate_key(s) for s in found}
        extra = [config[layer.name] for config in uniform.values() if layer.name in config]
        return found + [s for s in {candidate_key(s): s for s in extra}.values() if candidate_key(s) not in keys]

    progress("sensitivities of every candidate")
    sets = {layer.name: candidates(layer, target) for layer in layers}
    costs = sensitivities(pretrained, layers, sets, calibration, method=sensitivity)
    budgets = {label: sum(costs[layer.name][candidate_key(config.get(layer.name))] for layer in layers)
               for label, config in uniform.items()}
    plans = {label: (_without_library(config), budgets[label], None) for label, config in uniform.items()}
    if objective not in MAPPED_AT:
        raise ValueError(f"objective must be one of {sorted(MAPPED_AT)}, got {objective!r}")
    total = sum(layer.parameters for layer in layers)
    for label, config in uniform.items():
        if objective == "accuracy_budget":
            value = budgets[label] * (1 + 1e-9)
        else:
            value = total / sum(layer.parameters * density(config.get(layer.name)) for layer in layers) * (1 - 1e-9)
        progress(f"search at the {objective} of {label} ({value:.4f})")
        mapping = map_schemes(pretrained, example, target, "search", **{objective: value},
                              data=calibration, sensitivity=sensitivity, candidates=candidates, table=table)
        chosen = sum(row.sensitivity for row in mapping.report)
        plans[MAPPED_AT[objective] + label] = (_without_library(mapping.plan), chosen, mapping.predicted_ms)

    trained = {}
    for seed in seeds:
        for label, (config, _, _) in plans.items():
            progress(f"ClickTrain: {label}, seed {seed}")
            result = train_with_clicktrain(data, dataclasses.replace(settings, seed=seed), lambda _m, c=config: c,
                                           architecture=SmallResNet)
            trained.setdefault(label, []).append(result)

    progress("compile and time the first seed's models")
    first = {label: results[0] for label, results in trained.items()}
    milliseconds, errors = time_side_by_side({label: r.model.eval() for label, r in first.items()},
                                             {label: r.plan for label, r in first.items()}, example, target, rounds)
    return [PlanResult(label, [r.accuracy for r in trained[label]], milliseconds[label],
                       global_compression(trained[label][0].model), cost, predicted, errors[label])
            for label, (_, cost, predicted) in plans.items()]


def format_rows(results):
    """Text lines: each plan's accuracies, latency and the mapped plans' ratios to their uniform plan."""
    by_label = {r.label: r for r in results}
    lines = []
    for r in results:
        accuracies = ", ".join(f"{a:.2f}" for a in r.accuracies)
        line = (f"{r.label:48s} accuracy {r.median_accuracy:6.2f}% (seeds: {accuracies})  {r.milliseconds:7.3f} ms  "
                f"compression {r.compression:5.2f}x  estimated cost {r.estimated_cost:.4f}  "
                f"max rel. error {r.max_error:.1e}")
        lines.append(line)
        prefix = next((words for words in MAPPED_AT.values() if r.label.startswith(words)), None)
        if prefix is not None:
            base = by_label[r.label.removeprefix(prefix)]
            lines.append(f"    vs {base.label}: {base.milliseconds / r.milliseconds:.2f}x faster, accuracy "
                         f"{r.median_accuracy - base.median_accuracy:+.2f} points (median over seeds); "
                         f"predicted {r.predicted_ms:.3f} ms ({r.predicted_ms / r.milliseconds - 1:+.1%})")
    return lines
