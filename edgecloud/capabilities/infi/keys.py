"""Wire keys of the InFi capability (coordinator ServerApp, camera-node ClientApps).

Training rides on Flower's FedAvg records (``arrays`` + ``config`` down, ``arrays``
+ ``metrics`` with ``num-examples`` up, see ``workflow.keys``) under its own
message types, so that the FL capability's default handlers never receive them.
In local mode ``config`` says so (``OWN_FILTER``) and the node keeps its filter in
its ``context.state`` instead of sending it.
"""

TRAIN_ACTION = "infi_train"  # @app.train(TRAIN_ACTION): fit_skip on the training part
MSG_TRAIN = f"train.{TRAIN_ACTION}"
EVALUATE_ACTION = "infi_evaluate"  # @app.evaluate(EVALUATE_ACTION): threshold + test
MSG_EVALUATE = f"evaluate.{EVALUATE_ACTION}"

# Config, server -> client (besides server-round).
OWN_FILTER = "own-filter"  # bool: local mode, ignore arrays, use the node's own
SESSION = "session"  # str: one serve() call; an own filter of another is stale

# Train metrics, client -> server (besides num-examples / train-loss / seconds).
TRAIN_REDUNDANT_SHARE = "train-redundant-share"  # r_N of the training part

# Evaluation metrics, client -> server (num-examples = test inputs).
FILTER_RATE = "filter-rate"  # share of test inputs skipped
ACCURACY = "accuracy"  # inference accuracy vs running the black box on everything
OPTIMUM_FILTER_RATE = "optimum-filter-rate"  # min(1, 1 - target + r_N)
REDUNDANT_SHARE = "redundant-share"  # r_N: share of truly redundant test inputs
VALIDATION_FILTER_RATE = "validation-filter-rate"  # at the chosen threshold
VALIDATION_ACCURACY = "validation-accuracy"
NUM_CAMERAS = "num-cameras"
# What every evaluation reply must hold (num-examples and partition-id besides).
EVALUATION_KEYS = (
    FILTER_RATE,
    ACCURACY,
    OPTIMUM_FILTER_RATE,
    REDUNDANT_SHARE,
    VALIDATION_FILTER_RATE,
    VALIDATION_ACCURACY,
)
NODES = "nodes"  # summary: nodes that reported
PER_NODE = "per-node"  # summary: partition-id -> that node's report

# Node state: the local-mode filter and the session it belongs to.
STATE_FILTER = "infi-filter"
STATE_SESSION = "infi-session"

# The federated filter written into output-dir.
FILTER_FILE = "infi-filter.pt"
