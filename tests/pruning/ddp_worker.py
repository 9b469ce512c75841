"""One rank of the DistributedDataParallel ClickTrain test (run as a script by test_clicktrain.py).

Usage: python ddp_worker.py RANK WORLD_SIZE INIT_FILE OUT_FILE
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from tvm_sparse.data import load_digits
from tvm_sparse.plan import BlockPunchedScheme, PatternScheme, plan_to_json
from tvm_sparse.pruning.clicktrain import ClickTrainSchedule, ClickTrainSparsifier
from tvm_sparse.pruning.small_cnn import SmallCNN

CONFIG = {"conv2.weight": PatternScheme(connectivity=0.5), "conv3.weight": BlockPunchedScheme(sparsity=0.75)}
SCHEDULE = ClickTrainSchedule(prune_start=6, prune_end=14, stages=3, lasso_steps=3, update_every=2)
STEPS, BATCH = 18, 32


def main(rank, world_size, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    sparsifier = ClickTrainSparsifier(SCHEDULE)
    sparsifier.prepare(model, CONFIG)
    # No buffer sync in forward: every rank must reach the same masks on its own.
    ddp = DistributedDataParallel(model, forward_sync_buffers=False)
    expected_keys = ["module." + key for key in SmallCNN(width=8).state_dict()]
    assert list(ddp.state_dict()) == expected_keys, "the masks changed the DDP state_dict keys"
    optimizer = torch.optim.Adam(ddp.parameters(), lr=2e-3)
    data = load_digits()
    x, y = torch.from_numpy(data.x_train[rank::world_size]), torch.from_numpy(data.y_train[rank::world_size])
    for step in range(STEPS):
        batch = slice(step * BATCH % (len(x) - BATCH), step * BATCH % (len(x) - BATCH) + BATCH)
        F.cross_entropy(ddp(x[batch]), y[batch]).backward()
        sparsifier.step()
        optimizer.step()
        optimizer.zero_grad()
    sparsifier.squash_mask()
    weights = {name: tensor for name, tensor in model.state_dict().items() if name.startswith("conv")}
    torch.save({"weights": weights, "plan": plan_to_json(sparsifier.plan())}, out_file)
    print(f"rank {rank}: saved", flush=True)
    # Tear down in order: no rank closes its connections while the other still uses them, and
    # the DDP reducer (which holds the process group) goes before the group is shut down.
    dist.barrier()
    del ddp, optimizer
    dist.destroy_process_group()
    print(f"rank {rank}: process group destroyed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    # The result is written and the group destroyed. Skip the interpreter's teardown, where Gloo
    # threads still alive can abort the process (pytorch/pytorch#179291): a crash there is not this
    # test's subject, and a crash anywhere before this line still fails it.
    os._exit(0)  # pylint: disable=protected-access
