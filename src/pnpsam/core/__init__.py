"""The algorithm on tensors: DDIM inversion, feature injection, PnP sampling, the pipeline.

Tensors in, tensors out: no file or network I/O here, and errors name config fields, not
command-line flags (the front ends add those).
"""
