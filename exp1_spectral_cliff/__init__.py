"""Experiment 1: spectral cliff of learned controlled-Lorenz world models."""
