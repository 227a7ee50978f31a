"""Inventory: what tables, columns, keys and row counts a source system holds."""
