"""Wire keys of the FL capability beyond Flower's own (``workflow.keys``).

Flower's strategies send ``arrays`` + ``config`` with ``server-round`` and read
``metrics`` with ``num-examples``; these are the extra keys edgecloud's strategies,
wrappers and handlers agree on.
"""

# Train-config keys, server -> client.
PROXIMAL_MU = "proximal-mu"  # injected by Flower's FedProx
REPORT_INITIAL_LOSS = "report-initial-loss"  # asked for by q-FedAvg
UPDATE_QUANTIZATION_BITS = "update-quantization-bits"  # asked for by QuantizedUpdates

# Train-metric keys, client -> server.
INITIAL_LOSS = "initial-loss"  # loss of the received model before any local step

# ConfigRecord attached to quantized train replies, and its keys.
QUANTIZATION = "quantization"
QUANT_BITS = "bits"
QUANT_KEYS = "keys"
QUANT_SCALES = "scales"

# Aggregated train metrics added by QuantizedUpdates (summed over the round).
QUANTIZED_BYTES = "quantized-update-bytes"
FULL_PRECISION_BYTES = "full-precision-update-bytes"
