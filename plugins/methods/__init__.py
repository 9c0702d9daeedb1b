"""Built-in method plugins: one method family per file."""
