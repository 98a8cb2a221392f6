// One WebSocket session as tests/interop.rs describes it. The same function
// drives node's `ws` (ws_client.js) and Chromium's own WebSocket (run through
// WebDriver), so both are checked against the same spec and outcome shape as
// the Python clients (see outcome.py).
function wsSession(WebSocketImpl, spec, done) {
  const out = {
    refused: null,
    protocol: null,
    received: [],
    close_code: null,
    close_reason: null,
    error: null,
  };
  let ws;
  let opened = false;
  let closing = false;
  let finished = false;
  // Text frames are one reply each; binary frames carry a byte stream.
  let replies = 0;
  const finish = (error) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (error) out.error = error;
    done(out);
  };
  const timer = setTimeout(() => {
    finish(`timed out after ${spec.timeout_ms} ms`);
    if (ws) ws.close();
  }, spec.timeout_ms);
  const toHex = (bytes) =>
    Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const fromHex = (hex) =>
    new Uint8Array((hex.match(/../g) || []).map((h) => parseInt(h, 16)));
  const close = () => {
    if (!closing) {
      closing = true;
      ws.close(1000);
    }
  };
  try {
    ws = new WebSocketImpl(spec.url, spec.protocols);
  } catch (e) {
    finish(String(e));
    return;
  }
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    opened = true;
    out.protocol = ws.protocol;
    for (const m of spec.send) ws.send(m.text !== undefined ? m.text : fromHex(m.hex));
    if (spec.close === "at_once") close();
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      out.received.push({ text: e.data });
      replies += 1;
    } else {
      const bytes = new Uint8Array(e.data);
      out.received.push({ hex: toHex(bytes) });
      replies += bytes.filter((b) => b === 10).length;
    }
    if (spec.close === "after_replies" && replies >= spec.replies) close();
  };
  ws.onerror = (e) => {
    // Browsers say nothing about why; node's ws says "Unexpected server response: 400".
    if (!opened) out.refused = { status: null, error: e.message || "error before open" };
  };
  ws.onclose = (e) => {
    out.close_code = e.code;
    out.close_reason = e.reason;
    finish();
  };
}

if (typeof module !== "undefined") module.exports = { wsSession };
