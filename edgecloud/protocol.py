"""Record, config and metric keys shared by the ServerApp and the ClientApp."""

# Records inside a Message's RecordDict (Flower's strategies use these names).
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
QUANTIZATION = "quantization"

# Config keys sent from server to clients.
SERVER_ROUND = "server-round"  # injected by every Flower strategy
PROXIMAL_MU = "proximal-mu"  # injected by FedProx
REPORT_INITIAL_LOSS = "report-initial-loss"  # asked for by q-FedAvg

# Metric keys sent from clients to the server.
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
INITIAL_LOSS = "initial-loss"
TRAIN_SECONDS = "train-seconds"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
PARTITION_ID = "partition-id"
LABEL_HISTOGRAM = "label-histogram"

# Keys of the quantization ConfigRecord attached to quantized train replies.
QUANT_BITS = "bits"
QUANT_KEYS = "keys"
QUANT_SCALES = "scales"

# Node config keys (`flower-supernode --node-config`, injected in simulation).
NODE_PARTITION_ID = "partition-id"
NODE_NUM_PARTITIONS = "num-partitions"
NODE_DATA_DIR = "data-dir"
NODE_CAMERAS = "cameras"  # testbed tasks: this node's camera ids, e.g. "0,3"

# Split learning (strategies/split_learning.py <-> client_app.split_step).
MSG_SPLIT_STEP = "train.split_step"
SPLIT = "split"  # ConfigRecord: step control, public keys, the sealed frame
SPLIT_FRONT = "front"  # ArrayRecord: device-part weights (start and final messages)
FRONT_DIGEST = "front_digest"  # sealed SHA-256 of the returned device weights

# STIP secure inference (strategies/secure_inference.py <-> client_stip.stip_step).
MSG_STIP_STEP = "query.stip_step"
STIP = "stip"  # ConfigRecord: round, phase (server) / done (client)
STIP_LOGITS = "stip-logits"  # ArrayRecord: permuted logits of the last position
STIP_EMBEDS = "stip-embeds"  # ArrayRecord: permuted embeddings (tokens, hidden)
NODE_STIP_USER_BUNDLE = "stip-user-bundle"  # a node's own user bundle (optional)
NODE_STIP_PROMPT = "stip-prompt"  # a node's own prompt (optional)
