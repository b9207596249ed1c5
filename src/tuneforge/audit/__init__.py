"""Bias audit: per-group scores, counterfactual swaps, a gate for CI."""
