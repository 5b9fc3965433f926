"""The reference implementation's internals: table and calibrated models, the batched cache, auto-gamma, bad input."""
