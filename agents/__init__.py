"""Agents that learn skill compositions (search, SB3 baselines, gradient mixture).

This package is filled by the agents issue; the foundation only reserves its name so that
``pip install`` and imports are stable from the start.
"""
