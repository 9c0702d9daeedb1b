"""Built-in training datasets (the seed papers' data), registered as the ``seed_datasets`` plugin."""
