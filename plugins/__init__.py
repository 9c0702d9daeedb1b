"""Built-in plugins of alignment-harness (import name ``alignment_harness_plugins``).

They register through the ``harness`` entry-point group, exactly as a third party's plugins do.
"""
