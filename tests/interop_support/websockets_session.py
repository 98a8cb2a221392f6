"""One WebSocket session with the `websockets` library (its sync client).

Messages are read on their own thread, as an application would: `close()`
waits for the server's Close, which arrives after the replies still owed, and
the client stops reading the socket while more than a few messages wait
unread.
"""

import threading

from outcome import Outcome, left, payload, read_spec
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def receive(ws, spec, out, replies_in):
    try:
        while True:
            out.record(ws.recv(timeout=left(spec)))
            if out.replies >= spec["replies"]:
                replies_in.set()
    except ConnectionClosed:
        pass
    except TimeoutError as e:
        out["error"] = f"timed out: {e}"
    replies_in.set()


def main():
    spec = read_spec()
    out = Outcome()
    try:
        ws = connect(
            spec["url"],
            subprotocols=spec["protocols"] or None,
            open_timeout=left(spec),
            close_timeout=left(spec),
        )
    except InvalidStatus as e:
        out["refused"] = {"status": e.response.status_code, "error": str(e)}
        return out
    out["protocol"] = ws.subprotocol
    replies_in = threading.Event()
    receiver = threading.Thread(target=receive, args=(ws, spec, out, replies_in))
    receiver.start()
    try:
        for message in spec["send"]:
            ws.send(payload(message))
        if spec["close"] == "after_replies":
            replies_in.wait(left(spec))
        if spec["close"] != "server_closes":
            ws.close(1000)
    except ConnectionClosed:
        pass
    receiver.join(left(spec))
    out["close_code"] = ws.close_code
    out["close_reason"] = ws.close_reason
    ws.close()
    return out


if __name__ == "__main__":
    main().print()
