"""Reference CNNs defined here, so that nothing is downloaded; random weights.

CIFAR-10 shapes (3x32x32 in, 10 classes; :mod:`tvm_sparse.models.cifar`): ``resnet18``,
``vgg16``, ``mobilenet_v2``. ImageNet shapes (3x224x224 in, 1000 classes):
``resnet50`` (:mod:`~tvm_sparse.models.resnet50`), ``mobilenet_v2_224`` and
``mobilenet_v3_large`` (:mod:`~tvm_sparse.models.mobilenet`). Each model class knows the side
of its square input image (``input_size``): :func:`example_input` makes one.
"""

import torch
from torch import nn

from .cifar import VGG16, MobileNetV2, ResNet18
from .mobilenet import MobileNetV2 as ImageNetMobileNetV2
from .mobilenet import MobileNetV3Large
from .resnet50 import ResNet50

MODELS = {"resnet18": ResNet18, "vgg16": VGG16, "mobilenet_v2": MobileNetV2, "resnet50": ResNet50,
          "mobilenet_v2_224": ImageNetMobileNetV2, "mobilenet_v3_large": MobileNetV3Large}

#: The models of each input family (``bench models`` runs the CIFAR-10 ones by default).
CIFAR_MODELS = ("resnet18", "vgg16", "mobilenet_v2")
IMAGENET_MODELS = ("resnet50", "mobilenet_v2_224", "mobilenet_v3_large")

#: The side of the example image when no model is named (a CIFAR-10 image).
CIFAR_INPUT_SIZE = 32


def _model_class(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def input_shape(name, batch=1, size=None):
    """The ``(batch, 3, size, size)`` input of model ``name``; ``size`` defaults to the model's own."""
    size = _model_class(name).input_size if size is None else size
    if size < 1 or batch < 1:
        raise ValueError(f"the input size and batch must be positive, got size {size}, batch {batch}")
    return (batch, 3, size, size)


def example_input(name=None, batch=1, size=None, seed=0):
    """A seeded random input of model ``name`` (of a CIFAR-10 model when None), ``size`` x ``size`` if given.

    The ImageNet models take smaller images too (down to 32x32: they downsample 32x), which keeps
    tests fast; the compiled model then only takes that size.
    """
    if name is None:
        shape = (batch, 3, size or CIFAR_INPUT_SIZE, size or CIFAR_INPUT_SIZE)
    else:
        shape = input_shape(name, batch, size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def build_model(name, num_classes=None, seed=0):
    """Build a reference model in evaluation mode with deterministic, non-trivial BatchNorm statistics.

    Parameters
    ----------
    name : str
        One of ``MODELS``.
    num_classes : int, optional
        Size of the classifier output (default: the model's, 10 for CIFAR-10, 1000 for ImageNet).
    seed : int
        Seed of the weight initialisation and of the BatchNorm statistics.

    Returns
    -------
    torch.nn.Module
        The model, in ``eval()`` mode. Its BatchNorm running statistics and affine parameters are
        drawn at random (not the identity), so that folding them is actually exercised.
    """
    model_class = _model_class(name)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model_class() if num_classes is None else model_class(num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
                module.weight.copy_(0.5 + torch.rand(shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(shape, generator=generator))
    return model.eval()


__all__ = ["CIFAR_INPUT_SIZE", "CIFAR_MODELS", "IMAGENET_MODELS", "MODELS", "VGG16", "ImageNetMobileNetV2",
           "MobileNetV2", "MobileNetV3Large", "ResNet18", "ResNet50", "build_model", "example_input", "input_shape"]
