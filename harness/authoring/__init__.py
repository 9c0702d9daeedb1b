"""Tools for plugin authors: ``harness check-plugin`` and ``harness new`` scaffolds.

Owns the plugin checker (``checkplugin``: runs a plugin's hooks on the tiny model and reports contract
breaks) and the scaffolds (``scaffold``: a new method or benchmark package that passes its own tests).
May import: every lower layer (``core`` ... ``results``).
"""
