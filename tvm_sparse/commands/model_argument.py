"""The MODEL argument of the commands that compile or tune a model: a built-in model or a ``.pt2`` program."""

import argparse
import os

from tvm_sparse.models import MODELS, input_shape

#: The file name ending of a program saved with ``torch.export.save``.
PROGRAM_SUFFIX = ".pt2"


def add_model_argument(parser):
    """Add the positional ``MODEL|program.pt2`` argument and ``--input-size`` (read them with :func:`load_model`)."""
    parser.add_argument("model", metavar="MODEL|program.pt2",
                        help=f"a built-in model ({models_help()}) or a program saved with torch.export.save "
                             f"(input: the shapes it was exported with)")
    add_input_size_argument(parser)


def models_help():
    """The built-in models with their input shapes, for a help text."""
    return ", ".join(f"{name} {'x'.join(map(str, input_shape(name)))}" for name in sorted(MODELS))


def add_input_size_argument(parser):
    """``--input-size N``: a built-in model takes N x N images instead of its own size."""
    parser.add_argument("--input-size", type=_positive, metavar="N", default=None,
                        help="side of the square input image of a built-in model (default: its own; the "
                             "ImageNet models take 32 or more)")


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def load_model(name, size=None):
    """The model the argument names and an example input of the shape it will be compiled for.

    Parameters
    ----------
    name : str
        A key of :data:`tvm_sparse.models.MODELS`, or the path of a ``.pt2`` file.
    size : int, optional
        Side of a built-in model's input image (default: the model's own).

    Returns
    -------
    (torch.nn.Module or torch.export.ExportedProgram, tuple of torch.Tensor)
        A built-in model with one seeded image, or the saved program with the example inputs it
        was exported with.

    Raises
    ------
    ValueError
        When ``name`` is neither a built-in model nor a ``.pt2`` file name, or ``size`` is given
        for a saved program.
    FileNotFoundError
        When the ``.pt2`` file does not exist.
    """
    import torch  # noqa: PLC0415 - not when the parser is built

    if name in MODELS:
        from tvm_sparse.models import build_model, example_input  # noqa: PLC0415 - as torch

        return build_model(name), (example_input(name, size=size),)
    if not name.endswith(PROGRAM_SUFFIX):
        raise ValueError(f"{name!r} is neither a built-in model ({', '.join(sorted(MODELS))}) "
                         f"nor a {PROGRAM_SUFFIX} file")
    if size is not None:
        raise ValueError(f"--input-size is for built-in models; {name} takes the shapes it was exported with")
    exported = torch.export.load(name)
    return exported, exported.example_inputs[0]


def model_label(name):
    """The model's name in log folders and titles: a built-in model's name, or the program file's stem."""
    return name if name in MODELS else os.path.basename(name).removesuffix(PROGRAM_SUFFIX)
