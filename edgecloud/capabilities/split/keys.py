"""Wire keys of the split-learning protocol (both sides and the tests use these).

One message type; its ``control`` ConfigRecord steers the step, a sealed channel
frame (``frame``) carries every tensor, and the device weights travel in the
``front`` ArrayRecord at the start and end of a round.
"""

STEP_ACTION = "split_step"  # @app.train(STEP_ACTION)
MSG_STEP = f"train.{STEP_ACTION}"

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
SERVER_PUB = "server-pub"  # X25519 public key (start message, encryption on)
FRAME = "frame"  # the sealed frame (both directions)

# Control keys, client -> server.
CLIENT_PUB = "client-pub"
NUM_STEPS = "num-steps"

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
