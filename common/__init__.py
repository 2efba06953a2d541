"""Shared plumbing of the HELM experiments: configs/CLI, runs and results I/O, Jacobians, plots."""
