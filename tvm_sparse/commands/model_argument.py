"""The MODEL argument of the commands that compile or tune a model: a built-in model or a ``.pt2`` program."""

import os

from tvm_sparse.models import MODELS

#: The file name ending of a program saved with ``torch.export.save``.
PROGRAM_SUFFIX = ".pt2"


def add_model_argument(parser):
    """Add the positional ``MODEL|program.pt2`` argument (read it with :func:`load_model`)."""
    parser.add_argument("model", metavar="MODEL|program.pt2",
                        help=f"a built-in CIFAR-10 model ({', '.join(sorted(MODELS))}, input 1x3x32x32) or a "
                             f"program saved with torch.export.save (input: the shapes it was exported with)")


def load_model(name):
    """The model the argument names and an example input of the shape it will be compiled for.

    Parameters
    ----------
    name : str
        A key of :data:`tvm_sparse.models.MODELS`, or the path of a ``.pt2`` file.

    Returns
    -------
    (torch.nn.Module or torch.export.ExportedProgram, tuple of torch.Tensor)
        A built-in model with one seeded CIFAR-10-shaped image, or the saved program with the
        example inputs it was exported with.

    Raises
    ------
    ValueError
        When ``name`` is neither a built-in model nor a ``.pt2`` file name.
    FileNotFoundError
        When the ``.pt2`` file does not exist.
    """
    import torch  # noqa: PLC0415 - not when the parser is built

    if name in MODELS:
        from tvm_sparse.models import build_model  # noqa: PLC0415

        return build_model(name), (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)),)
    if not name.endswith(PROGRAM_SUFFIX):
        raise ValueError(f"{name!r} is neither a built-in model ({', '.join(sorted(MODELS))}) "
                         f"nor a {PROGRAM_SUFFIX} file")
    exported = torch.export.load(name)
    return exported, exported.example_inputs[0]


def model_label(name):
    """The model's name in log folders and titles: a built-in model's name, or the program file's stem."""
    return name if name in MODELS else os.path.basename(name).removesuffix(PROGRAM_SUFFIX)
