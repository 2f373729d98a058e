"""Video data: datasets, caches and the synthetic shapes world."""
