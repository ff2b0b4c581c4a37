"""Echo the received arrays back: one message each way per round trip."""

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query("echo")
def echo(msg: Message, context: Context) -> Message:
    """Reply with the same records (same payload size up and down)."""
    return Message(RecordDict(dict(msg.content.items())), reply_to=msg)
