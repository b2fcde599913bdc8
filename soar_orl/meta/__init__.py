"""The outer loop of SOAR: promotion of the baseline student and the PQ archive."""
