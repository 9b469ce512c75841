"""The latency table: each distinct (layer signature, candidate) compiled by ``compile`` and timed on the target.

A candidate's layer is the model's own layer alone (its weight pruned to the candidate by
magnitude, its bias), compiled with the candidate as its plan, so the router builds the very
kernel ``compile`` would; the dense candidate is the layer unpruned. A signature's candidates are
timed together, in interleaved rounds, with a model that only returns its input: the cost of a
call, which each entry leaves out (a model pays it once, not once per layer). A model is predicted
from the sum of its layers' entries by a line fitted on two whole models
(:mod:`tvm_sparse.mapping.calibration`).

The table is a JSON file (``tuning_logs/<model>/<target>/latency_table.json`` by convention),
written after each measurement: a run that stops (a lost device) resumes where it stopped and
never measures an entry twice.
"""

import copy
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tvm_sparse.mapping.calibration import ModelCalibration, entries_sum_ms, fastest_plan
from tvm_sparse.mapping.keys import candidate_key
from tvm_sparse.pruning.masks import compute_mask

TABLE_FILE = "latency_table.json"

#: The table file's format; a file of an older one keeps its entries and is calibrated again.
TABLE_FORMAT = 2

#: The row key of a model that only returns its input: what calling a compiled model costs, taken
#: out of every entry (a model pays it once, not once per layer).
CALL = "call"


class LatencyTableError(ValueError):
    """A latency table file that cannot be used (unreadable, or measured on another target)."""


def signature_key(layer):
    """A layer signature as a JSON string, the table's row key."""
    return json.dumps([list(part) if isinstance(part, tuple) else part for part in layer.signature])


@dataclass
class LatencyTable:
    """Milliseconds per (layer signature, candidate) on one target, and how they add up to a model.

    Attributes
    ----------
    target : str
        The target's slug (:func:`tvm_sparse.target.target_slug`).
    threads : int or None
        The threads the entries ran with here (None: on a device over RPC, with its own).
    entries : dict[str, dict[str, float]]
        ``{signature_key: {candidate_key: milliseconds}}``.
    calibration : tvm_sparse.mapping.calibration.ModelCalibration or None
        From the sum of a model's entries to its latency (None: not measured yet).
    path : str or None
        Where the table is saved after each measurement (None: kept in memory).
    """

    target: str
    threads: int = None
    entries: dict = field(default_factory=dict)
    calibration: ModelCalibration = None
    path: str = None

    @classmethod
    def open(cls, path, target, threads=None):
        """The table at ``path`` (a file or a folder holding :data:`TABLE_FILE`), or a new one for ``target``.

        Raises
        ------
        LatencyTableError
            If the file cannot be read, or was measured on another target or with other ``threads``.
        """
        from tvm_sparse.target import target_slug  # noqa: PLC0415

        path = os.fspath(path)
        if os.path.isdir(path) or not path.endswith(".json"):
            path = os.path.join(path, TABLE_FILE)
        slug = target_slug(target)
        if not os.path.exists(path):
            return cls(slug, threads, path=path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            calibration = data.get("calibration") if data.get("format") == TABLE_FORMAT else None
            table = cls(data["target"], data.get("threads"), {row: {k: float(v) for k, v in cells.items()}
                                                              for row, cells in data["entries"].items()},
                        ModelCalibration.from_dict(calibration) if calibration else None, path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise LatencyTableError(f"{path} is not a readable latency table: {type(error).__name__}: {error}") from error
        if table.target != slug:
            raise LatencyTableError(f"{path} was measured on {table.target}, not {slug}")
        if table.threads != threads:
            raise LatencyTableError(f"{path} was measured with {table.threads} threads, not {threads}")
        return table

    def get(self, layer, scheme):
        """The entry of ``layer``'s signature with ``scheme`` (None: dense), or None when not measured."""
        return self.entries.get(signature_key(layer), {}).get(candidate_key(scheme))

    def put(self, layer, scheme, milliseconds):
        self.entries.setdefault(signature_key(layer), {})[candidate_key(scheme)] = float(milliseconds)
        self.save()

    def predict_ms(self, layers, schemes):
        """The predicted latency of the model whose layers take ``schemes`` (a dict by layer name)."""
        return self.calibration.predict_ms(entries_sum_ms(layers, self, schemes))

    def save(self):
        if self.path is None:
            return
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
            json.dump({"format": TABLE_FORMAT, "target": self.target, "threads": self.threads,
                       "calibration": self.calibration.to_dict() if self.calibration else None,
                       "entries": self.entries}, handle, indent=1, sort_keys=True)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, self.path)


def layer_module(model, layer, scheme):
    """``layer`` of ``model`` alone as a module (its weight pruned to ``scheme`` by magnitude), and its plan."""
    module = model.get_submodule(layer.name.rsplit(".", 1)[0])
    if layer.op == "conv2d":
        alone = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                          module.dilation, module.groups, module.bias is not None)
    else:
        alone = nn.Linear(module.in_features, module.out_features, module.bias is not None)
    alone.load_state_dict(module.state_dict())
    plan = {}
    if scheme is not None:
        with torch.no_grad():
            mask, scheme = compute_mask(scheme, alone.weight.detach() ** 2)
            alone.weight.mul_(mask)
        plan = {"weight": scheme}
    return alone.eval(), plan


