"""Pixels: decoding any image file, the one crop and normalisation training shares, finding white cells in a field, the
preview."""
