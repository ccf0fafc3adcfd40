"""pdmlens."""
