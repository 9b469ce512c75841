"""Pruning of PyTorch models into the structures the compiler accelerates (torch and numpy only)."""
