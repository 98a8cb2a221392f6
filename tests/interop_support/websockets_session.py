"""One WebSocket session with the `websockets` library (its sync client)."""

from outcome import Outcome, left, payload, read_spec
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


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
    try:
        for message in spec["send"]:
            ws.send(payload(message))
        if spec["close"] == "after_replies":
            while out.replies < spec["replies"]:
                out.record(ws.recv(timeout=left(spec)))
        if spec["close"] != "server_closes":
            # Sends Close(1000) and waits for the server's; frames that arrive
            # meanwhile stay queued for recv() below.
            ws.close(1000)
        while True:
            out.record(ws.recv(timeout=left(spec)))
    except ConnectionClosed:
        pass
    except TimeoutError as e:
        out["error"] = f"timed out: {e}"
    out["close_code"] = ws.close_code
    out["close_reason"] = ws.close_reason
    ws.close()
    return out


if __name__ == "__main__":
    main().print()
