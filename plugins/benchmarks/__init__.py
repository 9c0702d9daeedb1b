"""Built-in benchmarks, one module per benchmark, each a plugin registered through an entry point."""
