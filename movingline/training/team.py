"""What training needs from the processes it runs in, and the one-process answer.

A training run asks its team five things: the ``tf.distribute`` strategy to build the model
under, this process's ``rank`` among ``count`` workers (the chief, rank 0, alone writes
outputs and checkpoints), which rows of each global batch it reads, the chief's checkpoint
bytes, and when to stop. ``Alone`` answers them for one process. The train stage hands in
the cluster wing's team instead when it runs as one worker of several (movingline/cluster/);
nothing here needs to know how that one works.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager, Protocol

from movingline import runtime

if TYPE_CHECKING:
    import tensorflow as tf


class Team(Protocol):
    strategy: tf.distribute.Strategy
    rank: int
    count: int

    @property
    def is_chief(self) -> bool: ...

    def rows(self, start: int, stop: int) -> tuple[int, int]:
        """The rows of the global batch [start, stop) that this process reads."""

    def from_chief(self, payload: bytes) -> bytes:
        """The chief's ``payload`` on every worker (what the others pass is ignored)."""

    def stopping(self, signalled: bool, voted: bool) -> bool:
        """Whether to stop after this step: ``signalled`` here, ``voted`` by any worker in the step."""

    def guard(self, step: int) -> ContextManager[None]:
        """Wraps each step, to turn a lost peer into one clear error."""


class Alone:
    """One process: TensorFlow's default strategy, every row, its own signal."""

    rank, count, is_chief = 0, 1, True

    def __init__(self) -> None:
        self.strategy = runtime.tf.distribute.get_strategy()

    def rows(self, start: int, stop: int) -> tuple[int, int]:
        return start, stop

    def from_chief(self, payload: bytes) -> bytes:
        return payload

    def stopping(self, signalled: bool, voted: bool) -> bool:
        return signalled

    def guard(self, step: int) -> ContextManager[None]:
        return contextlib.nullcontext()
