"""Experiment 2: funnel heatmap of a mollified rugged 2-D energy."""
