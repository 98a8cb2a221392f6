// Starts the page. A file of its own, not an inline script, so the
// Content-Security-Policy can allow this origin's scripts and nothing else.
import init from "/timecho_web.js";

// The wasm module's start function renders the page into #app.
init({ module_or_path: "/timecho_web_bg.wasm" }).catch((err) => {
  const app = document.getElementById("app");
  app.textContent = "";
  const p = document.createElement("p");
  p.className = "fatal";
  p.setAttribute("role", "alert");
  p.textContent = "The page could not start: " + err;
  app.append(p);
});
