"""Logger plugins on the run-event hook (TensorBoard, Weights & Biases).
"""
