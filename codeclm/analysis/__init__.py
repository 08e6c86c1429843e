"""Measuring generated data: embeddings, diversity, distributions (for ``report`` and ``run``)."""
