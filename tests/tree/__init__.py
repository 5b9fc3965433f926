"""Tree and multi-draft verification: tree shapes, greedy paths, the exact law of a tree step for each
scheme (i.i.d., without replacement, EAGLE's top-k rule), the chain as its special case, sampled
verification against those laws, and the broken verifiers each test must reject."""
