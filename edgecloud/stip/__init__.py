"""STIP: three-party secure transformer inference by feature-space permutation.

No flwr import: the developer tool, the server runtime and the data owner's
operations are plain library code; ``strategies/secure_inference.py`` carries
them over Flower.
"""
