"""A function for two spawned ranks where rank 1 fails (tests/test_distributed.py); imports only torch's side."""

from harness.training import distributed


def rank_1_fails() -> None:
    if distributed.world().rank == 1:
        raise ValueError("boom on purpose")
    distributed.barrier(distributed.world())  # rank 0 waits for a rank that never comes
