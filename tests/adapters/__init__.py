"""In-process decoders written elsewhere, behind the protocol: Hugging Face's adapters and the minimal example."""
