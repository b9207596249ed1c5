"""Experiments: every route run on one task and model, compared side by side, and the winner shipped."""
