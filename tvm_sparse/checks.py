"""What ``compile`` checks before it starts: a model and weights it can compile, named errors otherwise."""

import os


class ModelError(ValueError):
    """The model uses something tvm_sparse cannot compile; the message names it."""


class ParamsError(ModelError):
    """The weights handed to ``compile`` do not match the model's parameters."""


def check_params(mod, params):
    """Raise :class:`ParamsError` when ``params`` is empty for a model with weights or names one it lacks.

    ``None`` leaves every weight a runtime input on purpose; an empty dict or a misspelt name
    almost always means the weights were lost on the way, which would otherwise compile silently.
    """
    if params is None:
        return
    main = mod["main"]
    num_inputs = int(main.attrs["num_input"]) if main.attrs is not None and "num_input" in main.attrs else None
    if not params and (num_inputs is None or len(main.params) > num_inputs):
        raise ParamsError("params is empty: pass the weights from tvm_sparse.from_torch, or None to keep "
                          "every weight a runtime input")
    known = {param.name for param in main.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParamsError(f"params names {len(unknown)} tensor(s) the model does not take: {unknown[:5]}")


def checked_plan(plan, params):
    """``plan`` as ``{tensor name: scheme}``, verified against ``params`` (a dict, or a path written by ``save_plan``).

    Raises
    ------
    tvm_sparse.plan.PlanError
        The plan is not a dict or a plan file, comes without the weights it describes, or does not
        match them (naming each layer).
    """
    from tvm_sparse.plan import PlanError, load_plan, verify_plan
    from tvm_sparse.relax_utils import to_numpy

    if isinstance(plan, (str, os.PathLike)):
        plan = load_plan(plan)
    if not isinstance(plan, dict):
        raise PlanError(f"a plan is a dict {{tensor name: scheme}} or the path of a plan file, not {type(plan).__name__}")
    if plan and not params:
        raise PlanError("a plan needs the weights it describes: pass params (from tvm_sparse.from_torch) with it")
    verify_plan(plan, {name: to_numpy(value) for name, value in params.items()} if plan else {})
    return plan
