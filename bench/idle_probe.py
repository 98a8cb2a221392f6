#!/usr/bin/env python3
"""Server memory per idle connection, measured from outside on a fresh server.

    bench/idle_probe.py tcp -n 10000                     # idle TCP connections that never spoke
    bench/idle_probe.py tcp -n 300 --lines 1             # idle after one line
    bench/idle_probe.py tcp -n 300 --lines 5000          # idle after 5,000 pipelined lines
    bench/idle_probe.py ws -n 300 --lines 1              # /ws session idle after one short message
    bench/idle_probe.py ws -n 300 --lines 1 --size 61440 # ... after one 60 KB message

Each run starts its own `timecho serve` (TIMECHO_BIN, default target/release/timecho) on
port 0 and reads the port from its banner, so no earlier traffic has grown the server's
heap. It reads the server's VmRSS (/proc/PID/status), opens N connections (for `ws`, N
bridged sessions: the server relays each to its own TCP listener, so both sides are in
the one process), sends each one its burst (LINES messages of SIZE bytes in one write,
then reads every reply), holds them all open and quiet for --hold seconds, reads VmRSS
again and prints the growth divided by N. The server is stopped at the end.

Only the Python standard library is used: a plain socket client, so that nothing of
timecho's own code is on the measuring side.
"""

import argparse
import base64
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

READY_LINE = "Press Ctrl-C to stop."


def rss_kib(pid, field="VmRSS"):
    """A resident-memory figure of /proc/PID/status: VmRSS (all resident pages,
    the binary's code included) or RssAnon (the heap, stacks and mappings of
    the process's own data: what connections cost)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def start_server(binary, kind, extra):
    # Every connection comes from this one address, so its share is the whole
    # room: the default share (a quarter) would refuse most of them, and the
    # figure would be for the few that stayed.
    # (Builds from before the per-client caps have no such flag.)
    args = [binary, "serve", "--tcp", "127.0.0.1:0", "--max-connections", "20000"]
    usage = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    if "--max-connections-per-client" in usage:
        args += ["--max-connections-per-client", "20000"]
    if kind == "ws":
        args += ["--http", "127.0.0.1:0", "--max-websockets", "20000"]
    else:
        args += ["--no-http"]
    args += extra
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    listening = {}
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line == READY_LINE:
            break
        words = line.split()
        if line.startswith("  ") and len(words) >= 2:
            listening.setdefault(words[0], words[1])
    else:
        raise RuntimeError(f"{args} exited before listening")
    return proc, listening


def still_open(sock):
    """True when the server has neither closed the connection nor said anything
    (a refusal is a line and a close) since the burst was read."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def read_lines(sock, count):
    """Reads until `count` newlines have arrived (TCP replies)."""
    seen = 0
    while seen < count:
        data = sock.recv(1 << 16)
        if not data:
            raise RuntimeError("server closed the connection")
        seen += data.count(b"\n")


def ws_open(target):
    sock = socket.create_connection(target)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise RuntimeError("closed during the handshake")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head.splitlines()[0]!r}")
    return sock, head.split(b"\r\n\r\n", 1)[1]


def ws_frame(payload):
    """A masked text frame (a client's frames are masked, RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
         ).to_bytes(n, "big")
    return head + mask + masked


def ws_read_texts(sock, pending, count):
    """Reads frames until `count` text frames have arrived; returns leftover bytes."""
    buf = bytearray(pending)
    seen = 0
    while seen < count:
        while True:
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                at = 2
                if n == 126 and len(buf) >= 4:
                    n = struct.unpack("!H", buf[2:4])[0]
                    at = 4
                elif n == 127 and len(buf) >= 10:
                    n = struct.unpack("!Q", buf[2:10])[0]
                    at = 10
                elif n >= 126:
                    at = None
                if at is not None and len(buf) >= at + n:
                    opcode = buf[0] & 0x0F
                    if opcode == 0x8:
                        raise RuntimeError(f"closed by the server: {bytes(buf[at:at + n])!r}")
                    if opcode == 0x1:
                        seen += 1
                    del buf[:at + n]
                    if seen >= count:
                        return bytes(buf)
                    continue
            break
        data = sock.recv(1 << 16)
        if not data:
            raise RuntimeError("server closed the connection")
        buf += data
    return bytes(buf)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["tcp", "ws"])
    p.add_argument("-n", "--connections", type=int, default=1000)
    p.add_argument("--lines", type=int, default=0,
                   help="messages each connection sends, in one write, before it idles"
                        " (ws: at least 1, so that the session's bridge is up)")
    p.add_argument("--size", type=int, default=16, help="bytes per message")
    p.add_argument("--hold", type=float, default=1.0, help="seconds held idle before reading")
    p.add_argument("--warmup", type=int, default=1,
                   help="connections that send the same burst and close before the first"
                        " reading, so that the code the burst runs is resident in both readings"
                        " (0: none, the first connections then also pay for faulting it in)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--label", default="")
    p.epilog = "Arguments after -- go to `timecho serve`."
    argv = sys.argv[1:]
    server_args = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    a.server_args = server_args
    if a.kind == "ws" and a.lines < 1:
        a.lines = 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.environ.get("TIMECHO_BIN", os.path.join(root, "target/release/timecho"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    proc, listening = start_server(binary, a.kind, a.server_args)
    try:
        target = addr(listening["http" if a.kind == "ws" else "tcp"])
        message = b"x" * a.size

        def open_one():
            if a.kind == "tcp":
                s = socket.create_connection(target)
                if a.lines:
                    s.sendall((message + b"\n") * a.lines)
                    read_lines(s, a.lines)
            else:
                s, pending = ws_open(target)
                s.sendall(ws_frame(message) * a.lines)
                ws_read_texts(s, pending, a.lines)
            return s

        for _ in range(a.warmup):
            open_one().close()
        time.sleep(a.hold if a.warmup else 0.2)
        before = rss_kib(proc.pid)
        anon_before = rss_kib(proc.pid, "RssAnon")
        socks = [open_one() for _ in range(a.connections)]
        time.sleep(a.hold)
        after = rss_kib(proc.pid)
        anon_after = rss_kib(proc.pid, "RssAnon")
        dropped = sum(not still_open(s) for s in socks)
        if dropped:
            raise RuntimeError(f"the server closed {dropped} of {a.connections} connections:"
                               " the figure would not be theirs")
        per = (after - before) / a.connections
        result = {"label": a.label, "kind": a.kind, "connections": a.connections,
                  "lines": a.lines, "size": a.size, "hold_s": a.hold, "warmup": a.warmup,
                  "rss_before_kib": before, "rss_after_kib": after,
                  "kib_per_connection": round(per, 2),
                  "anon_kib_per_connection": round((anon_after - anon_before) / a.connections, 2)}
        if a.json:
            print(json.dumps(result))
        else:
            burst = f"after {a.lines} x {a.size} B" if a.lines else "never spoke"
            print(f"{a.label + ': ' if a.label else ''}{a.kind}, {a.connections} idle, {burst}:"
                  f" VmRSS {before:,} -> {after:,} KiB, {per:.1f} KiB per connection"
                  f" ({result['anon_kib_per_connection']:.1f} KiB of it RssAnon)")
        for s in socks:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
