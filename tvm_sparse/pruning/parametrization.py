"""Weight masks as ``torch.nn.utils.parametrize`` parametrizations that keep the user's state_dict keys.

A parametrization moves ``conv.weight`` to ``conv.parametrizations.weight.original``. Two hooks on
the owning module undo that rename for checkpoints: ``state_dict()`` returns the masked weight under
``conv.weight`` (in the module's own key order), and ``load_state_dict()`` loads ``conv.weight`` into
the original. So a checkpoint of a model being pruned loads into the plain model, and back.
"""

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """Multiplies the weight by a 0/1 mask; the mask is a non-persistent buffer (not in the state_dict)."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight):
        return weight * self.mask


def _original_key(prefix, name):
    return f"{prefix}parametrizations.{name}.original"


class MaskedTensor:
    """One masked tensor of a module: registers the parametrization and the state_dict hooks.

    Parameters
    ----------
    module : torch.nn.Module
        The module that owns the tensor.
    name : str
        The tensor's attribute name on ``module`` (``"weight"``).
    """

    def __init__(self, module, name):
        self.module, self.name = module, name
        local_order = list(module.state_dict(keep_vars=True).keys())
        self._parameter_order = list(module._parameters)
        original = getattr(module, name)
        parametrize.register_parametrization(module, name, WeightMask(torch.ones_like(original.detach())))
        self._hooks = [
            module.register_state_dict_post_hook(self._make_state_dict_hook(local_order)),
            module.register_load_state_dict_pre_hook(self._load_state_dict_hook),
        ]

    @property
    def parametrization(self):
        """The :class:`WeightMask` module."""
        return self.module.parametrizations[self.name][0]

    @property
    def original(self):
        """The trainable dense parameter behind the mask."""
        return self.module.parametrizations[self.name].original

    @property
    def mask(self):
        """The current 0/1 mask."""
        return self.parametrization.mask

    def set_mask(self, mask, zero_pruned=True):
        """Replace the mask; with ``zero_pruned`` also zero the pruned entries of the original.

        Zeroing makes a weight that a later mask revives start again from zero, instead of from
        the stale value it had when it was pruned.
        """
        with torch.no_grad():
            self.mask.copy_(mask)
            if zero_pruned:
                self.original.mul_(self.mask)

    def _make_state_dict_hook(self, local_order):
        name = self.name

        def hook(module, state_dict, prefix, local_metadata):
            original_key = _original_key(prefix, name)
            if original_key not in state_dict:
                return
            state_dict.pop(original_key)
            state_dict[prefix + name] = getattr(module, name).detach()
            # This module's keys are the last ones written; re-append them in the module's own order.
            rank = {prefix + key: index for index, key in enumerate(local_order)}
            own = [key for key in state_dict if key.startswith(prefix)]
            for key in sorted(own, key=lambda key: rank.get(key, len(rank))):
                state_dict[key] = state_dict.pop(key)

        return hook

    def _load_state_dict_hook(self, module, state_dict, prefix, *args):
        if prefix + self.name in state_dict:
            state_dict[_original_key(prefix, self.name)] = state_dict.pop(prefix + self.name)

    def remove(self):
        """Fold the mask into a plain parameter (the zeros stay) and drop the hooks."""
        for handle in self._hooks:
            handle.remove()
        parametrize.remove_parametrizations(self.module, self.name, leave_parametrized=True)
        # remove_parametrizations re-adds the parameter last; put it back in its place (weight, bias).
        parameters = self.module._parameters
        rank = {name: index for index, name in enumerate(self._parameter_order)}
        ordered = sorted(parameters.items(), key=lambda item: rank.get(item[0], len(rank)))
        parameters.clear()
        parameters.update(ordered)
