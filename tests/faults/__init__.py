"""Fault, chaos and hostile-input tests: each proves one promise of RELIABILITY.md."""
