"""Record, config and metric names every capability shares (Flower's conventions).

Flower's strategies send ``arrays`` and ``config`` and read ``metrics`` with
``num-examples``; ``server-round`` is injected into every train/evaluate config.
Each capability's own wire keys live in ``capabilities/<name>/keys.py``.
"""

# Records inside a Message's RecordDict.
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

# Config key injected by every Flower strategy.
SERVER_ROUND = "server-round"

# Metric keys clients report.
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
TRAIN_SECONDS = "train-seconds"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
PARTITION_ID = "partition-id"
LABEL_HISTOGRAM = "label-histogram"
