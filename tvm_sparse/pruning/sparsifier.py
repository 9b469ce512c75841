"""The ``torch.ao.pruning``-shaped base: ``prepare(model, config)``, ``step()``, ``squash_mask()``.

The configuration is plain data keyed by tensor name: ``{"features.3.weight": PatternScheme(...)}``.
``prepare`` puts an all-ones mask parametrization on each named tensor (the user's state_dict keys
stay as they were), a subclass's ``step`` updates the masks, ``squash_mask`` folds them into plain
tensors and :meth:`BaseSparsifier.plan` returns the plan for the compiler.
"""

import torch

from tvm_sparse.plan import SCHEMES, SchemeError

from .masks import check_shape, compute_mask
from .parametrization import MaskedTensor


def _resolve(model, fqn):
    module_path, _, name = fqn.rpartition(".")
    try:
        module = model.get_submodule(module_path)
    except AttributeError as err:
        raise SchemeError(f"{fqn}: the model has no module {module_path!r}") from err
    tensor = getattr(module, name, None)
    if not isinstance(tensor, torch.nn.Parameter):
        raise SchemeError(f"{fqn}: {module_path or 'the model'} has no parameter {name!r}")
    return module, name


class BaseSparsifier:
    """Owns the masks of one model; subclasses decide in :meth:`step` what the masks are."""

    def __init__(self):
        self.model = None
        self.schemes = {}
        self._masked = {}

    def prepare(self, model, config):
        """Attach an all-ones mask to every tensor named in ``config``.

        Call it on the plain model, before wrapping it in ``DistributedDataParallel`` and before
        building the optimizer (the parameters become the parametrizations' ``original``).

        Parameters
        ----------
        model : torch.nn.Module
        config : dict of str to scheme
            Tensor name (``"layer.weight"``) to its scheme.

        Raises
        ------
        SchemeError
            If a name is not a parameter of ``model``, a value is not a scheme, or a scheme does not
            fit the tensor's shape.
        """
        if self.model is not None:
            raise RuntimeError("this sparsifier is already prepared; use a new one per model")
        if not config:
            raise SchemeError("the pruning config names no tensor")
        for fqn, scheme in config.items():
            if type(scheme) not in SCHEMES.values():
                raise SchemeError(f"{fqn}: {scheme!r} is not a scheme ({', '.join(sorted(SCHEMES))})")
            module, name = _resolve(model, fqn)
            check_shape(scheme, getattr(module, name).shape, fqn)
        self.model = model
        self.schemes = dict(config)
        self._masked = {fqn: MaskedTensor(*_resolve(model, fqn)) for fqn in config}

    def masks(self):
        """``{tensor_fqn: current 0/1 mask}``."""
        return {fqn: masked.mask for fqn, masked in self._masked.items()}

    def originals(self):
        """``{tensor_fqn: the dense trainable parameter behind the mask}``."""
        return {fqn: masked.original for fqn, masked in self._masked.items()}

    def apply_importance(self, importance):
        """Set each tensor's mask to the one of its scheme that keeps the most ``importance[fqn]``.

        A pattern scheme without a library gets one generated from this importance, and keeps it.
        """
        for fqn, scores in importance.items():
            mask, self.schemes[fqn] = compute_mask(self.schemes[fqn], scores)
            self._masked[fqn].set_mask(mask)

    def step(self):
        """Update the masks; each subclass defines when and how."""
        raise NotImplementedError

    def squash_mask(self):
        """Remove the parametrizations, leaving plain parameters that hold the zeros; returns the model."""
        for masked in self._masked.values():
            masked.remove()
        self._masked = {}
        return self.model

    def plan(self):
        """The plan ``{tensor_fqn: scheme}`` of what was pruned (pattern schemes carry their library)."""
        return dict(self.schemes)


class MagnitudeSparsifier(BaseSparsifier):
    """One-shot magnitude pruning (importance ``W**2``): each ``step()`` re-selects the masks.

    The prune-after-training baseline: train dense, ``prepare``, ``step()`` once, fine-tune with
    the masks in place, ``squash_mask()``.
    """

    def step(self):
        """Set every mask from the current weights' magnitudes."""
        with torch.no_grad():
            self.apply_importance({fqn: original.detach() ** 2 for fqn, original in self.originals().items()})
