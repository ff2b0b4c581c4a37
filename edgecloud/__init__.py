"""edgecloud: device-edge-cloud collaborative learning and inference on Flower."""

__version__ = "0.1.0"
