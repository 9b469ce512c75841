"""Random small CNNs with random weight structure, the inputs of the compile fuzz test.

A model is drawn as a :class:`ModelSpec` (plain data, so hypothesis can shrink it and a failing
case prints as readable Python) and built with :func:`build`: one to three convolution blocks
(any kernel size, stride, padding, dilation, groups, bias, BatchNorm, activation, residual add),
an optional mean-pool + linear head, and every weight given a random structure — the schemes the
formats know (pruned by the project's own sparsifier, which also yields a plan) and the raw
structures users hand over (random block columns, all-zero filters or layers, a single non-zero,
negative zeros).
"""

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from tvm_sparse.plan import BlockPunchedScheme, BSRScheme, PatternScheme, SchemeError, UnstructuredScheme
from tvm_sparse.pruning import MagnitudeSparsifier
from tvm_sparse.pruning.masks import check_shape

CHANNELS = (1, 2, 3, 4, 5, 8, 12, 16, 24, 32)
KERNELS = ((1, 1), (3, 3), (5, 5), (7, 7), (1, 3), (3, 1), (2, 2))
STRIDES = ((1, 1), (2, 2), (1, 2), (2, 1))
ACTIVATIONS = ("none", "relu", "relu6", "hardswish")
BLOCKS = ((16, 4), (8, 8), (8, 4), (4, 4), (4, 2), (8, 1), (4, 1))
#: Structures applied by the sparsifier (they come with a plan entry) and raw ones (no plan entry).
SCHEMED = ("pattern", "block_punched", "bsr", "unstructured")
RAW = ("dense", "block_columns", "zero_filters", "zero_layer", "single_nonzero", "negative_zeros")


@dataclass(frozen=True)
class Structure:
    """How one weight is pruned: ``kind`` from SCHEMED or RAW, a removed fraction and a block."""

    kind: str
    rate: float
    block: tuple


@dataclass(frozen=True)
class ConvSpec:
    out_channels: int
    kernel: tuple
    stride: tuple
    padding: int
    dilation: int
    groups: str  # "one", "depthwise" or "between"
    bias: bool
    batch_norm: bool
    activation: str
    residual: bool
    structure: Structure


@dataclass(frozen=True)
class ModelSpec:
    batch: int
    in_channels: int
    size: tuple
    convs: tuple
    head: Structure | None  # mean pool + linear, pruned with this structure
    classes: int
    with_plan: bool
    seed: int


def structures():
    return st.builds(Structure, kind=st.sampled_from(SCHEMED + RAW),
                     rate=st.sampled_from((0.5, 0.6, 0.75, 0.875, 0.9)), block=st.sampled_from(BLOCKS))


def conv_specs():
    return st.builds(ConvSpec, out_channels=st.sampled_from(CHANNELS), kernel=st.sampled_from(KERNELS),
                     stride=st.sampled_from(STRIDES), padding=st.integers(0, 3), dilation=st.integers(1, 2),
                     groups=st.sampled_from(("one", "one", "depthwise", "between")), bias=st.booleans(),
                     batch_norm=st.booleans(), activation=st.sampled_from(ACTIVATIONS), residual=st.booleans(),
                     structure=structures())


def model_specs(max_convs=3):
    """Random :class:`ModelSpec` values (inputs of 1 to 20 pixels a side, batch 1 to 3)."""
    return st.builds(ModelSpec, batch=st.integers(1, 3), in_channels=st.sampled_from(CHANNELS),
                     size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
                     convs=st.lists(conv_specs(), min_size=1, max_size=max_convs).map(tuple),
                     head=st.none() | structures(), classes=st.integers(1, 12), with_plan=st.booleans(),
                     seed=st.integers(0, 2**16))


def _groups(spec, in_channels):
    if spec.groups == "depthwise":
        return in_channels
    if spec.groups == "between":
        common = [g for g in range(2, in_channels) if in_channels % g == 0 and spec.out_channels % g == 0]
        return common[0] if common else 1
    return 1


def _fitting(spec, size):
    """``spec``'s convolution adjusted (smaller padding first kept, then dilation and kernel) to fit ``size``."""
    kernel, dilation = spec.kernel, spec.dilation

    def fits(kernel, dilation):
        return all(s + 2 * spec.padding >= dilation * (k - 1) + 1 for s, k in zip(size, kernel))

    if not fits(kernel, dilation):
        dilation = 1
    if not fits(kernel, dilation):
        kernel = (1, 1)
    return kernel, dilation


