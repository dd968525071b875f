"""Built-in attention variants. Each module registers its variants with ``harness.register_variant``."""
