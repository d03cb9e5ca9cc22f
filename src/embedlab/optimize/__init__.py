"""Shrinking a model (``embedlab shrink``): quantized ONNX variants, compact indexes and
distilled students, each built as a loadable artefact and measured against the original
through the eval core and :mod:`embedlab.select` (one analysis, not a second one)."""
