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
  const COLS = [["id", "#"], ["label", "label"], ["kind", "kind"], ["top_group", "top group"],
    ["activity", "activity"], ["n_terms", "terms"], ...D.meta.columns.map((c) => [c, c])];
  const state = { key: "n_terms", dir: -1, q: "", kind: "", annotated: false };
  const tbody = document.querySelector("#features tbody");
  const headRow = document.querySelector("#features thead tr");
  const rows = F.id.map((f, i) => {
    const tr = el("tr", { "data-feature": String(f) }, COLS.map(([c]) => {
      const v = F[c][i];
      return el("td", { class: (typeof v === "number" ? "num " : "") + (c === "kind" ? "kind-" + v : ""), text: fmt(v) });
    }));
    tr.addEventListener("click", () => { location.hash = "feature-" + f; });
    return tr;
  });
  COLS.forEach(([c, name]) => {
    const th = el("th", { "data-col": c, text: name });
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
  }
  function refresh() { resort(); refilter(); }
  document.getElementById("search").addEventListener("input", (e) => { state.q = e.target.value.trim().toLowerCase(); refilter(); });
  kindSel.addEventListener("change", (e) => { state.kind = e.target.value; refilter(); });
  document.getElementById("annotated").addEventListener("change", (e) => { state.annotated = e.target.checked; refilter(); });

  // ---- card ----------------------------------------------------------------------------------
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function colour(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), w = x - i;
    const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * w));
    return "rgb(" + c.join(",") + ")";
  }
  function scatter(i) {
    const size = 440, ratio = window.devicePixelRatio || 1;
    const canvas = el("canvas", { id: "scatter", width: String(size * ratio), height: String(size * ratio) });
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const px = (k) => 6 + (X[k] / 65535) * (size - 12), py = (k) => size - 6 - (Y[k] / 65535) * (size - 12);
    const r = D.cells.n < 3000 ? 3 : D.cells.n < 10000 ? 2.2 : 1.6, h = r / 2;
    ctx.fillStyle = "#d9d9d9";
    for (let k = 0; k < D.cells.n; k++) ctx.fillRect(px(k) - h, py(k) - h, r, r);
    const a = D.act.ptr[i], b = D.act.ptr[i + 1];
    const order = [...Array(b - a).keys()].map((j) => j + a).sort((u, v) => VAL[u] - VAL[v]);
    for (const j of order) {
      ctx.fillStyle = colour(VAL[j] / 255);
      ctx.fillRect(px(IDX[j]) - h - 0.5, py(IDX[j]) - h - 0.5, r + 1, r + 1);
    }
    canvas.dataset.points = String(D.cells.n);
    canvas.dataset.active = String(b - a);
    return canvas;
  }
  function table(head, body, cls) {
    return el("table", { class: cls || "" }, [el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]),
      el("tbody", {}, body.map((r) => el("tr", {}, r.map((v) => (v instanceof Node ? el("td", {}, [v]) : el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) }))))))]);
  }
  function bar(v, vmax) { return el("span", {}, [el("span", { class: "bar", style: "width:" + Math.round(80 * Math.max(v, 0) / (vmax || 1)) + "px" }), " " + fmt(v)]); }
  function link(f) {
    const i = pos.get(f);
    return el("a", { href: "#feature-" + f, text: "#" + f + (i === undefined ? "" : " " + F.label[i]) });
  }

  function openCard(f) {
    const i = pos.get(f), card = document.getElementById("card");
    if (i === undefined) return;
    rows.forEach((r) => r.classList.remove("selected"));
    rows[i].classList.add("selected");
    card.replaceChildren();
    const close = el("button", { class: "close", title: "close", text: "\u00d7" });
    close.addEventListener("click", () => { history.replaceState(null, "", location.pathname); card.hidden = true; rows[i].classList.remove("selected"); });
    card.append(close, el("h2", { text: "Feature " + f + (F.label[i] ? ": " + F.label[i] : "") }),
      el("p", { class: "muted", text: [F.kind[i], F.top_group[i] && "top group " + F.top_group[i],
        "active in " + fmt(100 * (F.activity[i] || 0)) + "% of cells", F.n_terms[i] + " terms",
        "max activation " + fmt(D.act.max[i])].filter(Boolean).join(" \u00b7 ") }));
    const g = genesOf(f);
    const left = el("div", { class: "col" }, [el("h3", { text: "Activation on " + D.cells.basis + " (" + D.cells.n + " of " + D.meta.n_cells + " cells)" }), scatter(i),
      el("div", { class: "legend", text: "grey: inactive; purple \u2192 yellow: low \u2192 high activation" })]);
    const right = el("div", { class: "col" }, [el("h3", { text: "Top up-regulated genes" }), g.length
      ? table(["gene", "log2FC"], g.map(([n, v]) => [n, bar(v, Math.max(...g.map((x) => x[1])))]), "genes")
      : el("p", { class: "muted", text: "none stored (rerun sl.tl.annotate_features)" })]);
    card.append(el("div", { class: "row" }, [left, right]));
    const t = termsOf(f);
    card.append(el("h3", { text: "GO terms (" + F.n_terms[i] + " kept" + (t.length < F.n_terms[i] ? ", first " + t.length + " shown" : "") + ")" }),
      t.length ? table(["term", "name", "p", "padj"], t.map(([k, p, q]) => [D.terms.ids[k], D.terms.names[k], p, q]), "terms")
        : el("p", { class: "muted terms", text: "no kept terms" }));
    const s = D.spec.by_feature[f];
    if (s) {
      const vmax = Math.max(...s.map((v) => v || 0));
      card.append(el("h3", { text: "Mean activation per " + (D.spec.groupby || "group") }),
        table(["group", "mean"], D.spec.groups.map((name, k) => [name, bar(s[k] || 0, vmax)]), "spec"));
    }
    const st = D.steer[f];
    if (st) card.append(el("h3", { text: "Steering: terms of steered vs normal cells" }), table(["name", "term", "p"], st, "steer"));
    const near = D.near.by_feature[f] || [];
    if (near.length) {
      card.append(el("h3", { text: "Closest features in GO-term space (" + (D.near.method === "jaccard" ? "Jaccard of term sets" : "feature-space UMAP") + ")" }),
        el("ul", { class: "near" }, near.map(([n, v]) => el("li", {}, [link(n), el("span", { class: "muted", text: " " + fmt(Math.abs(v)) })]))));
    }
    card.hidden = false;
    card.scrollTop = 0;
  }
  function route() {
    const m = /^#feature-(\d+)$/.exec(location.hash);
    if (m) openCard(Number(m[1]));
  }
  window.addEventListener("hashchange", route);

  document.getElementById("title").textContent = D.meta.title;
  document.getElementById("summary").textContent = N + " live features of " + D.meta.n_features + " (SAE run '" + D.meta.sae_key +
    "'), " + D.meta.n_cells + " cells; annotation '" + D.meta.annotation_key + "'. Made with sclens " + D.meta.sclens + ".";
  refresh();
  route();
  document.body.dataset.ready = "1";
})();
