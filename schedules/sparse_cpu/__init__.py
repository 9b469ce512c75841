"""Sparse convolution kernels for CPUs (x86, ARM), generated per layer from its constant weights.

Entry points: ``pattern_conv2d``, ``block_punched_conv2d``, ``bsr_conv2d`` (one module each),
listed in ``schedules.registry``. Two code generators write a kernel: literal weights
(``specialized``) and a constant table (``compact``), both around one skeleton (``direct_conv``)
and its input layouts (``layout``); ``space`` picks their knobs (``config``).
"""
