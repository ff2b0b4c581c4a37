"""The one exception every bitstream parser raises on bad or missing data."""

from __future__ import annotations


class BitstreamError(ValueError):
    """Truncated, corrupt or unsupported bitstream data (never an ``IndexError``).

    The message is one line: what was being read and at which byte offset.
    """
