"""From records to what a reader sees: collecting results, statistics, tables (markdown, LaTeX, CSV), plots and
pictures of predictions.
"""
