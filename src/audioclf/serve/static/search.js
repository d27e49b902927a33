"use strict";
// The search box: GET /v1/index, POST /v1/search (words as JSON, a clip as a form), each hit's audio from
// GET /v1/search/audio/{id} (fetched with the token, when a hit scrolls into view, and played from the hit's
// start). Uses $, el and headers from app.js.
let hitAudio = [];  // object URLs of the hits shown: released when the next answer replaces them

async function loadIndex() {
  const response = await fetch("/v1/index", { headers: headers() });
  if (response.status === 401) {
    $("token-row").hidden = false;
    return;
  }
  $("search-section").hidden = !response.ok;
  $("index-info").hidden = !response.ok;
  if (!response.ok) return;  // no index: the page is the model's
  const index = await response.json();
  $("index-info").textContent = `index ${index.name}: ${index.recordings} recordings, ${index.windows} windows ` +
    `of ${index.window_s} s · ${index.encoder}` + (index.transcripts ? " · with transcripts" : "");
  $("search-text").disabled = $("search-words").disabled = !index.transcripts;
  $("search-no-text").hidden = index.transcripts;
}

function searchOptions() {
  const topK = Math.min(1000, Math.max(1, Math.round(Number($("search-top-k").value) || 10)));
  return { top_k: topK, per_recording: $("search-per-recording").checked };
}

async function search(body, what) {
  $("search-status").textContent = `searching for ${what}…`;
  const init = { method: "POST", headers: headers(), body };
  if (typeof body === "string") init.headers["Content-Type"] = "application/json";
  try {
    const response = await fetch("/v1/search", init);
    const data = await response.json();
    if (response.status === 401) $("token-row").hidden = false;
    if (!response.ok) {
      $("search-status").textContent = `error ${response.status}: ${data.error}`;
      return;
    }
    $("search-status").textContent = `${data.hits.length} hits for ${what}`;
    showHits(data.hits);
  } catch (err) {
    $("search-status").textContent = "the server did not answer: " + err;
  }
}

function searchWords(text) {
  if (!text.trim()) return;
  search(JSON.stringify({ text, ...searchOptions() }), `“${text}”`);
}

function searchClip(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  const chosen = searchOptions();
  form.append("top_k", String(chosen.top_k));
  form.append("per_recording", String(chosen.per_recording));
  if ($("search-start").value) form.append("start", $("search-start").value);
  if ($("search-end").value) form.append("end", $("search-end").value);
  search(form, file.name);
}

function seconds(s) {
  return `${s.toFixed(s < 60 ? 2 : 1)} s`;
}

function showHits(hits) {
  hitAudio.forEach((url) => URL.revokeObjectURL(url));
  hitAudio = [];
  const list = $("hits");
  list.replaceChildren();
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      seen.unobserve(entry.target);
      loadAudio(entry.target);
    }
  });
  for (const hit of hits) {
    const item = el("li", "hit");
    item.setAttribute("data-id", String(hit.id));
    const name = el("h3", "", hit.source.split(/[\\/]/).pop() || hit.source);
    name.title = hit.source;
    item.append(name);
    const meta = `${seconds(hit.start_s)}–${seconds(hit.end_s)} · score ${hit.score.toFixed(3)}` +
      (hit.label ? ` · label ${hit.label}` : "");
    item.append(el("p", "meta", meta));
    if (hit.transcript) item.append(el("p", "transcript", `“${hit.transcript}”`));
    const player = el("audio", "");
    player.controls = true;
    player.preload = "metadata";
    player.dataset.src = hit.audio;
    player.dataset.at = String(Math.max(0, hit.start_s - hit.audio_from_s));
    player.setAttribute("aria-label", `${name.textContent} from ${seconds(hit.start_s)}`);
    item.append(player);
    if (window.reviewLike && !$("review-section").hidden) {  // with a labels file: label windows like this one
      const more = el("button", "", "label more like this");
      more.type = "button";
      more.addEventListener("click", () => window.reviewLike(hit.id));
      item.append(more);
    }
    list.append(item);
    seen.observe(player);
  }
}

async function loadAudio(player) {
  try {  // fetched rather than linked: an <audio src> cannot send the token
    const response = await fetch(player.dataset.src, { headers: headers() });
    if (!response.ok) {
      const data = await response.json();
      player.replaceWith(el("p", "error", `no audio: ${data.error}`));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    hitAudio.push(url);
    player.addEventListener("loadedmetadata", () => { player.currentTime = Number(player.dataset.at); }, { once: true });
    player.src = url;
  } catch (err) {
    player.replaceWith(el("p", "error", "no audio: " + err));
  }
}

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchWords($("search-text").value); });
$("search-file").addEventListener("change", (e) => { searchClip(e.target.files[0]); e.target.value = ""; });
$("search-drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("search-file").click(); } });
$("search-drop").addEventListener("dragover", (e) => { e.preventDefault(); $("search-drop").classList.add("over"); });
$("search-drop").addEventListener("dragleave", () => $("search-drop").classList.remove("over"));
$("search-drop").addEventListener("drop", (e) => { e.preventDefault(); $("search-drop").classList.remove("over"); searchClip(e.dataTransfer.files[0]); });
loadIndex();
