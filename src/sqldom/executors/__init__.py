"""Executors run steps. ``python`` runs document transforms in-process.

Executors never touch the database or build/: they get resolved inputs and return
results (facts, output bytes, reads, problems). Container executors arrive with
the executors issue and are imported lazily.
"""
