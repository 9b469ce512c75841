"""How much accuracy each candidate costs each layer: the loss increase when only that layer is pruned.

For every layer and candidate the layer's weight is pruned by magnitude to the candidate (the
others stay dense), the loss on a few calibration batches is measured, and the weight restored;
the sensitivity is the increase over the dense model's loss (never below 0). Summed over layers
it is the search's accuracy cost: additive, as the knapsack needs, and cheap (one forward pass
per batch and candidate). ``method="first_order"`` instead sums ``(w * dL/dw)**2`` over the
weights a candidate removes (the importance ClickTrain prunes by): one backward pass in all.

Both measure the damage of a prune before any training repairs it, while the pruned model is
trained afterwards (ClickTrain, fine-tuning), and schemes differ in how much of their damage
training repairs: a block-punched layer raises the loss more at once than a pattern layer of the
same rate, yet can train back to the same accuracy (docs/performance.md, "Per-layer mapping").
``method="recovered_loss"`` measures what is left after repair: the model with the layer pruned is
fine-tuned for a few steps on the calibration batches (the pruned weights held at zero), and its
loss is compared with the dense model's after the same steps (NetAdapt's short-term fine-tuning
of each proposal). It costs :data:`RECOVERY_STEPS` training steps per candidate.
``method="refit_loss"`` repairs the layer alone, as training would first: its kept weights are
refit by least squares to the dense layer's outputs on the calibration batches (the layer-wise
reconstruction of OBC and SparseGPT), and the loss increase of the refit layer is the cost. The
other layers stay as they are, so they cannot hide one layer's damage, and the cost stays local
and additive; one forward pass per candidate after one pass that gathers each layer's inputs.
"""

import copy

import torch

from tvm_sparse.mapping.keys import candidate_key
from tvm_sparse.pruning.masks import compute_mask

METHODS = ("loss", "first_order", "recovered_loss", "refit_loss")

#: Fine-tuning steps (one calibration batch each) before a ``recovered_loss`` is measured.
RECOVERY_STEPS = 20

#: Adam's learning rate for those steps.
RECOVERY_LR = 1e-3

#: Conjugate-gradient steps of a ``refit_loss`` least-squares refit.
REFIT_ITERATIONS = 40

#: Damping of the refit: this fraction of the mean diagonal of the inputs' Gram matrix is added to
#: it, which keeps the refit near the dense weights where the inputs do not pin them down.
REFIT_DAMPING = 0.01

#: Images per chunk when a convolution's inputs are unfolded into their patches.
PATCH_CHUNK = 16


def _loss(model, batches, loss_fn):
    with torch.no_grad():
        return sum(float(loss_fn(model(x), y)) for x, y in batches) / len(batches)


def sensitivities(model, layers, candidates, batches, method="loss", loss_fn=None):
    """``{layer name: {candidate key: accuracy cost}}`` of every candidate of every layer.

    Parameters
    ----------
    model : torch.nn.Module
        The dense model, in eval mode; its weights are restored after each trial.
    layers : sequence of tvm_sparse.mapping.layers.Layer
    candidates : dict[str, list]
        Candidates per layer name.
    batches : sequence of (torch.Tensor, torch.Tensor)
        Calibration inputs and labels (a few batches of the user's data).
    method : str
        ``"loss"`` (loss increase, one forward pass per batch and candidate), ``"first_order"`` or
        ``"recovered_loss"`` (the increase left after :data:`RECOVERY_STEPS` steps of fine-tuning)
        or ``"refit_loss"`` (the increase once the layer's kept weights are refit to its dense outputs).
    loss_fn : callable, optional
        ``loss_fn(logits, labels)``; cross entropy by default.
    """
    if method not in METHODS:
        raise ValueError(f"unknown sensitivity method {method!r}; choose one of {METHODS}")
    batches = list(batches)
    if not batches:
        raise ValueError("sensitivities need at least one calibration batch")
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    parameters = dict(model.named_parameters())
    costs = {"loss": _loss_costs, "first_order": _first_order_costs, "recovered_loss": _recovered_loss_costs,
             "refit_loss": _refit_loss_costs}
    cost_of = costs[method](model, batches, loss_fn, parameters)
    result = {}
    for layer in layers:
        weight = parameters[layer.name].detach()
        result[layer.name] = {candidate_key(scheme): 0.0 if scheme is None else
                              cost_of(layer.name, compute_mask(scheme, weight ** 2)[0])
                              for scheme in candidates[layer.name]}
    return result


def _loss_costs(model, batches, loss_fn, parameters):
    """``cost(name, mask)``: the loss increase with only that weight masked (restored after)."""
    base = _loss(model, batches, loss_fn)

    def cost(name, mask):
        weight = parameters[name]
        return _loss_increase_with(model, batches, loss_fn, weight, weight.detach() * mask, base)

    return cost


