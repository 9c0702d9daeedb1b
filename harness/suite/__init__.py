"""The suite format: a TOML file that expands into sweep cells, validated as a whole before any training.

Reading the file and ``--set`` (``parse``), validating every key into a plan (``plan``), expanding the
plan into cells (``expand``: ``load_suite``, ``Suite``, ``SweepCell``), the checks run once before any
cell (``checks``) and the format's JSON Schema for editors (``schema``).
May import: ``cell`` and every lower layer (``core``, ``models``, ``engines``, ``evaluation``, ``training``).
"""
