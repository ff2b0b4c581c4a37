"""Wire keys of the split-learning protocol (both sides and the tests use these).

Over Flower messages (``transport = "messages"``) one message is one step: its
``control`` ConfigRecord steers the step, a sealed channel frame (``frame``) carries
every tensor, and the device weights travel in the ``front`` ArrayRecord at the
start and end of a round. Over a streamed session (``"stream"``) one Flower message
per round (``MSG_SESSION``) carries the session ticket in ``control``; every step
then travels on the stream as an envelope of sealed frames: the same control values
(a control frame), the tensors (a tensor frame) and, at the start and the end, the
device weights (a front frame); the Flower reply reports how the session ended.
"""

STEP_ACTION = "split_step"  # @app.train(STEP_ACTION)
MSG_STEP = f"train.{STEP_ACTION}"
SESSION_ACTION = "split_session"  # @app.train(SESSION_ACTION)
MSG_SESSION = f"train.{SESSION_ACTION}"

# Records of a split message / reply.
CONTROL = "split"  # ConfigRecord: step control, public keys, the sealed frame
FRONT = "front"  # ArrayRecord: device-part weights (start and final messages)

# Control keys, server -> client.
MODE = "mode"
SERVER_ROUND = "server-round"
EXCHANGE = "exchange"
RUN_ID = "run-id"
TRAIN_ID = "train-id"
CODEC = "codec"
START = "start"  # first message of the client's round: keys, weights, num-steps
INFER = "infer"  # split inference with the trained model (after the last round)
FINAL = "final"  # last step: reply the trained device weights
WANT_STEP = "want-step"  # send the activations of this step
GRAD_STEP = "grad-step"  # the frame's gradient belongs to this step
HEAD_STEP = "head-step"  # U-shaped: run the head on the middle's output of this step
ENCRYPTED = "encrypted"  # session message: seal frames with the session keys
SERVER_PUB = "server-pub"  # X25519 public key (start message, encryption on)
FRAME = "frame"  # the sealed frame (both directions)

# Control keys, client -> server.
CLIENT_PUB = "client-pub"
NUM_STEPS = "num-steps"
LAST = "last"  # stream: this is my last message of the session
METRICS = "metrics"  # stream: the final reply's metrics (num-examples, ...)

# Tensor names inside sealed frames.
ACTIVATIONS = "activations"
LABELS = "labels"
GRAD = "grad"
MIDDLE = "middle"
GRAD_MIDDLE = "grad-middle"
PREDICTIONS = "predictions"
CORRECT = "correct"
COUNT = "count"
FRONT_DIGEST = "front-digest"  # SHA-256 of the returned device weights
BATCH_SIZES = (
    "batch-sizes"  # local-loss: rows of each batch in the stacked smashed data
)
