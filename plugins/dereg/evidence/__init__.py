"""Evidence: the compliance store, its hash-chained ledger, and signed certificates."""
