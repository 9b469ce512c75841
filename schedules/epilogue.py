"""The element-wise tail fused into a sparse convolution: bias, residual add, ReLU/ReLU6."""

from dataclasses import dataclass

ACTIVATIONS = (None, "relu", "relu6")


@dataclass(frozen=True)
class Epilogue:
    """What a kernel applies to each output: ``activation(conv + bias + residual)``.

    Attributes
    ----------
    bias : bool
        Add a per-output-channel bias ``[K]`` (an extra PrimFunc parameter).
    residual : bool
        Add a tensor shaped like the output (an extra PrimFunc parameter), as in a ResNet block.
    activation : None, "relu" or "relu6"
    """

    bias: bool = False
    residual: bool = False
    activation: str | None = None

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    def activate(self, value, lanes=1, dtype="float32"):
        """Apply the activation to a TIR expression of ``lanes`` values of ``dtype``."""
        from tvm import tirx

        def constant(number):
            scalar = tirx.const(number, dtype)
            return tirx.Broadcast(scalar, lanes) if lanes > 1 else scalar

        if self.activation is None:
            return value
        # comparisons, not max/min: a NaN stays NaN, as in PyTorch
        value = tirx.Select(value < constant(0.0), constant(0.0), value)
        if self.activation == "relu6":
            value = tirx.Select(value > constant(6.0), constant(6.0), value)
        return value
