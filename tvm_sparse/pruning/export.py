"""Export a pruned model with its plan: ``model.pt`` (the state_dict) and ``plan.json``.

The plan is verified against the weights before anything is written, so an export is always a
pair the compiler accepts.
"""

from pathlib import Path

import torch

from tvm_sparse.plan import save_plan, verify_plan


def weights_of(model):
    """The model's state_dict as numpy arrays, the form :func:`tvm_sparse.plan.verify_plan` takes."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def export_pruned(model, plan, directory):
    """Verify ``plan`` against ``model``'s weights, then write ``model.pt`` and ``plan.json``.

    Parameters
    ----------
    model : torch.nn.Module
        The pruned model (squashed, or still masked: its state_dict holds the masked weights
        under the user's own keys either way).
    plan : dict of str to scheme
        From the sparsifier's ``plan()``.
    directory : str or path
        Created if missing.

    Returns
    -------
    tuple of pathlib.Path
        The model file and the plan file.

    Raises
    ------
    tvm_sparse.plan.PlanError
        If the weights do not have the structure the plan claims (nothing is written).
    """
    verify_plan(plan, weights_of(model))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path, plan_path = directory / "model.pt", directory / "plan.json"
    torch.save(model.state_dict(), model_path)
    save_plan(plan, plan_path)
    return model_path, plan_path
