"""Data-parallel training across processes, GPUs and nodes (PyTorch DDP, launched by torchrun).

The estimators train data-parallel when their script is started by
``torchrun`` (or any launcher that sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``, such as ``srun`` with those variables), with no change to the
script:

- :func:`process_group` joins the default process group (NCCL on GPUs, gloo
  on CPUs), or uses the one the script created itself;
- each process trains on its own shard of every global batch
  (:class:`EpochShardSampler`), so ``batch_size`` keeps meaning the global
  batch and the optimisation steps are those of one process with that batch;
- :class:`torch.nn.parallel.DistributedDataParallel` averages the gradients;
- validation, prediction and scoring run whole on every process, so every
  process keeps the same history and restores the same best weights;
- only rank 0 prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

__all__ = ["EpochShardSampler", "ProcessGroup", "print_on_rank_zero", "process_group"]


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in a data-parallel run.

    Parameters
    ----------
    rank : int
        This process's index among all processes.
    world_size : int
        How many processes train together.
    local_rank : int
        Its index on this machine (which GPU it takes).
    backend : str
        ``"nccl"`` or ``"gloo"``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str


def launched_distributed() -> bool:
    """Whether a launcher (torchrun, srun with torch's variables) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def process_group(device: str | torch.device | None = None) -> ProcessGroup | None:
    """The data-parallel group this process trains in, joining it if needed; None if none.

    A process group the script initialised itself is used as is. Otherwise one
    is created from the launcher's environment variables: NCCL for a CUDA
    ``device``, gloo for the CPU.
    """
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if not launched_distributed():
            return None
        uses_cuda = device is not None and torch.device(device).type == "cuda"
        if uses_cuda:
            # NCCL's collectives (and all_gather_object) run on the current device.
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if uses_cuda else "gloo")
    return ProcessGroup(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        backend=str(dist.get_backend()),
    )


def print_on_rank_zero(*args, **kwargs) -> None:
    """``print`` in the first process only (the sink of the estimators' epoch log)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(*args, **kwargs)


class EpochShardSampler(DistributedSampler):
    """This process's shard of a shuffled epoch, reshuffled at every pass.

    The epoch's permutation is the same in every process (seeded by ``seed``
    and the epoch), and process ``r`` takes every ``world_size``-th index
    from ``r``: batch ``k`` of all processes together is then batch ``k`` of
    the whole permutation, as one process would see it with the global batch.
    Unlike :class:`~torch.utils.data.DistributedSampler`, the epoch advances
    by itself each time the loader is iterated, since skorch iterates one
    loader for all epochs.

    Parameters
    ----------
    dataset : Dataset
        What is sampled.
    num_replicas : int
        The number of processes.
    rank : int
        This process's index.
    shuffle : bool, default=True
        Permute each epoch (in the same way in every process).
    seed : int, default=0
        Seed of the permutations, mixed with the epoch number.
    first_epoch : int, default=0
        The epoch the first iteration samples (a resumed fit continues the sequence).
    """

    def __init__(
        self,
        dataset,
        num_replicas: int,
        rank: int,
        shuffle: bool = True,
        seed: int = 0,
        first_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = first_epoch

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        self.epoch += 1
        return iter(indices)
