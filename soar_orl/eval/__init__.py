"""Evaluation maths: pass@k, Vendi diversity, and the fail@k hard-set split."""
