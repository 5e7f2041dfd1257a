"""The drill lab's implementation; run it through tests/lab/lab (see README.md)."""
