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

:class:`DataParallelMixin` is the estimators' side of this: the DDP wrapper,
the sharded training iterator, the logged loss of the global batch, and
the wrapper's release at the end of a fit.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

# DataParallelMixin is the estimators' building block, not a user-facing name.
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


class DataParallelMixin:
    """Data-parallel training for a skorch net whose script a launcher started.

    Outside a process group every method falls back to skorch's behaviour.
    The net's forward pass goes through :meth:`_data_parallel` when training,
    and its ``fit`` calls :meth:`_release_data_parallel` when it ends.
    """

    def _data_parallel(self) -> DistributedDataParallel | None:
        """The DDP wrapper of ``module_`` when training in a process group, else None."""
        group = process_group(self.device)
        if group is None:
            return None
        wrapped = self.__dict__.get("_ddp")
        if wrapped is None or wrapped.module is not self.module_:
            # Collective: every process reaches it at its first training step.
            on_gpu = torch.device(self.device).type == "cuda"
            wrapped = DistributedDataParallel(
                self.module_,
                device_ids=[torch.device(self.device).index or 0] if on_gpu else None,
            )
            self.__dict__["_ddp"] = wrapped
        return wrapped

    def get_iterator(self, dataset: Any, training: bool = False):
        group = process_group(self.device) if training else None
        if group is None:
            return super().get_iterator(dataset, training=training)
        if self.batch_size % group.world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch of {group.world_size} "
                "processes: make it a multiple of the number of processes."
            )
        kwargs = self.get_params_for("iterator_train")
        seed = self.random_state if isinstance(self.random_state, int) else 0
        sampler = EpochShardSampler(
            dataset,
            num_replicas=group.world_size,
            rank=group.rank,
            shuffle=kwargs.pop("shuffle", True),
            seed=seed,
            first_epoch=len(self.history),
        )
        kwargs["batch_size"] = kwargs.get("batch_size", self.batch_size) // group.world_size
        return self.iterator_train(dataset, sampler=sampler, **kwargs)

    def _global_batch_loss(self, step: dict) -> dict:
        """A training step's result with the loss of the global batch, not of this shard."""
        if self.__dict__.get("_ddp") is not None and dist.is_initialized():
            loss = step["loss"].detach().clone()
            dist.all_reduce(loss)
            step["loss"] = loss / dist.get_world_size()
        return step

    def _release_data_parallel(self) -> None:
        # The DDP wrapper lives for one fit. Its reducer holds the process
        # group and sits in reference cycles: left to the interpreter's
        # exit, it would be freed after the group and abort the process.
        if self.__dict__.pop("_ddp", None) is not None:
            gc.collect()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_ddp", None)  # bound to this run's process group
        return state
