"""The layers a mapping chooses for: every convolution and linear layer of a model, with its shapes.

A layer is found by running the model once on the example with forward hooks, so the input shape
each layer sees is known. Its :attr:`Layer.signature` leaves out the name: layers of equal
signature (the repeated blocks of a ResNet) take the same kernels, and are measured once.
"""

from dataclasses import dataclass

import torch
from torch import nn

#: Layers with fewer input channels or features stay dense (the stem sees the image's 3 channels).
MIN_IN_CHANNELS = 8


@dataclass(frozen=True)
class Layer:
    """One convolution or linear layer of a model.

    Attributes
    ----------
    name : str
        The weight's ``state_dict`` key (``"layer1.0.conv1.weight"``), the key of the plan.
    op : str
        ``"conv2d"`` or ``"linear"``.
    weight_shape, input_shape : tuple of int
    stride, padding, dilation : tuple of int
        ``(1, 1)`` / ``(0, 0)`` for linear layers.
    groups : int
    bias : bool
    """

    name: str
    op: str
    weight_shape: tuple
    input_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = False

    @property
    def signature(self):
        """Everything but the name: what the layer's kernels and their latency depend on."""
        return (self.op, self.weight_shape, self.input_shape, self.stride, self.padding, self.dilation,
                self.groups, self.bias)

    @property
    def kernel_size(self):
        return tuple(self.weight_shape[2:]) if self.op == "conv2d" else (1, 1)

    @property
    def in_channels(self):
        return self.weight_shape[1] * self.groups

    @property
    def parameters(self):
        """Number of weights (the unit of a compression target)."""
        count = 1
        for dim in self.weight_shape:
            count *= dim
        return count

    @property
    def output_pixels(self):
        """Pixels of one output map (1 for a linear layer)."""
        if self.op == "linear":
            return 1
        sides = [(size + 2 * pad - dil * (kernel - 1) - 1) // stride + 1 for size, pad, dil, kernel, stride in
                 zip(self.input_shape[2:], self.padding, self.dilation, self.kernel_size, self.stride)]
        return sides[0] * sides[1]

    @property
    def macs(self):
        """Multiply-adds of the dense layer on its input (every weight once per output pixel and image)."""
        return self.input_shape[0] * self.output_pixels * self.parameters

    def dense_reason(self):
        """Why no sparse kernel takes this layer, or None when one can."""
        if self.groups != 1:
            return f"grouped convolution (groups={self.groups}): the sparse kernels take groups=1"
        if self.dilation != (1, 1):
            return f"dilated convolution (dilation={self.dilation}): the sparse kernels take dilation 1"
        if self.in_channels < MIN_IN_CHANNELS:
            return f"{self.in_channels} input channels (the stem): too few to prune"
        return None


def find_layers(model, example):
    """The convolution and linear layers of ``model`` in execution order, as :class:`Layer`.

    Parameters
    ----------
    model : torch.nn.Module
    example : torch.Tensor or tuple of torch.Tensor
        An input the model runs on (its shapes fix the layers' input shapes).

    Returns
    -------
    list of Layer
    """
    examples = example if isinstance(example, tuple) else (example,)
    found = []
    handles = []

    def hook(name, module):
        def record(_module, inputs, _output):
            shape = tuple(inputs[0].shape)
            if isinstance(module, nn.Conv2d):
                found.append(Layer(f"{name}.weight", "conv2d", tuple(module.weight.shape), shape,
                                   tuple(module.stride), _padding(module), tuple(module.dilation), module.groups,
                                   module.bias is not None))
            else:
                found.append(Layer(f"{name}.weight", "linear", tuple(module.weight.shape), shape,
                                   bias=module.bias is not None))
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name, module)))
    try:
        with torch.no_grad():
            model(*examples)
    finally:
        for handle in handles:
            handle.remove()
    seen = set()
    return [layer for layer in found if not (layer.name in seen or seen.add(layer.name))]


def model_macs(model, example):
    """Multiply-adds of the convolution and linear layers of ``model`` on ``example``: dense and kept.

    A layer's kept multiply-adds are its dense ones times the fraction of its weights that are not
    zero, so ``dense / kept`` is the speed-up that removing the zeros' FLOPs allows (the ideal).

    Returns
    -------
    (int, float)
        Dense and kept multiply-adds.
    """
    weights = dict(model.named_parameters())
    dense = kept = 0
    for layer in find_layers(model, example):
        weight = weights[layer.name]
        dense += layer.macs
        kept += layer.macs * int(torch.count_nonzero(weight)) / weight.numel()
    return dense, kept


def _padding(conv):
    if isinstance(conv.padding, str):
        raise ValueError(f"padding={conv.padding!r}: give the convolution numeric padding to map it")
    return tuple(conv.padding)
