"""Check 1, exactness: greedy speculative output equals the target's own greedy output, token for token.

Property tests over prompts, gammas, lengths and EOS on four architectures (float64, strict), the
near-tie judge for lower precision, every path through a step, long contexts and the hybrid pair,
and batch invariance of ``generate_batch`` with the mutants it must reject.
"""
