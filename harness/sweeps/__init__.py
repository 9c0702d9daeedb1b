"""Running a suite's cells and recording them: the sweep loop, executors, the store.

The sweep loop (``sweep``), where cells run (``executors``: the interface and the worker side;
``local_executor``, ``ray_executor``, the fork server's ``forkserver_guard``, a reused worker's
``process_state``), the SQLite store (``store``, ``store_schema``, ``owners``) and ``harness run`` /
``harness eval`` recorded as one-cell sweeps (``single_runs``).
May import: ``suite``, ``cell`` and every lower layer (``core``, ``models``, ``engines``, ``evaluation``,
``training``).
"""
