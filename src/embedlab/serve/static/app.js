// embedlab web page: search, show results, send feedback.  Text from documents is only ever
// inserted as text nodes (never as HTML), so a document cannot inject markup or script.
"use strict";
const $ = (id) => document.getElementById(id);
const session = Math.random().toString(36).slice(2);
let last = null; // the last search response
let imageCollection = false; // results are images: show thumbnails (from /healthz)

function headers(contentType) {
  const h = { "Content-Type": contentType || "application/json" };
  const key = $("key").value || localStorage.getItem("embedlab_api_key") || "";
  if (key) {
    h["X-API-Key"] = key;
    localStorage.setItem("embedlab_api_key", key);
    // links to documents cannot carry a header: the server also accepts this cookie
    document.cookie = "embedlab_api_key=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
  }
  return h;
}

async function post(path, body, contentType) {
  // a JSON body, or (with contentType) a raw one such as an image file
  const payload = contentType ? body : JSON.stringify(body);
  const response = await fetch(path, { method: "POST", headers: headers(contentType), body: payload });
  const data = await response.json().catch(() => ({ error: "HTTP " + response.status }));
  if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
  return data;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function snippetNode(hit) {
  // the snippet with every query-term span (offsets in hit.text) wrapped in <mark>
  const p = document.createElement("p");
  p.className = "snippet";
  let at = hit.snippet_start;
  const spans = hit.highlights.filter(([a, b]) => a >= hit.snippet_start && b <= hit.snippet_end);
  if (hit.snippet_start > 0) p.append("… ");
  for (const [a, b] of spans) {
    p.append(hit.text.slice(at, a));
    const m = document.createElement("mark");
    m.textContent = hit.text.slice(a, b);
    p.append(m);
    at = b;
  }
  p.append(hit.text.slice(at, hit.snippet_end));
  if (hit.snippet_end < hit.text.length) p.append(" …");
  return p;
}

const SVG = "http://www.w3.org/2000/svg";
// a thumb (Feather's "thumbs-up" outline, MIT licence), turned upside down for "not relevant"
const THUMB = "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7" +
  "a2 2 0 0 1 2-2h3";

function thumb(down) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  if (down) svg.setAttribute("transform", "rotate(180)");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", THUMB);
  svg.append(path);
  return svg;
}

function documentUrl(hit) {
  const path = hit.path.split("/").map(encodeURIComponent).join("/");
  return "/v1/documents/" + path + (hit.path.toLowerCase().endsWith(".pdf") ? "#page=" + hit.page : "");
}

function imageUrl(hit, size) {
  // by row id: the server looks the file up itself, so no path is ever sent to it
  return "/v1/images/" + encodeURIComponent(hit.chunk_id) + "?size=" + size;
}

async function feedback(hit, kind, button) {
  const body = {
    query: last.query, chunk_id: hit.chunk_id, kind: kind, rank: hit.rank, mode: last.mode,
    generation: last.generation, session: session, result_ids: last.hits.map((h) => h.chunk_id),
    search_id: last.search_id,
  };
  try {
    await post("/v1/feedback", body);
    if (button) {
      button.setAttribute("aria-pressed", "true");
      const sent = button.parentNode.querySelector(".sent");
      sent.textContent = kind === "up" ? "thanks!" : "noted";
    }
  } catch (err) {
    status("feedback not saved: " + err.message, true);
  }
}

function render(response) {
  const list = $("results");
  list.replaceChildren();
  for (const hit of response.hits) {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.chunk = hit.chunk_id;
    const where = document.createElement("div");
    where.className = "where";
    const link = document.createElement("a");
    link.className = "open";
    link.href = imageCollection ? imageUrl(hit, 1024) : documentUrl(hit);
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = hit.path;
    link.addEventListener("click", () => feedback(hit, "click", null));
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = (hit.page && !imageCollection ? "page " + hit.page + " · " : "") + "score " + hit.score.toPrecision(4);
    where.append(link, meta);
    const buttons = document.createElement("div");
    buttons.className = "feedback";
    for (const [kind, label] of [["up", "relevant"], ["down", "not relevant"]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = kind;
      b.append(thumb(kind === "down"), label); // an inline SVG: no emoji font needed
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => feedback(hit, kind, b));
      buttons.append(b);
    }
    const sent = document.createElement("span");
    sent.className = "sent";
    buttons.append(sent);
    if (imageCollection) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = hit.path;
      img.src = imageUrl(hit, 192);
      const text = document.createElement("div");
      text.append(where, buttons);
      li.classList.add("image");
      li.append(img, text);
      list.append(li);
      continue;
    }
    li.append(where, snippetNode(hit), buttons);
    list.append(li);
  }
}

$("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = $("q").value.trim();
  if (!query) return;
  status("searching…");
  try {
    const body = { query: query, mode: $("mode").value, k: Number($("k").value), session: session };
    const filter = $("filter").value.trim(); // a glob on file paths, e.g. papers/*.pdf
    if (filter) body.filter = filter;
    last = await post("/v1/search", body);
    shown(imageCollection ? "images" : "chunks");
  } catch (err) {
    $("results").replaceChildren();
    status(err.message, true);
  }
});

function shown(what) {
  render(last);
  const t = last.latency_ms;
  status(last.hits.length + " results from " + last.chunks_searched + " " + what + " · " + last.mode +
         (last.reranker ? " + " + last.reranker : "") + " · " + t.total.toFixed(1) + " ms");
}

async function searchImage() {
  const file = $("image").files[0];
  if (!file) return;
  status("searching with " + file.name + "…");
  try {
    const type = ["image/png", "image/jpeg", "image/webp"].includes(file.type) ? file.type
      : "application/octet-stream";
    const params = new URLSearchParams({ k: $("k").value, session: session, name: file.name.slice(0, 200) });
    const filter = $("filter").value.trim();
    if (filter) params.set("filter", filter);
    last = await post("/v1/search/image?" + params, file, type); // the file itself is the body
    shown(imageCollection ? "images" : "chunks");
  } catch (err) {
    $("results").replaceChildren();
    status(err.message, true);
  }
}

$("imagesearch").addEventListener("submit", (event) => { event.preventDefault(); searchImage(); });
$("image").addEventListener("change", searchImage);

fetch("/healthz").then((r) => r.json()).then((h) => {
  $("about").textContent = "collection " + h.collection + " · generation " + h.generation + " · " +
    h.chunks + (h.images ? " images" : " chunks") + (h.reranker ? " · re-ranker " + h.reranker : "");
  if (h.auth) $("keyrow").style.display = "block";
  imageCollection = Boolean(h.images);
  if (imageCollection) {
    $("mode").value = "dense"; // the words of an image collection are only its file names
    $("q").placeholder = "Describe an image…";
  }
  $("imagesearch").hidden = !(h.query_modalities || []).includes("image");
  if (!(h.query_modalities || ["text"]).includes("text")) $("search").hidden = true;
}).catch(() => status("server not reachable", true));
