"use strict";
// The page talks to the same API as curl: GET /v1/model, POST /v1/predict (and search.js: GET /v1/index,
// POST /v1/search). No libraries, no network beyond this server.
const $ = (id) => document.getElementById(id);
const COLOURS = ["#0a63c9", "#e8710a", "#1e8e3e", "#d93025", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368", "#e52592", "#7cb342"];
let labels = [];

function headers() {
  const token = sessionStorage.getItem("audioclf-token") || $("token").value;
  return token ? { Authorization: "Bearer " + token } : {};
}

function colour(label) {
  if (label === "unknown") return "#9aa0a6";
  const i = labels.indexOf(label);
  return COLOURS[(i < 0 ? labels.length : i) % COLOURS.length];
}

async function loadModel() {
  const response = await fetch("/v1/model", { headers: headers() });
  if (response.status === 401) {
    $("token-row").hidden = false;
    $("model").textContent = "this server needs a token: enter it below";
    return;
  }
  const model = await response.json();
  const hasModel = response.ok;
  document.querySelectorAll(".predict-part").forEach((part) => { part.hidden = !hasModel; });
  if (!hasModel) {  // a server started with only an index: the page is its search box
    $("model").textContent = "no model loaded: this server searches an index";
    return;
  }
  labels = model.labels;
  const metrics = Object.entries(model.metrics || {})
    .filter(([, v]) => typeof v === "number")
    .slice(0, 3)
    .map(([k, v]) => `${k.replace(/_/g, " ")} ${v.toFixed(3)}`)
    .join(", ");
  $("model").textContent = `${model.labels.length} labels (${model.labels.join(", ")}) · ${model.encoder}` +
    (metrics ? ` · ${metrics}` : "");
}

function query() {
  const params = new URLSearchParams({ top_k: $("top-k").value || "3" });
  if ($("segments").checked) params.set("segments", "true");
  if ($("min-confidence").value) params.set("min_confidence", $("min-confidence").value);
  if ($("window").value) {
    params.set("window", $("window").value);
    params.set("hop", String(Number($("window").value) / 4));
  }
  return params.toString();
}

async function send(body, what) {
  $("status").textContent = `labelling ${what}…`;
  const init = { method: "POST", headers: headers(), body };
  if (typeof body === "string") init.headers["Content-Type"] = "application/json";
  try {
    const response = await fetch("/v1/predict?" + query(), init);
    const data = await response.json();
    if (response.status === 401) $("token-row").hidden = false;
    $("status").textContent = response.ok ? `done: ${what}` : `error ${response.status}: ${data.error}`;
    (data.predictions || []).forEach(show);
  } catch (err) {
    $("status").textContent = "the server did not answer: " + err;
  }
}

function sendFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  send(form, files.length === 1 ? files[0].name : `${files.length} files`);
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(p) {
  const card = el("article", "card");
  card.setAttribute("data-source", p.source);
  card.append(el("h3", "", p.source));
  if (p.error) {
    card.append(el("p", "error", p.error));
    $("results").prepend(card);
    return;
  }
  const head = el("p", "", "");
  head.append(el("span", "label", p.label || "(no label)"));
  const why = p.label === "unknown" ? ` — ${p.unknown_reason}; best guess ${p.best_guess}` : ` ${(100 * p.probability).toFixed(1)} %`;
  head.append(document.createTextNode(why));
  card.append(head);
  for (const t of p.top) {
    const bar = el("div", "bar");
    bar.append(el("span", "", t.label));
    const track = el("div", "");
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(1, 100 * t.probability)}%`;
    fill.style.background = colour(t.label);
    track.append(fill);
    bar.append(track, el("span", "", t.probability.toFixed(3)));
    card.append(bar);
  }
  if (p.segments && p.segments.length) card.append(...strip(p.segments));
  if (p.transcript) card.append(el("p", "transcript", `“${p.transcript}” (${p.language})`));
  $("results").prepend(card);
}

function strip(segments) {
  const end = Math.max(...segments.map((s) => s.end_s));
  const bar = el("div", "strip");
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", segments.map((s) => `${s.label} ${s.start_s}–${s.end_s} s`).join(", "));
  for (const s of segments) {
    const span = el("span", "");
    span.style.left = `${(100 * s.start_s) / end}%`;
    span.style.width = `${(100 * (s.end_s - s.start_s)) / end}%`;
    span.style.background = colour(s.label);
    span.title = `${s.label}: ${s.start_s}–${s.end_s} s (${s.confidence.toFixed(2)})`;
    bar.append(span);
  }
  const legend = el("div", "legend");
  for (const label of [...new Set(segments.map((s) => s.label))]) {
    const item = el("span", "", "");
    const swatch = el("i", "");
    swatch.style.background = colour(label);
    item.append(swatch, document.createTextNode(label));
    legend.append(item);
  }
  legend.append(el("span", "", `0–${end.toFixed(1)} s`));
  return [bar, legend];
}

let recorder = null;
async function toggleRecording() {
  if (recorder) {
    recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream, { mimeType: "audio/webm;codecs=opus" });
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      $("record").setAttribute("aria-pressed", "false");
      $("record").textContent = "Record from the microphone";
      $("record-state").textContent = "";
      sendFiles([new File(chunks, "recording.webm", { type: "audio/webm" })]);
    };
    recorder.start();
    $("record").setAttribute("aria-pressed", "true");
    $("record").textContent = "Stop and label";
    $("record-state").textContent = "recording…";
  } catch (err) {
    $("record-state").textContent = "no microphone: " + err.message;
  }
}

$("files").addEventListener("change", (e) => sendFiles([...e.target.files]));
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); } });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over"); sendFiles([...e.dataTransfer.files]); });
$("url-form").addEventListener("submit", (e) => { e.preventDefault(); if ($("url").value) send(JSON.stringify({ url: $("url").value }), $("url").value); });
$("record").addEventListener("click", toggleRecording);
$("token").addEventListener("change", () => {
  sessionStorage.setItem("audioclf-token", $("token").value);
  loadModel();
  if (typeof loadIndex === "function") loadIndex();
  if (typeof startReview === "function") startReview();
});
loadModel();
