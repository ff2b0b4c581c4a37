"""Wire keys of the STIP protocol (ServerApp: model server; ClientApps: data owners)."""

STEP_ACTION = "stip_step"  # @app.query(STEP_ACTION): one exchange per message
MSG_STEP = f"query.{STEP_ACTION}"
SESSION_ACTION = "stip_session"  # @app.query(SESSION_ACTION): a streamed generation
MSG_SESSION = f"query.{SESSION_ACTION}"

# Records of a STIP message / reply.
CONTROL = "stip"  # ConfigRecord: round and phase (server) / done (client)
LOGITS = "stip-logits"  # ArrayRecord: permuted logits of the last position
EMBEDS = "stip-embeds"  # ArrayRecord: permuted embeddings (tokens, hidden)

# Control keys.
ROUND = "round"  # server -> client: 1 for the prompt, then one per token
PHASE = "phase"  # server -> client: PHASE_START or PHASE_CONTINUE
PHASE_START = "start"
PHASE_CONTINUE = "continue"
DONE = "done"  # client -> server: generation (or classification) finished
RUN_ID = "run-id"  # session message: bound into the stream's frames
GENERATED = "generated"  # session reply: tokens the client generated

# Array names inside the records.
LOGITS_ARRAY = "logits"
EMBEDS_ARRAY = "embeds"
