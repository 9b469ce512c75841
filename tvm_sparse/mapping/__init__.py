"""Per-layer pruning-scheme mapping: choose dense, pattern, block-punched or BSR for every layer.

A *candidate* is a plan scheme (:mod:`tvm_sparse.plan`) or ``None`` for dense; the mapping's
output is an ordinary plan, so pruning, :func:`tvm_sparse.plan.verify_plan` and
``compile(plan=)`` take it unchanged.
"""
