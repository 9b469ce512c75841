"""Sparse convolution kernels for phone GPUs (OpenCL: Mali, Adreno), reading their weights from a constant table."""
