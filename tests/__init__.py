"""The suite's own tests, in folders by job (the map: README.md, "The house"); shared helpers in ``support``."""