class Timer:
    """Times a compiled model here (``time_evaluator`` on this CPU) or on a device behind a tracker.

    Parameters
    ----------
    rpc : tuple (tracker address, key) or None
        A device behind an RPC tracker (``(("host", 9190), "emu-aarch64")``); None: this machine.
    number, repeat : int
        Runs per measurement and measurements; the median of the repeats is the entry.
    min_repeat_ms : int
        Here, each measurement runs at least this long (more runs for a fast layer).
    wait_s : float
        Longest wait for a free device before a measurement fails (``TimeoutError``).
    """

    def __init__(self, rpc=None, number=5, repeat=7, min_repeat_ms=20, wait_s=60):
        self.rpc = rpc
        self.wait_s = wait_s
        self.number = number
        self.repeat = repeat
        self.min_repeat_ms = min_repeat_ms

    def row(self, compiled, examples):
        """Milliseconds of each compiled model (``{key: CompiledModel}``) on its example (``{key: tensor}``).

        Here they are timed in interleaved rounds (medians), so that a busy spell of the machine
        falls on all of them alike and their ratios hold; on a device, one after the other.
        """
        if self.rpc is not None or len(compiled) <= 1:
            return {key: self.milliseconds(model, examples[key]) for key, model in compiled.items()}
        import tvm  # noqa: PLC0415

        from tvm_sparse.bench.timing import interleaved_medians  # noqa: PLC0415

        calls = {}
        for key, model in compiled.items():
            vm = model.virtual_machine()
            inputs = [tvm.runtime.tensor(array, tvm.cpu()) for array in model.check_inputs((examples[key],))]
            calls[key] = lambda vm=vm, inputs=inputs: vm["main"](*inputs)
        timings = interleaved_medians(calls, rounds=self.repeat, min_round_s=self.min_repeat_ms / 1e3)
        return {key: timing.median_ms for key, timing in timings.items()}

    def milliseconds(self, compiled, example):
        if self.rpc is not None:
            from tvm_sparse.rpc import RemoteModel, parse_address, request_device, wait_for_device  # noqa: PLC0415

            tracker, key = self.rpc
            tracker = parse_address(tracker) if isinstance(tracker, str) else tuple(tracker)
            wait_for_device(tracker, key, self.wait_s)
            return float(np.median(RemoteModel(compiled, request_device(tracker, key)).time(
                example, number=self.number, repeat=self.repeat)))
        import tvm  # noqa: PLC0415

        vm = compiled.virtual_machine()
        device = tvm.cpu()
        inputs = [tvm.runtime.tensor(array, device) for array in compiled.check_inputs((example,))]
        vm["main"](*inputs)  # warm-up: the first run pays for the thread pool and cold caches
        evaluator = vm.time_evaluator("main", device, number=self.number, repeat=self.repeat,
                                      min_repeat_ms=self.min_repeat_ms)
        return float(np.median(evaluator(*inputs).results)) * 1e3


