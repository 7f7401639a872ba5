"""Tests written to kill mutants (docs/mutants.md) that fit no other test module."""
