"""A benchmark's data, for benchmark plugins (``from harness import benchmark_data``).

:func:`source` (the copy a benchmark's ``path`` parameter names: the embedded copy, a local file or folder,
or ``hf:org/name[:config]`` on the hub), :func:`load_part` / :func:`read_rows` / :func:`find_file` /
:func:`hub_rows` (its rows, as :class:`Rows` that carry their ``sha256``), :func:`check_shipped` (refuse a
damaged embedded copy), :func:`select` and :func:`check_limit` (item limits), :func:`check_params` (declared bounds of params built
in code), :func:`truncate_at_stop`.
The code lives in ``harness.evaluation.benchmark_data``; this module is its public face.
"""

from harness.evaluation.benchmark_data import (
    HUB_PREFIX,
    Rows,
    Source,
    check_limit,
    check_params,
    check_shipped,
    find_file,
    hub_rows,
    load_part,
    read_rows,
    select,
    source,
    truncate_at_stop,
)

__all__ = ["HUB_PREFIX", "Rows", "Source", "check_limit", "check_params", "check_shipped", "find_file", "hub_rows", "load_part",
           "read_rows", "select", "source", "truncate_at_stop"]
