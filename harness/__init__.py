"""Benchmark harness for semi-supervised semantic segmentation.

The core (this package) owns data, protocols, training budget and evaluation; methods are plugins
(see ``harness.hookspecs``) that only define what happens inside one training step.
"""

__version__ = "0.1.0"
