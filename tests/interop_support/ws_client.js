// One WebSocket session with node's `ws` (found through NODE_PATH): the spec
// as JSON on stdin, the outcome as JSON on stdout.
const WebSocket = require("ws");
const { wsSession } = require("./ws_session.js");

const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));
wsSession(WebSocket, spec, (out) => {
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
});
