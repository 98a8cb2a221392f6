"""One WebSocket session with the `websocket-client` library.

Reads frame by frame (`recv_frame`) rather than with `recv_data`, which
answers the server's Close with a second Close of its own after ours.
"""

import socket
import struct

import websocket
from websocket import ABNF
from outcome import Outcome, left, payload, read_spec


def main():
    spec = read_spec()
    out = Outcome()
    try:
        ws = websocket.create_connection(
            spec["url"], subprotocols=spec["protocols"] or None, timeout=left(spec)
        )
    except websocket.WebSocketBadStatusException as e:
        out["refused"] = {"status": e.status_code, "error": str(e)}
        return out
    out["protocol"] = ws.getsubprotocol()
    for message in spec["send"]:
        data = payload(message)
        opcode = ABNF.OPCODE_TEXT if isinstance(data, str) else ABNF.OPCODE_BINARY
        ws.send(data, opcode)
    closing = spec["close"] == "at_once"
    if closing:
        ws.send_close(1000)
    try:
        while True:
            ws.settimeout(left(spec))
            frame = ws.recv_frame()
            if frame.opcode == ABNF.OPCODE_TEXT:
                out.record(frame.data.decode("utf-8"))
            elif frame.opcode == ABNF.OPCODE_BINARY:
                out.record(frame.data)
            elif frame.opcode == ABNF.OPCODE_PING:
                ws.pong(frame.data)
            elif frame.opcode == ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    out["close_code"] = struct.unpack("!H", frame.data[:2])[0]
                    out["close_reason"] = frame.data[2:].decode("utf-8")
                if not closing:
                    ws.send_close(out["close_code"] or 1000)
                break
            if (
                spec["close"] == "after_replies"
                and not closing
                and out.replies >= spec["replies"]
            ):
                closing = True
                ws.send_close(1000)
    except (websocket.WebSocketTimeoutException, socket.timeout) as e:
        out["error"] = f"timed out: {e}"
    except websocket.WebSocketConnectionClosedException as e:
        out["error"] = f"connection closed without a close frame: {e}"
    ws.shutdown()
    return out


if __name__ == "__main__":
    main().print()
