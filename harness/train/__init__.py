"""Training one run: resolving it (run), the engine's step loop, checkpoints and resume, processes, interrupts,
compute accounting, the built-in encoder's pretraining.
"""
