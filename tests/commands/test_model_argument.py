"""Every command takes the built-in models by name, each at its own input size or ``--input-size``."""

import pytest

from tvm_sparse.cli import build_parser
from tvm_sparse.commands.model_argument import load_model
from tvm_sparse.models import IMAGENET_MODELS, ResNet50


@pytest.mark.parametrize("name", IMAGENET_MODELS)
@pytest.mark.parametrize("command", [["compile", "{}"], ["tune", "{}"], ["map", "{}", "-o", "plan.json"], ["demo", "--model", "{}"],
                                     ["bench", "models", "--model", "{}"], ["bench", "model", "--model", "{}"]])
def test_every_command_takes_the_imagenet_models_and_an_input_size(command, name):
    args = build_parser().parse_args([part.format(name) for part in command] + ["--input-size", "64"])
    assert args.input_size == 64
    assert name in (getattr(args, "model", None), *(getattr(args, "models", None) or ()))


def test_a_built_in_model_comes_with_an_input_of_its_size():
    model, (example,) = load_model("resnet50")
    assert isinstance(model, ResNet50) and example.shape == (1, 3, 224, 224)
    assert load_model("resnet50", 64)[1][0].shape == (1, 3, 64, 64)
    assert load_model("resnet18")[1][0].shape == (1, 3, 32, 32)


def test_an_input_size_is_refused_for_a_saved_program_and_when_not_positive(capsys):
    with pytest.raises(ValueError, match="--input-size is for built-in models"):
        load_model("program.pt2", 64)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compile", "resnet50", "--input-size", "0"])
    assert "must be positive, got 0" in capsys.readouterr().err
