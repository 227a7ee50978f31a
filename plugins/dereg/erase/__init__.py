"""Erasure: the plan, its execution, the physical purge and the verification."""