class _Block(nn.Module):
    def __init__(self, conv, batch_norm, activation, residual):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels) if batch_norm else nn.Identity()
        self.act = {"none": nn.Identity(), "relu": nn.ReLU(), "relu6": nn.ReLU6(),
                    "hardswish": nn.Hardswish()}[activation]
        self.residual = residual

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        return y + x if self.residual else y


def _output_size(size, kernel, stride, padding, dilation):
    return tuple((s + 2 * padding - dilation * (k - 1) - 1) // st_ + 1 for s, k, st_ in zip(size, kernel, stride))


def _raw_structure(weight, structure, generator):
    """Apply a RAW structure to ``weight`` in place."""
    kind, rate = structure.kind, structure.rate
    if kind == "block_columns":
        rows = min(structure.block[0], weight.shape[0])
        filters = -(-weight.shape[0] // rows)
        keep = torch.rand((filters, *weight.shape[1:]), generator=generator) >= rate
        weight.mul_(keep.repeat_interleave(rows, 0)[: weight.shape[0]].to(weight.dtype))
    elif kind == "zero_filters":
        weight[torch.rand(weight.shape[0], generator=generator) < rate] = 0.0
    elif kind == "zero_layer":
        weight.zero_()
    elif kind == "single_nonzero":
        flat = weight.reshape(-1)
        keep = int(torch.randint(flat.numel(), (1,), generator=generator))
        value = float(flat[keep])
        flat.zero_()
        flat[keep] = value or 1.0
    elif kind == "negative_zeros":
        weight[torch.rand(weight.shape, generator=generator) < rate] = -0.0


def _scheme(structure, weight):
    block = structure.block
    return {"pattern": PatternScheme(entries=4 if structure.rate < 0.7 else 5, library_size=8,
                                     connectivity=min(structure.rate, 0.875)),
            "block_punched": BlockPunchedScheme(block=block, sparsity=structure.rate),
            "bsr": BSRScheme(block=block, sparsity=structure.rate),
            "unstructured": UnstructuredScheme(sparsity=structure.rate)}[structure.kind]


def build(spec):
    """The model of ``spec`` (eval mode, pruned), its example input and the sparsifier's plan."""
    torch.manual_seed(spec.seed)
    layers, channels, size = [], spec.in_channels, spec.size
    for conv_spec in spec.convs:
        kernel, dilation = _fitting(conv_spec, size)
        groups = _groups(conv_spec, channels)
        out_channels = conv_spec.out_channels if groups != channels else channels * max(1, conv_spec.out_channels // channels)
        conv = nn.Conv2d(channels, out_channels, kernel, conv_spec.stride, conv_spec.padding, dilation,
                         groups=groups, bias=conv_spec.bias)
        out_size = _output_size(size, kernel, conv_spec.stride, conv_spec.padding, dilation)
        residual = conv_spec.residual and out_channels == channels and out_size == size
        layers.append(_Block(conv, conv_spec.batch_norm, conv_spec.activation, residual))
        channels, size = out_channels, out_size
    if spec.head is not None:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, spec.classes)]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    structures = {f"{i}.conv.weight": c.structure for i, c in enumerate(spec.convs)}
    if spec.head is not None:
        structures[f"{len(layers) - 1}.weight"] = spec.head
    plan = _prune(model, structures, torch.Generator().manual_seed(spec.seed))
    example = torch.randn(spec.batch, spec.in_channels, *spec.size, generator=torch.Generator().manual_seed(spec.seed))
    return model, example, plan


def _prune(model, structures, generator):
    """Prune ``model``'s weights to ``structures``; returns the plan of the schemed ones."""
    config = {}
    with torch.no_grad():
        for fqn, structure in structures.items():
            weight = model.get_parameter(fqn)
            if structure.kind in RAW:
                _raw_structure(weight.data, structure, generator)
            else:
                config[fqn] = _scheme(structure, weight)
    usable = {}
    for fqn, scheme in config.items():
        try:
            check_shape(scheme, model.get_parameter(fqn).shape, fqn)
        except SchemeError:
            continue  # the scheme does not fit this weight: it stays dense
        usable[fqn] = scheme
    if not usable:
        return {}
    sparsifier = MagnitudeSparsifier()
    sparsifier.prepare(model, usable)
    sparsifier.step()
    sparsifier.squash_mask()
    return sparsifier.plan()
