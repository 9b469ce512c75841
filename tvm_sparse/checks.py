"""What ``compile`` checks before it starts: a model and weights it can compile, named errors otherwise."""


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
