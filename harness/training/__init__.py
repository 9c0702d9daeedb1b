"""One cell's training: where rows come from, how a round is sampled, and the trainer.

Owns the trainer (``trainer``: ``TrainConfig``, ``Trainer``, checkpoints, saving models), the samplers
that build a round's rows (``samplers``), policy-gradient primitives (``pg``), discriminators and
density ratios (``divergence``), rewards (``rewards``: benchmark, Bradley-Terry, judge, reward
models), training data from datasets (``datasets``: TRL-shaped rows from the hub or local files) and
defaults that fit the model (``defaults``). Methods themselves are plugins (``plugins/methods``).
Also ``checkpoints`` (the trainer's checkpoint file), ``reference`` (the reference policy),
``distributed`` (one cell across N processes) and ``irl_reward`` (a saved IRL reward model).
May import: ``harness.core``, ``harness.models``, ``harness.engines``, ``harness.evaluation``.
"""
