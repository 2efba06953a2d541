"""Experiment 3: coarse-to-fine planning efficiency in MiniGrid."""
