"""Bias audits: scoring and selection rates, impact ratios, the four-fifths rule (`grader audit`)."""
