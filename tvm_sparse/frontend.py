"""Import a PyTorch model into a Relax module whose weights keep their ``state_dict`` names."""

import logging
import os
import warnings

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind
from tvm import relax
from tvm.relax.frontend.torch import from_exported_program

from tvm_sparse.checks import ModelError

logger = logging.getLogger(__name__)


def from_torch(model, example_inputs):
    """Export a PyTorch model with ``torch.export`` and import it with TVM's Relax frontend.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or path
        The model, in the mode it should be compiled in (call ``model.eval()`` first for
        inference: a model in training mode is exported as it is, with a warning), or the path
        of a program saved with ``torch.export.save`` (``.pt2``).
    example_inputs : torch.Tensor or tuple of torch.Tensor
        Inputs whose shapes and dtypes the compiled model will take.

    Returns
    -------
    mod : tvm.IRModule
        A Relax module whose ``main`` takes the model inputs followed by one parameter per weight
        and buffer, each named by its ``state_dict`` key (``"layer1.0.conv1.weight"``).
    params : dict[str, tvm.runtime.Tensor]
        The weights and buffers by ``state_dict`` key, in the order of ``main``'s parameters.

    Raises
    ------
    tvm_sparse.checks.ModelError
        The model uses an operator TVM's PyTorch frontend cannot import (the message names it).
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"no saved model at {os.fspath(model)!r} (from_torch takes a path saved with "
                                    "torch.export.save, a torch.nn.Module or an ExportedProgram)")
        model = torch.export.load(model)
    if isinstance(model, ExportedProgram):
        exported = model
    else:
        if not isinstance(model, torch.nn.Module):
            raise TypeError("from_torch takes a torch.nn.Module, an ExportedProgram or the path of one saved "
                            f"with torch.export.save, not {type(model).__name__}")
        if model.training:
            logger.warning("%s is in training mode; call model.eval() to compile it for inference",
                           type(model).__name__)
        with torch.no_grad():
            exported = torch.export.export(model, tuple(example_inputs))
    with warnings.catch_warnings():
        # torch 2.13 deprecates a pytree API that TVM 0.27's frontend still calls.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        try:
            mod = from_exported_program(exported, keep_params_as_input=True)
        except AssertionError as error:  # the frontend asserts on operators it has no conversion for
            if "Unsupported function types" not in str(error):
                raise
            raise ModelError(f"TVM's PyTorch frontend cannot import this model: {error}; rewrite those operators "
                             "with ones the frontend converts") from None
    mod, detached = relax.frontend.detach_params(mod)
    return _rename_params(mod, detached.get("main", []), _state_dict_names(exported))


def _state_dict_names(exported):
    """Map the exported placeholder names (``p_conv1_weight``) to ``state_dict`` keys (``conv1.weight``)."""
    kinds = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)
    return {spec.arg.name: spec.target for spec in exported.graph_signature.input_specs
            if spec.kind in kinds}


def _rename_params(mod, values, fqn_by_placeholder):
    """Rename ``main``'s weight parameters to their ``state_dict`` keys."""
    main = mod["main"]
    num_inputs = len(main.params) - len(values)
    old_params = list(main.params[num_inputs:])
    new_params = [relax.Var(fqn_by_placeholder.get(p.name, p.name), p.ty) for p in old_params]
    body = main.bind_params({old: new for old, new in zip(old_params, new_params)}).body
    renamed = relax.Function(list(main.params[:num_inputs]) + new_params, body, main.ret_ty,
                             main.is_pure, main.attrs, main.span)
    mod["main"] = renamed
    return mod, {param.name: value for param, value in zip(new_params, values)}
