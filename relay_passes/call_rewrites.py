"""Module passes that replace single Relax operator calls, one call at a time.

:func:`call_rewrite_pass` builds the pass of a rewrite function, which sees each call of every Relax
function of the module (its arguments already rewritten) and returns the expression that replaces
it, or None to keep it. ``relay_passes.winograd`` and ``relay_passes.strided_pointwise`` are such
passes.
"""

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator


def call_rewrite_pass(name, rewrite, doc):
    """A module pass class, made with ``Pass(target)``, that applies ``rewrite`` to every call.

    Parameters
    ----------
    name : str
        The pass's name (``tvm_sparse.<Name>``).
    rewrite : callable
        ``rewrite(builder, call, target)``: the replacement of ``call``, or None to keep it.
        ``builder`` is the rewriter's ``relax.BlockBuilder`` (to add functions and emit bindings).
    doc : str
        The pass class's docstring.
    """

    @mutator
    class _Rewriter(PyExprMutator):
        def __init__(self, mod, target):
            super().__init__(mod)
            self.target = target

        def visit_call_(self, call):  # pylint: disable=arguments-renamed
            call = super().visit_call_(call)
            replacement = rewrite(self.builder_, call, self.target)
            return call if replacement is None else replacement

    @tvm.transform.module_pass(opt_level=0, name=name)
    class _CallRewritePass:
        __doc__ = doc

        def __init__(self, target):
            self.target = target

        def transform_module(self, mod, _ctx):
            rewriter = _Rewriter(mod, self.target)
            for global_var, func in mod.functions_items():
                if isinstance(func, relax.Function):
                    rewriter.builder_.update_func(global_var, rewriter.visit_expr(func))
            return rewriter.builder_.get()

    return _CallRewritePass
