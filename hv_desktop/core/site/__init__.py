"""Fitting a model to a lab: zero-label calibration (magnification, colours), adaptation from reviewed cells, when
unflagging is safe, site-model files and history."""
