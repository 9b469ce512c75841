"""Graph passes of tvm_sparse.

The folder keeps the name the project was specified with (``relay_passes``), but TVM 0.27 has no
Relay: every pass here is a Relax pass (``tvm.ir.transform`` module or function passes over
``tvm.relax`` IR). ``pipeline.py`` lists the phases in the order ``tvm_sparse.compile`` runs them.
"""
