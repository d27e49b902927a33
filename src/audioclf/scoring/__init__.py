"""Scoring a saved model on a labelled manifest: ``manifest`` (held-out rows only, reports), ``segments``
(rows with time ranges, as segments of their recordings)."""
