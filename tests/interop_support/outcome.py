"""What one scripted WebSocket session saw, printed as JSON for tests/interop.rs.

The spec (JSON on stdin) and the outcome have the same shape for every client,
so the Rust side checks all of them with one set of assertions.
"""

import json
import sys
import time


def read_spec():
    """The session to run: url, protocols, send, close, replies, timeout_ms."""
    spec = json.load(sys.stdin)
    spec["deadline"] = time.monotonic() + spec["timeout_ms"] / 1000
    return spec


def payload(message):
    """A message of the spec as the client sends it: str for text, bytes for binary."""
    return message["text"] if "text" in message else bytes.fromhex(message["hex"])


def left(spec):
    """Seconds until the session's deadline (at least a little, for a last read)."""
    return max(spec["deadline"] - time.monotonic(), 0.01)


class Outcome:
    def __init__(self):
        self.fields = {
            "refused": None,
            "protocol": None,
            "received": [],
            "close_code": None,
            "close_reason": None,
            "error": None,
        }
        # Text frames are one reply each; binary frames carry a byte stream.
        self.replies = 0

    def __getitem__(self, name):
        return self.fields[name]

    def __setitem__(self, name, value):
        assert name in self.fields, name
        self.fields[name] = value

    def record(self, data):
        if isinstance(data, str):
            self.fields["received"].append({"text": data})
            self.replies += 1
        else:
            self.fields["received"].append({"hex": bytes(data).hex()})
            self.replies += bytes(data).count(b"\n")

    def print(self):
        print(json.dumps(self.fields))