def compile_module(module, example, target, plan):
    """``module`` compiled for ``target`` with ``plan`` as ``compile`` builds it (no size threshold: a
    planned layer gets its kernel, however small)."""
    import tvm_sparse  # noqa: PLC0415
    from relay_passes.sparse_rules import SparseRules  # noqa: PLC0415

    mod, params = tvm_sparse.from_torch(module, example)
    return tvm_sparse.compile(mod, params, target=target, plan=plan or None, rules=SparseRules(min_macs=0))


def measure_table(model, example, layers, candidates, target, table, timer=None, progress=None):
    """Fill ``table`` with every (distinct signature, candidate) it lacks, and calibrate it.

    A signature's candidates are timed together (:meth:`Timer.row`); on a device each entry is
    saved as soon as it is measured. The calibration (the dense model and the model of each
    layer's fastest candidate, timed together in one more row) is measured again whenever an
    entry was added.

    Parameters
    ----------
    model : torch.nn.Module
        The dense model (the layers' weights are pruned on copies).
    example : torch.Tensor
    layers : sequence of tvm_sparse.mapping.layers.Layer
    candidates : dict[str, list]
        Candidates per layer name (:func:`tvm_sparse.mapping.candidates.candidates_for`).
    target : tvm.target.Target
    table : LatencyTable
    timer : Timer, optional
    progress : callable, optional
        ``progress(done, total)`` after each entry (measured or found in the table).

    Returns
    -------
    int
        Rows measured in this call: entries (those already in the table are not measured again)
        and the calibration.
    """
    timer = timer or Timer()
    firsts = {}
    for layer in layers:
        firsts.setdefault(layer.signature, layer)
    total = sum(len(candidates[layer.name]) for layer in firsts.values()) + 1
    done = measured = 0
    for layer in firsts.values():
        missing = [scheme for scheme in candidates[layer.name] if table.get(layer, scheme) is None]
        done += len(candidates[layer.name]) - len(missing)
        if not missing:
            continue
        example_in = _input_of(layer)
        call = compile_module(nn.Identity().eval(), example_in, target, None)
        if timer.rpc is not None:  # one at a time, each saved at once: a lost device loses one entry
            overhead = timer.milliseconds(call, example_in)
            for scheme in missing:
                module, plan = layer_module(model, layer, scheme)
                elapsed = timer.milliseconds(compile_module(module, example_in, target, plan), example_in)
                table.put(layer, scheme, max(0.0, elapsed - overhead))
                measured, done = measured + 1, done + 1
                if progress:
                    progress(done, total)
            continue
        compiled = {CALL: (None, call)}
        for scheme in missing:
            module, plan = layer_module(model, layer, scheme)
            compiled[candidate_key(scheme)] = (scheme, compile_module(module, example_in, target, plan))
        times = timer.row({key: model_ for key, (_, model_) in compiled.items()}, dict.fromkeys(compiled, example_in))
        for key, (scheme, _) in compiled.items():
            if key != CALL:
                table.put(layer, scheme, max(0.0, times[key] - times[CALL]))
        measured, done = measured + len(missing), done + len(missing)
        if progress:
            progress(done, total)
    if table.calibration is None or measured:
        table.calibration = measure_calibration(model, example, layers, candidates, target, table, timer)
        table.save()
        measured += 1
    if progress:
        progress(total, total)
    return measured


def measure_calibration(model, example, layers, candidates, target, table, timer):
    """Time the dense model and the model of each layer's fastest candidate in one row; fit the
    table's :class:`~tvm_sparse.mapping.calibration.ModelCalibration` to them."""
    from tvm_sparse.pruning.one_shot import prune_by_plan  # noqa: PLC0415

    reference_plan = fastest_plan(layers, candidates, table)
    reference = copy.deepcopy(model)
    pruned_plan = prune_by_plan(reference, reference_plan) if reference_plan else {}
    compiled = {"dense": compile_module(model, example, target, None),
                "reference": compile_module(reference, example, target, pruned_plan)}
    times = timer.row(compiled, dict.fromkeys(compiled, example))
    return ModelCalibration.fit(times["dense"], entries_sum_ms(layers, table, {}),
                                times["reference"], entries_sum_ms(layers, table, reference_plan))


def _input_of(layer):
    return torch.randn(*layer.input_shape, generator=torch.Generator().manual_seed(0))
