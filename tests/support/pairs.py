"""Tiny model pairs shared by the tests, built once per process."""

from __future__ import annotations

import functools

import torch

from reference_impl.models.tiny import tiny_pair


@functools.cache
def cached_pair(arch: str = "llama", relation: str = "partial", dtype: torch.dtype = torch.float64, **kwargs):
    return tiny_pair(arch, relation, seed=0, dtype=dtype, **kwargs)
