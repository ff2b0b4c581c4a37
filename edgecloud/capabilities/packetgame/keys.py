"""Wire keys of the PacketGame capability (coordinator ServerApp, edge ClientApps).

Training rides on Flower's FedAvg records (``arrays`` + ``config`` down, ``arrays`` +
``metrics`` with ``num-examples`` up, see ``workflow.keys``); only the message
type is its own, so that the FL capability's default ``train`` handler never
receives it. Analytics sends the predictor in ``arrays`` and reads ``metrics``.
"""

TRAIN_ACTION = "packetgame_train"  # @app.train(TRAIN_ACTION): fit on the feedback log
MSG_TRAIN = f"train.{TRAIN_ACTION}"
ANALYTICS_ACTION = "packetgame_analytics"  # @app.query(ANALYTICS_ACTION): run_online
MSG_ANALYTICS = f"query.{ANALYTICS_ACTION}"

# Train metrics, client -> server (besides num-examples / train-loss).
POSITIVE_RATE = "positive-rate"  # share of logged packets whose decoding was necessary
NUM_CAMERAS = "num-cameras"

# Analytics metrics, client -> server (num-examples = frames served).
FRAMES = "frames"
FRAMES_DECODED = "frames-decoded"
ACCURACY = "accuracy"  # share of frames served the decode-everything result
SPENT = "spent"  # calibrated decode cost (ms) actually spent
DECODE_ALL_COST = "decode-all-cost"  # what decoding every arrived packet would cost
SAVED = "saved"  # 1 - spent / decode-all-cost
DECISIONS = "decisions"  # packets the policy decided on
DECISION_SECONDS = "decision-seconds"
DECISIONS_PER_SECOND = "decisions-per-second"
LIVE_ROUNDS = "live-rounds"
NODES = "nodes"  # aggregated: edge servers that reported

# The trained predictor written into output-dir (packetgame.predictor reads it).
PREDICTOR_FILE = "packetgame-predictor.pt"
