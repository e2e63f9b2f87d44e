"""Evaluation: inference over a split (whole, sliding, centre crop), the confusion-matrix metrics, and evaluating a
saved checkpoint (harness eval).
"""