def _loss_increase_with(model, batches, loss_fn, weight, replacement, base):
    """The loss increase over ``base`` while ``weight`` holds ``replacement`` (restored after; never below 0)."""
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.copy_(replacement)
    try:
        return max(0.0, _loss(model, batches, loss_fn) - base)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def _first_order_costs(model, batches, loss_fn, parameters):
    """``cost(name, mask)``: the summed ``(w * dL/dw)**2`` of the weights the mask removes."""
    model.zero_grad()
    for x, y in batches:
        (loss_fn(model(x), y) / len(batches)).backward()
    importance = {name: (p.detach() * p.grad.detach()) ** 2 for name, p in parameters.items() if p.grad is not None}
    model.zero_grad()

    def cost(name, mask):
        return float((importance[name] * (1 - mask)).sum())

    return cost


def _recovered_loss_costs(model, batches, loss_fn, parameters):
    """``cost(name, mask)``: the loss increase left after fine-tuning with that weight masked.

    Every trial starts from the same state (weights, batch-norm statistics, training mode) and
    ends by restoring it; the dense model's loss after the same fine-tuning is the baseline.
    """
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training

    def hold(name, mask):
        if name is not None:
            with torch.no_grad():
                parameters[name].mul_(mask)

    def recovered_loss(name=None, mask=None):
        optimizer = torch.optim.Adam(model.parameters(), lr=RECOVERY_LR)
        try:
            hold(name, mask)
            model.train()
            for step in range(RECOVERY_STEPS):
                x, y = batches[step % len(batches)]
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
                hold(name, mask)
            model.eval()
            return _loss(model, batches, loss_fn)
        finally:
            model.zero_grad(set_to_none=True)
            model.load_state_dict(saved)
            model.train(was_training)

    base = recovered_loss()

    def cost(name, mask):
        return max(0.0, recovered_loss(name, mask) - base)

    return cost


def _refit_loss_costs(model, batches, loss_fn, parameters):
    """``cost(name, mask)``: the loss increase with that weight masked and its kept entries refit."""
    base = _loss(model, batches, loss_fn)
    modules = dict(model.named_modules())
    grams = {}

    def cost(name, mask):
        module = modules[name.rpartition(".")[0]]
        weight = parameters[name]
        dense = weight.detach()
        if getattr(module, "groups", 1) == 1:
            if name not in grams:
                grams[name] = _input_gram(model, module, batches)
            pruned = _refit(dense.reshape(len(dense), -1), mask.reshape(len(mask), -1), grams[name]).reshape(dense.shape)
        else:
            pruned = dense * mask
        return _loss_increase_with(model, batches, loss_fn, weight, pruned, base)

    return cost


def _input_gram(model, module, batches):
    """``X^T X`` of the layer's inputs on the batches, one row of ``X`` per output pixel (its patch)."""
    gram = None

    def gather(_module, inputs):
        nonlocal gram
        for chunk in inputs[0].detach().split(PATCH_CHUNK):
            if isinstance(module, torch.nn.Conv2d):
                chunk = torch.nn.functional.unfold(chunk, module.kernel_size, module.dilation, module.padding,
                                                   module.stride)
                chunk = chunk.transpose(1, 2)
            rows = chunk.reshape(-1, chunk.shape[-1]).double()
            gram = rows.T @ rows if gram is None else gram + rows.T @ rows

    handle = module.register_forward_pre_hook(gather)
    try:
        with torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        handle.remove()
    return gram


def _refit(weight, mask, gram):
    """The masked weight whose rows best reproduce ``weight``'s outputs: ``min ||X (w' - w)||``, ``w' = mask * w'``.

    Each row's normal equations, restricted to its kept entries, are solved together by
    conjugate gradients (rows keep different entries, so no one factorisation serves them all).
    """
    damped = gram + REFIT_DAMPING * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    mask = mask.double()

    def apply(x):
        return mask * ((mask * x) @ damped)

    x = mask * weight.double()
    residual = mask * (weight.double() @ damped) - apply(x)
    direction = residual.clone()
    norm = (residual * residual).sum(1, keepdim=True)
    for _ in range(REFIT_ITERATIONS):
        product = apply(direction)
        step = norm / (direction * product).sum(1, keepdim=True).clamp_min(1e-300)
        x = x + step * direction
        residual = residual - step * product
        new_norm = (residual * residual).sum(1, keepdim=True)
        direction = residual + new_norm / norm.clamp_min(1e-300) * direction
        norm = new_norm
    return (mask * x).to(weight.dtype)
