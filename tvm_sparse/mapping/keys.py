"""Stable string keys for mapping candidates, shared by the latency table, the sensitivities and the solver."""

import json

from tvm_sparse.plan import scheme_from_dict, scheme_to_dict

DENSE = "dense"


def candidate_key(scheme):
    """The key of a candidate: ``"dense"`` for ``None``, else its scheme dict as sorted, compact JSON.

    Parameters
    ----------
    scheme : tvm_sparse.plan scheme or None
        The candidate; ``None`` keeps the layer dense.

    Returns
    -------
    str
        A key equal for equal schemes, usable in JSON files (latency tables) and dicts.
    """
    if scheme is None:
        return DENSE
    return json.dumps(scheme_to_dict(scheme), sort_keys=True, separators=(",", ":"))


def candidate_from_key(key):
    """The candidate a :func:`candidate_key` came from (``None`` for dense)."""
    if key == DENSE:
        return None
    return scheme_from_dict(json.loads(key))
