"""STIP: three-party secure transformer inference by feature-space permutation.

No flwr import: the developer tool, the server runtime and the data owner's
operations are plain library code; ``capabilities/stip/`` carries them over
Flower. Bad model directories and bundles raise
:class:`edgecloud.stip.bundles.StipBundleError` (a ``ValueError``).
"""
