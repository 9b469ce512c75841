"""Sub-commands of the ``tvm-sparse`` command line, one module each."""
