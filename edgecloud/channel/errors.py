"""The one error type the channel raises for anything it rejects."""

from edgecloud.exceptions import EdgecloudError


class ChannelError(EdgecloudError):
    """A frame was rejected (tampered, truncated, replayed, reordered, wrong key/shape).

    Raised before anything is parsed into tensors; the channel's counters are
    unchanged, so the receiver's state is exactly as before the frame arrived.
    """
