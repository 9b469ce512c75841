"""The kernels tvm_sparse compiles to, by target family.

- ``dense/``: dlight-style schedule rules for the dense layers on CPUs, and their tuning space.
- ``sparse_cpu/``: the sparse kernels for x86 and ARM CPUs, code generated per layer from its weights.
- ``opencl/``: the sparse kernels for phone GPUs (Mali, Adreno).
- ``registry.py`` lists the sparse kernels; ``profiles.py`` holds each target's fitted numbers;
  the other modules (geometry, epilogue, constant tables, target facts) serve every family.
"""
