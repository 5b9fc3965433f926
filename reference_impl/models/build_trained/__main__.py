"""``python -m reference_impl.models.build_trained --out DIR``: build the trained pair into DIR."""

from .pipeline import main

main()
