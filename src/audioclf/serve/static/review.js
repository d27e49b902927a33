"use strict";
// The Review tab: GET /v1/review/queue (what to label next, leased to this reviewer), POST /v1/review/answer
// and /v1/review/undo, each item's audio from /v1/search/audio/{id} and its spectrogram from
// /v1/review/spectrogram/{id} (both fetched with the token). Keyboard first: 1-9 the labels, n none, s skip,
// u undo, space to play again. The page moves on at once; the answers go to the server one after another, in
// the order given (an undo after the answer it takes back). Uses $, el and headers from app.js, seconds from
// search.js; its own names stay inside this function (app.js has a show() of its own), startReview is global.
(() => {
  const review = {
    labels: [],      // the keys' order: the server's labels, then the ones typed here
    queue: [],       // items still to show
    current: null,   // the item shown
    done: [],        // items answered here, latest last (what u brings back)
    answers: 0,      // answers this session
    counts: {},
    urls: [],        // object URLs of the item shown
    chain: Promise.resolve(),  // the requests, in order
    pending: 0,
    like: null,      // a search queue of windows like this one (from a hit's button), instead of words
  };

  function annotator() {
    return $("review-annotator").value.trim();
  }

  function later(job) {  // run after every request already made
    review.pending += 1;
    review.chain = review.chain.then(job).catch((err) => {
      $("review-status").textContent = "the server did not answer: " + err;
    }).finally(() => { review.pending -= 1; });
    return review.chain;
  }

  async function call(method, url, body) {
    const init = { method, headers: headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const data = await response.json();
    if (response.status === 401) $("token-row").hidden = false;
    return { ok: response.ok, status: response.status, data };
  }

  function queueParams() {  // the select's "from:strategy", and for a search its words or the window
    const [from, strategy] = $("review-strategy").value.split(":");
    const params = new URLSearchParams({ n: "10", from });
    if (strategy) params.set("strategy", strategy);
    $("review-query").hidden = from !== "search";
    if (from === "search" && review.like !== null) params.set("like", String(review.like));
    else if (from === "search") params.set("text", $("review-query").value.trim());
    return params;
  }

  async function loadQueue(replace) {
    const params = queueParams();
    if (params.get("from") === "search" && !params.get("like") && !params.get("text")) {
      $("review-status").textContent = "type words to search for, or press “label more like this” on a hit";
      return false;
    }
    if (annotator()) params.set("annotator", annotator());
    const { ok, status, data } = await call("GET", "/v1/review/queue?" + params);
    if (!ok) {
      $("review-status").textContent = `error ${status}: ${data.error}`;
      return false;
    }
    if (!annotator() && data.annotator) $("review-annotator").value = data.annotator;
    review.scoredBy = data.scored_by || "the quick model";
    $("review-note").hidden = !data.note;
    $("review-note").textContent = data.note || "";
    progress(data);
    const shown = new Set([review.current, ...review.queue].filter(Boolean).map((i) => i.id));
    if (replace) {
      review.queue = data.items;
      review.current = null;
    } else {
      review.queue.push(...data.items.filter((i) => !shown.has(i.id)));
    }
    if (!review.current) {  // not next(): an empty answer asks for no more
      review.current = review.queue.shift() || null;
      show(review.current);
    }
    return true;
  }

  function progress(data) {
    $("review-strategy").querySelector('option[value^="model"]').hidden = !data.has_model;
    for (const label of data.labels) if (!review.labels.includes(label)) review.labels.push(label);
    review.counts = data.counts;
    const per = Object.entries(data.counts).map(([k, v]) => `${k} ${v}`).join(" · ") || "nothing yet";
    $("review-progress").textContent = `labelled: ${per} — ${review.answers} answers this session`;
    drawKeys();
  }

  function drawKeys() {
    const keys = $("review-keys");
    keys.replaceChildren();
    review.labels.forEach((label, i) => {
      const item = el("li", "");
      const button = el("button", "", "");
      button.type = "button";
      if (i < 9) button.append(el("kbd", "", String(i + 1)));
      button.append(label);
      button.addEventListener("click", () => answer("label", label));
      item.append(button);
      keys.append(item);
    });
    if (!review.labels.length) keys.append(el("li", "note", "no labels yet: type the first one below"));
  }

  function next() {
    review.current = review.queue.shift() || null;
    show(review.current);
    if (review.queue.length < 2) later(() => loadQueue(false));  // refill, after the answers already given
  }

  function show(item) {
    review.urls.forEach((url) => URL.revokeObjectURL(url));
    review.urls = [];
    const card = $("review-item");
    card.replaceChildren();
    if (!item) {
      card.append(el("p", "note", "nothing to review here now: every window is answered or with another reviewer"));
      return;
    }
    card.dataset.id = String(item.id);
    const name = el("h3", "", item.source.split(/[\\/]/).pop() || item.source);
    name.title = item.source;
    card.append(name);
    card.append(el("p", "meta", `${seconds(item.start_s)}–${seconds(item.end_s)}` + (item.group && item.group !== item.source ? ` · group ${item.group}` : "")));
    if (item.guess) card.append(el("p", "guess", `${review.scoredBy}: ${item.guess} (${item.score.toFixed(2)})`));
    else if (item.score !== null) card.append(el("p", "guess", `similarity ${item.score.toFixed(3)}`));
    if (item.transcript) card.append(el("p", "transcript", `“${item.transcript}”`));
    const picture = el("img", "");
    picture.alt = `spectrogram of ${name.textContent} from ${seconds(item.start_s)}, a second either side dimmed`;
    card.append(picture);
    const player = el("audio", "");
    player.controls = true;
    card.append(player);
    fetchInto(item, item.spectrogram, picture, () => {});
    fetchInto(item, item.audio, player, () => {
      player.addEventListener("loadedmetadata", () => {
        player.currentTime = Math.max(0, item.start_s - item.audio_from_s);
        player.play().catch(() => {});  // a browser may refuse to play before the first key
      }, { once: true });
    });
  }

  async function fetchInto(item, url, node, then) {
    try {  // fetched rather than linked: an <img src> or <audio src> cannot send the token
      const response = await fetch(url, { headers: headers() });
      if (review.current !== item) return;
      if (!response.ok) {
        const data = await response.json();
        node.replaceWith(el("p", "error", data.error));
        return;
      }
      const blobUrl = URL.createObjectURL(await response.blob());
      review.urls.push(blobUrl);
      then();
      node.src = blobUrl;
    } catch (err) {
      node.replaceWith(el("p", "error", String(err)));
    }
  }

  function answer(kind, label) {
    const item = review.current;
    if (!item) return;
    review.done.push(item);
    review.answers += 1;
    next();
    const body = { id: item.id, kind, annotator: annotator(), origin: item.origin || "suggestion" };
    if (label) body.label = label;
    later(async () => {
      const { ok, status, data } = await call("POST", "/v1/review/answer", body);
      if (!ok) {
        review.answers -= 1;
        $("review-status").textContent = `not saved (error ${status}): ${data.error}`;
        return;
      }
      $("review-status").textContent = `saved: ${item.source.split(/[\\/]/).pop()} ${seconds(item.start_s)} → ${label || kind}`;
      progress(data);
    });
  }

  function undo() {
    const item = review.done.pop();
    if (!item) {
      $("review-status").textContent = "nothing to undo in this session";
      return;
    }
    if (review.current) review.queue.unshift(review.current);
    review.current = item;
    review.answers -= 1;
    show(item);
    later(async () => {
      const { ok, status, data } = await call("POST", "/v1/review/undo", { annotator: annotator() });
      if (!ok) {
        $("review-status").textContent = `undo failed (error ${status}): ${data.error}`;
        return;
      }
      $("review-status").textContent = data.undone ? `undone: the answer ${data.undone.label || data.undone.kind}` : "nothing to undo";
      progress(data);
    });
  }

  function addLabel(text) {
    const label = text.trim();
    if (!label) return;
    if (label === "none") {
      $("review-status").textContent = "“none of them” is the n key, not a label";
      return;
    }
    if (!review.labels.includes(label)) review.labels.push(label);
    drawKeys();
    const key = review.labels.indexOf(label) + 1;
    $("review-status").textContent = key <= 9 ? `${label} is key ${key}` : `${label} added (click it: keys go to 9)`;
  }

  function selectTab(name) {
    $("main").dataset.tab = name;
    $("tab-main").setAttribute("aria-selected", String(name === "main"));
    $("tab-review").setAttribute("aria-selected", String(name === "review"));
    history.replaceState(null, "", name === "review" ? "#review" : location.pathname);
  }

  function onKey(e) {
    if ($("main").dataset.tab !== "review" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest("input, select, textarea")) return;
    if (/^[1-9]$/.test(e.key)) {
      const label = review.labels[Number(e.key) - 1];
      if (label) answer("label", label);
      else $("review-status").textContent = review.labels.length ? `no label on key ${e.key}` : "type a label name first";
    } else if (e.key === "n") answer("none");
    else if (e.key === "s") answer("skip");
    else if (e.key === "u") undo();
    else if (e.key === " ") {
      const player = $("review-item").querySelector("audio");
      if (player && player.src) {
        player.currentTime = Math.max(0, review.current.start_s - review.current.audio_from_s);
        player.play().catch(() => {});
      }
    } else return;
    e.preventDefault();
  }

  async function startReview() {
    $("review-annotator").value = localStorage.getItem("audioclf-annotator") || "";
    const params = new URLSearchParams({ n: "1" });
    if (annotator()) params.set("annotator", annotator());
    const probe = await fetch("/v1/review/queue?" + params, { headers: headers() });
    if (!probe.ok) return;  // no labels file (404) or no token yet: no Review tab
    $("tabs").hidden = false;
    $("review-section").hidden = false;
    if (location.hash === "#review") selectTab("review");
    await later(() => loadQueue(true));
  }

  $("tab-main").addEventListener("click", () => selectTab("main"));
  $("tab-review").addEventListener("click", () => selectTab("review"));
  $("review-none").addEventListener("click", () => answer("none"));
  $("review-skip").addEventListener("click", () => answer("skip"));
  $("review-undo").addEventListener("click", undo);
  $("review-retrain").addEventListener("click", () => later(() => loadQueue(true)));
  $("review-strategy").addEventListener("change", () => {
    review.like = null;
    later(() => loadQueue(true));
  });
  $("review-query").addEventListener("change", () => {
    review.like = null;
    later(() => loadQueue(true));
  });
  $("review-annotator").addEventListener("change", () => {
    localStorage.setItem("audioclf-annotator", annotator());
    later(() => loadQueue(true));
  });
  $("review-new").addEventListener("submit", (e) => {
    e.preventDefault();
    addLabel($("review-new-label").value);
    $("review-new-label").value = "";
    $("review-new-label").blur();
  });
  document.addEventListener("keydown", onKey);
  window.startReview = startReview;  // app.js calls it again once a token is entered
  window.reviewLike = (id) => {  // search.js: a hit's "label more like this"
    review.like = id;
    $("review-strategy").value = "search";
    selectTab("review");
    later(() => loadQueue(true));
  };
  startReview();
})();
