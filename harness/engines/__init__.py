"""Generation engines behind one interface (see :mod:`harness.engines.base`)."""
