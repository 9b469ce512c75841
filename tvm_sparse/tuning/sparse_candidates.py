"""Sparse kernels: candidate knob settings of each layer, built and measured in order.

A sparse kernel's knobs (``SpecializedConvConfig``: code generator, input layout, register tile,
channel block, parallel split) are code-generation parameters, not schedule decisions on a block,
so they cannot be a MetaSchedule trace. Each candidate is generated as its own PrimFunc and
measured with MetaSchedule's builder and runner; the spaces are a handful of configurations
(``schedules.registry.KernelSpec.candidates``), measured in order, the default first.
"""

import contextlib
import logging
import os

from tvm import IRModule
from tvm.s_tir import meta_schedule as ms

from schedules import registry
from tvm_sparse.tuning.logs import is_valid

logger = logging.getLogger(__name__)


def sparse_candidates(task, target):
    """Knob settings to try for one sparse layer (``schedules.registry``), the default first.

    A layer the space does not describe gets only the kernel's own default (None).
    """
    try:
        return registry.kernel(task.kernel).candidates(task.weight, task.data_shape, target, **task.options)
    except (TypeError, ValueError) as error:
        logger.warning("sparse %s %s: no candidate knobs (%s); its default is measured", task.kernel,
                       task.data_shape, error)
        return [None]


def last_line(message):
    """The last non-empty line of an error message, at most 300 characters."""
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"


def measure_sparse(task, configs, target, builder, runners, device_type):
    """Build the candidates of one layer in one builder batch, then run each.

    Parameters
    ----------
    task : tvm_sparse.tuning.tasks.SparseTask
    configs : list of SpecializedConvConfig or None
    target : tvm.target.Target
    builder : tvm.s_tir.meta_schedule.builder.Builder
    runners : tvm_sparse.tuning.runners.MeasureRunners
    device_type : str

    Returns
    -------
    list of (run seconds or None, error or None)
        One entry per config.
    """
    outcomes = [None] * len(configs)
    funcs = {}
    for index, config in enumerate(configs):
        try:
            funcs[index] = task.prim_func(target, config)
        except ValueError as error:
            outcomes[index] = (None, f"generation: {error}")
    order = sorted(funcs)
    built = builder.build([ms.builder.BuilderInput(IRModule({"main": funcs[i]}), target) for i in order])
    warm = False
    for index, result in zip(order, built):
        if result.error_msg is not None:
            outcomes[index] = (None, last_line(result.error_msg))
            continue
        try:
            func = funcs[index]
            runner = runners.for_kernel(func)
            runner_input = ms.runner.RunnerInput(result.artifact_path, device_type,
                                                 ms.arg_info.ArgInfo.from_prim_func(func))
            run = runner.run([runner_input])[0].result()
            if not warm and run.error_msg is None:
                # The first run after a build batch can run at one-thread speed on several threads,
                # which would favour whichever config comes later: it was a warm-up, run again. A
                # warm-up that fails (a device gone) is the measurement: the device is not asked twice.
                warm = True
                run = runner.run([runner_input])[0].result()
        finally:
            with contextlib.suppress(OSError):
                os.remove(result.artifact_path)
        if run.error_msg is not None or not is_valid(run.run_secs):
            outcomes[index] = (None, last_line(run.error_msg or "no run time"))
        else:
            outcomes[index] = ([float(s) for s in run.run_secs], None)
    return outcomes


def tune_sparse(tasks, target, records, trials_per_layer, builder, runners, device_type, advance):
    """Measure up to ``trials_per_layer`` candidates of each distinct layer not yet in ``records``.

    ``advance(n, errors, resumed=False)`` is told of every measurement (and of those resumed).
    Returns the measurements made.
    """
    made = 0
    seen = set()
    for task in tasks:
        if task.key in seen:
            continue
        seen.add(task.key)
        candidates = sparse_candidates(task, target)[:trials_per_layer]
        todo = [config for config in candidates if not records.measured(task.key, config)]
        if len(todo) < len(candidates):
            advance(len(candidates) - len(todo), 0, resumed=True)
        if not todo:
            continue
        for config, (seconds, error) in zip(todo, measure_sparse(task, todo, target, builder, runners, device_type)):
            if error:
                logger.warning("sparse %s %s config %s: %s", task.kernel, task.data_shape, config, error)
            records.add(task.key, task.kernel, config, seconds, error)
            made += 1
            advance(1, int(error is not None))
    return made
