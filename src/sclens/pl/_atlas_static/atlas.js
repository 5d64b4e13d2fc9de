/* sclens feature atlas: plain JS, no dependencies; data in #atlas-data (see sclens/pl/_atlas_data.py). */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("atlas-data").textContent);
  const F = D.features;
  const N = F.id.length;
  const pos = new Map(F.id.map((f, i) => [f, i]));

  function decode(b64, Type) {
    const s = atob(b64);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  const X = decode(D.cells.x, Uint16Array), Y = decode(D.cells.y, Uint16Array);
  const IDX = decode(D.act.idx, Uint16Array), VAL = decode(D.act.val, Uint8Array);

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v !== "number") return String(v);
    if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(1);
    return Number(v.toPrecision(digits || 3)).toString();
  }

  // ---- search index: genes match exactly, everything else as a substring ------------------------
  const termsOf = (f) => (D.terms.by_feature[f] || []);
  const genesOf = (f) => (D.genes[f] || []);
  const geneSets = F.id.map((f) => new Set(genesOf(f).map((g) => g[0].toLowerCase())));
  const texts = F.id.map((f, i) => [F.label[i], F.top_group[i], "feature " + f,
    ...termsOf(f).map((t) => D.terms.names[t[0]] + " " + D.terms.ids[t[0]])].join("\n").toLowerCase());
  function matches(i, q) { return !q || geneSets[i].has(q) || texts[i].includes(q); }

  // ---- table ---------------------------------------------------------------------------------
  const LABELS = D.meta.labels || {};
  const COLS = [["id", "#"], ["label", "label"], ["kind", "kind"], ["top_group", "top group"],
    ["activity", "activity"], ["n_terms", "GO terms"], ...D.meta.columns.map((c) => [c, LABELS[c] || c])];
  const state = { key: "n_terms", dir: -1, q: "", kind: "", annotated: false, open: null };
  const tbody = document.querySelector("#features tbody");
  const headRow = document.querySelector("#features thead tr");
  const rows = F.id.map((f, i) => {
    const tr = el("tr", { "data-feature": String(f) }, COLS.map(([c]) => {
      const v = F[c][i];
      return el("td", { class: (typeof v === "number" ? "num " : "") + (c === "kind" ? "kind-" + v : "") + (c === "label" ? "label" : ""), text: fmt(v) });
    }));
    tr.addEventListener("click", () => { location.hash = "feature-" + f; });
    return tr;
  });
  COLS.forEach(([c, name]) => {
    const th = el("th", { "data-col": c, text: name, title: c === name ? "click to sort" : c + " (click to sort)" });
    th.addEventListener("click", () => { state.dir = state.key === c ? -state.dir : (c === "label" || c === "top_group" || c === "kind" ? 1 : -1); state.key = c; resort(); });
    headRow.appendChild(th);
  });
  const kinds = [...new Set(F.kind)].filter((k) => k).sort();
  const kindSel = document.getElementById("kind");
  kinds.forEach((k) => kindSel.appendChild(el("option", { value: k, text: k })));

  function resort() {
    const order = [...Array(N).keys()].sort((a, b) => {
      const va = F[state.key][a], vb = F[state.key][b];
      if (va === vb) return F.id[a] - F.id[b];
      if (va === null || va === "") return 1;
      if (vb === null || vb === "") return -1;
      return (va < vb ? -1 : 1) * state.dir;
    });
    const frag = document.createDocumentFragment();
    for (const i of order) frag.appendChild(rows[i]);
    tbody.appendChild(frag);
    headRow.querySelectorAll("th").forEach((th) => {
      th.className = th.dataset.col === state.key ? (state.dir > 0 ? "asc" : "desc") : "";
    });
  }
  function refilter() {
    let shown = 0;
    for (let i = 0; i < N; i++) {
      const ok = matches(i, state.q) && (!state.kind || F.kind[i] === state.kind) && (!state.annotated || F.n_terms[i] > 0);
      if (rows[i].hidden === ok) rows[i].hidden = !ok;
      shown += ok ? 1 : 0;
    }
    document.getElementById("count").textContent = shown + " of " + N + " features";
    const empty = document.getElementById("empty");
    empty.hidden = shown > 0;
    empty.textContent = shown ? "" : "No feature matches" + (state.q ? " \u201c" + state.q + "\u201d" : " these filters") +
      ". Genes match whole names (CD79A), other text matches labels, GO terms, term IDs and groups.";
    if (state.open !== null && rows[pos.get(state.open)].hidden) closeCard();
  }
  function refresh() { resort(); refilter(); }
  document.getElementById("search").addEventListener("input", (e) => { state.q = e.target.value.trim().toLowerCase(); refilter(); });
  kindSel.addEventListener("change", (e) => { state.kind = e.target.value; refilter(); });
  document.getElementById("annotated").addEventListener("change", (e) => { state.annotated = e.target.checked; refilter(); });

  // ---- card: scatter plots ------------------------------------------------------------------
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function colour(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), w = x - i;
    const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * w));
    return "rgb(" + c.join(",") + ")";
  }
  const SIZE = 300, R = D.cells.n < 3000 ? 4 : D.cells.n < 10000 ? 3 : 2;
  function canvas(id) {
    const ratio = window.devicePixelRatio || 1;
    const c = el("canvas", { id: id, width: String(SIZE * ratio), height: String(SIZE * ratio) });
    const ctx = c.getContext("2d");
    ctx.scale(ratio, ratio);
    return [c, ctx];
  }
  const px = (k) => 5 + (X[k] / 65535) * (SIZE - 10), py = (k) => SIZE - 5 - (Y[k] / 65535) * (SIZE - 10);
  function dot(ctx, k, r) { ctx.fillRect(px(k) - r / 2, py(k) - r / 2, r, r); }
  function activationPlot(i) {
    const [c, ctx] = canvas("scatter");
    ctx.fillStyle = "#d9d9d9";
    for (let k = 0; k < D.cells.n; k++) dot(ctx, k, R);
    const a = D.act.ptr[i], b = D.act.ptr[i + 1];
    const order = [...Array(b - a).keys()].map((j) => j + a).sort((u, v) => VAL[u] - VAL[v]);
    for (const j of order) { ctx.fillStyle = colour(VAL[j] / 255); dot(ctx, IDX[j], R + 1); }
    c.dataset.points = String(D.cells.n);
    c.dataset.active = String(b - a);
    const vmax = D.act.max[i] || 0, stops = VIRIDIS.map((v, k) => "rgb(" + v.join(",") + ") " + (100 * k / (VIRIDIS.length - 1)) + "%");
    const bar = el("div", { class: "colorbar" }, [
      el("span", { class: "swatch", style: "background:#d9d9d9", title: "inactive" }), el("span", { text: "0 (inactive)" }),
      el("span", { class: "gradient", style: "background:linear-gradient(to right," + stops.join(",") + ")" }),
      el("span", { class: "ticks" }, [el("span", { text: fmt(0) }), el("span", { text: fmt(vmax / 2) }), el("span", { text: fmt(vmax) })])]);
    return el("figure", {}, [el("figcaption", { text: "Activation of the feature" }), c, bar,
      el("div", { class: "legend", text: "colour: activation, low (purple) \u2192 high (yellow), in the SAE's units" })]);
  }
  const G = D.groups.code ? decode(D.groups.code, Uint16Array) : null;
  function groupPlot() {
    const [c, ctx] = canvas("groups");
    for (let k = 0; k < D.cells.n; k++) {
      ctx.fillStyle = G[k] < D.groups.colors.length ? D.groups.colors[G[k]] : "#d9d9d9";
      dot(ctx, k, R);
    }
    const legend = el("ul", { class: "group-legend" }, D.groups.names.map((name, k) =>
      el("li", {}, [el("span", { class: "swatch", style: "background:" + D.groups.colors[k] }), name])));
    return el("figure", {}, [el("figcaption", { text: "Cells by " + D.groups.by }), c, legend]);
  }

  // ---- card: tables -------------------------------------------------------------------------
  function table(head, body, cls) {
    const numeric = body.length ? body[0].map((v) => typeof v === "number") : [];
    return el("table", { class: cls || "" }, [el("thead", {}, [el("tr", {}, head.map((h, k) => el("th", { text: h, class: numeric[k] ? "num" : "" })))]),
      el("tbody", {}, body.map((r) => el("tr", {}, r.map((v) => (v instanceof Node ? el("td", { class: "nowrap" }, [v]) : el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) }))))))]);
  }
  function bar(v, vmax) { return el("span", {}, [el("span", { class: "bar", style: "width:" + Math.round(60 * Math.max(v, 0) / (vmax || 1)) + "px" }), " " + fmt(v)]); }
  function link(f) {
    const i = pos.get(f);
    return el("a", { href: "#feature-" + f, text: "#" + f + (i === undefined ? "" : " " + F.label[i]) });
  }
  const skipped = (f) => D.skipped[f];
  const annotated = D.meta.term_rule !== "";
  function notAnnotated(f, what) {
    if (skipped(f)) return el("p", { class: "muted skipped", text: "Not annotated: " + skipped(f) + "." });
    return el("p", { class: "muted", text: annotated ? what : "No annotation stored under '" + D.meta.annotation_key + "' (run sl.tl.annotate_features)." });
  }
  function nearList(title, items, what) {
    return [el("h4", { text: title }), items.length
      ? el("ul", { class: "near " + what }, items.map(([n, v]) => el("li", {}, [link(n), el("span", { class: "muted", text: " " + fmt(v) })])))
      : el("p", { class: "muted", text: "none" })];
  }

  function closeCard() {
    const card = document.getElementById("card");
    card.hidden = true;
    if (state.open !== null) rows[pos.get(state.open)].classList.remove("selected");
    state.open = null;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  }
  function openCard(f) {
    const i = pos.get(f), card = document.getElementById("card");
    if (i === undefined) return;
    rows.forEach((r) => r.classList.remove("selected"));
    rows[i].classList.add("selected");
    state.open = f;
    card.replaceChildren();
    const close = el("button", { class: "close", title: "close", text: "\u00d7" });
    close.addEventListener("click", closeCard);
    card.append(close, el("h2", { text: "Feature " + f + (F.label[i] ? ": " + F.label[i] : "") }),
      el("p", { class: "muted", text: [F.kind[i], F.top_group[i] && "top group " + F.top_group[i],
        "active in " + fmt(100 * (F.activity[i] || 0)) + "% of cells", F.n_terms[i] + " GO terms",
        "max activation " + fmt(D.act.max[i])].filter(Boolean).join(" \u00b7 ") }));
    const tr = D.trust[f] || [];
    card.append(el("h3", { text: "How far to trust it" }), tr.length
      ? table(["evidence", "value", "from"], tr, "trust")
      : el("p", { class: "muted trust", text: "No evidence stored (run sl.tl.feature_alignment and sl.tl.annotation_null)." }));
    card.append(el("h3", { text: "Cells (" + D.cells.basis + ", " + D.cells.n + " of " + D.meta.n_cells + " cells)" }),
      el("div", { class: "plots" }, [...(G ? [groupPlot()] : []), activationPlot(i)]));
    const g = genesOf(f);
    const gmax = Math.max(...g.map((x) => x[1] || 0));
    card.append(el("h3", { text: "Top up-regulated genes" + (g.length ? " (" + g.length + ", sorted by padj)" : "") }), g.length
      ? table(["gene", "log2FC", "padj"], g.map(([n, v, q]) => [n, bar(v, gmax), q]), "genes")
      : notAnnotated(f, "No gene up-regulated at the DE threshold."));
    const t = termsOf(f);
    const shown = t.reduce((a, r) => a + 1 + (r[3] || 0), 0);
    const themes = t.length + " theme" + (t.length > 1 ? "s" : "");
    card.append(el("h3", { text: "GO terms (" + F.n_terms[i] + " kept" + (!t.length ? "" : shown >= F.n_terms[i]
      ? ", in " + themes + ", each shown by its most specific term" : "; the first " + themes + ", each shown by its most specific term") + ")" }));
    if (annotated && !skipped(f)) card.append(el("p", { class: "muted rule", text: "Kept when: " + D.meta.term_rule + "." }));
    card.append(t.length ? table(["term", "name", "p", "padj", "similar terms"], t.map(([k, p, q, n]) => [D.terms.ids[k], D.terms.names[k], p, q, n || 0]), "terms")
      : notAnnotated(f, "No term kept."));
    const s = D.spec.by_feature[f];
    if (s) {
      const vmax = Math.max(...s.map((v) => v || 0));
      card.append(el("h3", { text: "Mean activation per " + (D.spec.groupby || "group") }),
        table(["group", "mean"], D.spec.groups.map((name, k) => [name, bar(s[k] || 0, vmax)]), "spec"));
    }
    const st = D.steer[f];
    if (st) card.append(el("h3", { text: "Steering: terms of steered vs normal cells" }), table(["name", "term", "p"], st, "steer"));
    card.append(el("h3", { text: "Closest features" }),
      ...nearList("by decoder direction (cosine)", D.near.decoder[f] || [], "decoder"),
      ...nearList(D.near.terms.method === "feature_space" ? "in GO-term space (distance in the feature-space UMAP)"
        : "by shared GO terms (Jaccard index)", D.near.terms.by_feature[f] || [], "terms"));
    card.hidden = false;
    card.scrollTop = 0;
    if (card.getBoundingClientRect().top > window.innerHeight || card.getBoundingClientRect().bottom < 0) card.scrollIntoView();
  }
  function route() {
    const m = /^#feature-(\d+)$/.exec(location.hash);
    if (m) openCard(Number(m[1])); else if (state.open !== null) closeCard();
  }
  window.addEventListener("hashchange", route);

  document.getElementById("title").textContent = D.meta.title;
  document.getElementById("summary").textContent = N + " live features of " + D.meta.n_features + " (SAE run '" + D.meta.sae_key +
    "'), " + D.meta.n_cells + " cells; annotation '" + D.meta.annotation_key + "'. Made with sclens " + D.meta.sclens + ".";
  refresh();
  route();
  document.body.dataset.ready = "1";
})();
