"""A benchmark's data, for benchmark plugins (``from harness import benchmark_data``).

:func:`source` (the copy a benchmark's ``path`` parameter names: the embedded copy, a local file or folder,
or ``hf:org/name[:config]`` on the hub), :func:`load_part` / :func:`read_rows` / :func:`find_file` /
:func:`hub_rows` (its rows, as :class:`Rows` that carry their ``sha256``), :func:`check_shipped` (refuse a
damaged embedded copy), :func:`select` and :func:`check_limit` (item limits), :func:`truncate_at_stop`. A benchmark's params arrive
checked (each value once, against the ranges its ``param(..., ge=)`` declares): it does not check them again.
The code lives in ``harness.evaluation.benchmark_data``; this module is its public face.
"""

from harness.evaluation.benchmark_data import (
    HUB_PREFIX,
    Rows,
    Source,
    check_limit,
    check_shipped,
    find_file,
    hub_rows,
    load_part,
    read_rows,
    select,
    source,
    truncate_at_stop,
)

__all__ = ["HUB_PREFIX", "Rows", "Source", "check_limit", "check_shipped", "find_file", "hub_rows", "load_part",
           "read_rows", "select", "source", "truncate_at_stop"]
