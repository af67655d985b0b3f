"use strict";
// Filters, sorting and the record panel of a qmatrix report. Reads the records embedded in the page.
(function () {
  // What filters, tallies and the search read of each record, parsed the first time one needs it: the
  // page opens first. The whole records (gzip, base64) are read when a record panel first opens.
  let index = null;
  const data = () => index || (index = JSON.parse(document.getElementById("index").textContent));
  let whole = null;
  const records = () => whole || (whole = (async () => {
    const text = document.getElementById("records").textContent.trim();
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  })());
  const CONFIG = JSON.parse(document.getElementById("config").textContent);
  const SYMBOLS = CONFIG.symbols;
  const NOT_APPLICABLE = ["unavailable", "error"];
  const STAGES = ["reference", "capture", "prepare", "calibrate", "train", "convert", "export", "load", "run",
                  "measure", "compare"];
  const METRICS = ["sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "max_abs_err", "mean_abs_err", "cosine",
                   "top1_agree", "accuracy", "float_accuracy"];
  const filters = {};
  let search = "";

  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const esc = (value) => String(value == null ? "" : value).replace(/[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const indices = (el) => (el.dataset.cells ? el.dataset.cells.split(" ").filter(Boolean).map(Number) : []);

  function matches(i) {
    const r = data()[i];
    for (const axis in filters) {
      if (filters[axis] && String(r[axis] == null ? "" : r[axis]) !== filters[axis]) return false;
    }
    if (!search) return true;
    const text = [r.case_id, r.stage, r.error_type, r.error_message, r.reason].join(" ").toLowerCase();
    return text.includes(search);
  }

  function tally(td, picked) {
    const counts = {};
    const DATA = data();
    picked.forEach((i) => { counts[DATA[i].status] = (counts[DATA[i].status] || 0) + 1; });
    const applicable = picked.filter((i) => !NOT_APPLICABLE.includes(DATA[i].status)).length;
    const passed = counts.pass || 0;
    const others = Object.keys(SYMBOLS).filter((s) => s !== "pass" && counts[s])
      .map((s) => `<span title="${counts[s]} ${s}">${SYMBOLS[s]}${counts[s]}</span>`).join("");
    td.innerHTML = (applicable ? `<b>${passed}/${applicable}</b>` : "") + `<span class="others">${others}</span>`;
    td.style.background = applicable ? `hsl(${Math.round(120 * passed / applicable)}, 65%, 82%)` : "";
    td.classList.toggle("s-unavailable", !applicable && picked.length > 0);
  }

  const filtering = () => Object.values(filters).some(Boolean) || !!search;

  // The cell table's rows, put in from their template the first time they are needed.
  function cellRows(reapply = true) {
    const template = document.getElementById("cell-rows");
    if (!template) return;
    template.remove();
    document.querySelector("#cell-table tbody").appendChild(template.content);
    if (reapply && filtering()) apply();
  }

  // A long section's body, put in from its template the first time it is near or a filter is chosen.
  function unfold(template, reapply = true) {
    if (!template.isConnected) return;
    template.replaceWith(template.content);
    if (reapply && filtering()) apply();
  }

  function apply() {
    const active = filtering();
    if (active) {
      cellRows(false);
      $$("template.lazy").forEach((template) => unfold(template, false));
    }
    const DATA = data();
    const ok = DATA.map((_, i) => matches(i));
    $$("tr[data-i]").forEach((tr) => { tr.hidden = !ok[+tr.dataset.i]; });
    $$(".chip[data-i]").forEach((chip) => chip.classList.toggle("dim", !ok[+chip.dataset.i]));
    $$("tr[data-cells]").forEach((tr) => { tr.hidden = !indices(tr).some((i) => ok[i]); });
    $$(".group[data-cells]").forEach((group) => {
      const n = indices(group).filter((i) => ok[i]).length;
      group.hidden = n === 0;
      group.querySelector(".n").textContent = n;
    });
    $$("td.tally[data-cells]").forEach((td) => tally(td, indices(td).filter((i) => ok[i])));
    $$("section").forEach((section) => {
      const rows = $$("table.filterable tbody tr", section);
      const none = section.querySelector(".none-shown");
      if (none) none.hidden = !rows.length || rows.some((tr) => !tr.hidden);
    });
    const shown = ok.filter(Boolean).length;
    document.getElementById("shown").textContent = active ? `${shown} of ${DATA.length} cells shown`
                                                           : `${DATA.length} cells`;
    $$("select[data-axis]").forEach((s) => s.classList.toggle("active", !!s.value));
    document.getElementById("search").classList.toggle("active", !!search);
  }

  function setFilter(axis, value) {
    filters[axis] = value;
    const select = document.querySelector(`select[data-axis="${axis}"]`);
    if (select) select.value = value;
  }

  function sortBy(th) {
    const table = th.closest("table");
    if (table.id === "cell-table") cellRows();
    const column = Array.from(th.parentNode.children).indexOf(th);
    const dir = th.dataset.dir === "asc" ? "desc" : "asc";
    $$("th", table).forEach((h) => delete h.dataset.dir);
    th.dataset.dir = dir;
    const key = (tr) => {
      const td = tr.cells[column];
      const value = td ? (td.dataset.v !== undefined ? td.dataset.v : td.textContent.trim()) : "";
      const number = Number(value);
      return value === "" ? null : (Number.isNaN(number) ? value.toLowerCase() : number);
    };
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      let c;
      if (typeof x === typeof y) c = x < y ? -1 : x > y ? 1 : 0;
      else c = typeof x === "number" ? -1 : 1;
      return dir === "asc" ? c : -c;
    });
    rows.forEach((tr) => body.appendChild(tr));
  }

  function number(key, value) {
    if (typeof value !== "number") return esc(value);
    if (key.startsWith("sqnr") && value >= 300) return "∞ (identical outputs)";
    return Math.abs(value) >= 100 ? value.toFixed(1) : String(+value.toPrecision(5));
  }

  function link(text) {
    return esc(text).replace(/(https?:\/\/[^\s<)]+)/g, '<a href="$1" target="_blank" rel="noreferrer">$1</a>');
  }

  function rows(pairs) {
    const kept = pairs.filter((p) => p[1] !== "" && p[1] != null);
    if (!kept.length) return "<p><i>none recorded</i></p>";
    return "<table><tbody>" + kept.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("")
      + "</tbody></table>";
  }

  function timings(t) {
    const stages = Object.keys(t || {}).sort((a, b) => STAGES.indexOf(a) - STAGES.indexOf(b));
    const longest = Math.max(1e-9, ...stages.map((s) => t[s]));
    const total = stages.reduce((sum, s) => sum + t[s], 0);
    return rows(stages.map((s) => [s, `<span class="timing" style="width:${Math.round(120 * t[s] / longest)}px">`
      + `</span>${t[s].toFixed(3)} s`]).concat([["total", `<b>${total.toFixed(3)} s</b>`]]));
  }

  // The per-layer series of the quantized model against its reference (float, in dB; or
  // the simulation, in output steps), one point per layer, the threshold dashed and the
  // first layer beyond it marked. Records of older runs have sqnr_db / limit_db.
  function divergence(d) {
    if (!d) return "";
    if (d.error) return `<h3>First divergence</h3><p>not localized: ${esc(d.error)}</p>`;
    const layers = d.layers || [];
    const head = `<h3>First divergence</h3><p class="divergence">${esc(d.summary || "")}</p>`;
    if (!layers.length) return head;
    const unit = d.unit || "dB", limitValue = d.limit ?? d.limit_db;
    const w = 420, h = 160, pad = 30;
    const values = layers.map((l) => Math.min(l[1], 120));
    const top = Math.max(limitValue || 0, ...values) + 5, bottom = Math.min(0, limitValue || 0, ...values) - 5;
    const x = (i) => pad + (layers.length === 1 ? (w - 2 * pad) / 2 : i * (w - 2 * pad) / (layers.length - 1));
    const y = (v) => h - pad - (v - bottom) * (h - 2 * pad) / (top - bottom);
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const dots = layers.map((l, i) => `<circle cx="${x(i).toFixed(1)}" cy="${y(values[i]).toFixed(1)}" r="3.5"`
      + ` class="${l[0] === d.first ? "first" : ""}"><title>${esc(l[0])}: ${l[1].toFixed(1)} ${unit}</title></circle>`).join("");
    const limit = limitValue == null ? "" : `<line x1="${pad}" x2="${w - pad}" y1="${y(limitValue).toFixed(1)}"`
      + ` y2="${y(limitValue).toFixed(1)}" class="limit"><title>threshold ${limitValue} ${unit}</title></line>`;
    const labels = layers.map((l, i) => `<text x="${x(i).toFixed(1)}" y="${h - 8}" transform="rotate(-25 ${x(i).toFixed(1)}`
      + ` ${h - 8})">${esc(l[0].length > 14 ? "…" + l[0].slice(-13) : l[0])}</text>`).join("");
    const against = d.against === "simulation" ? "distance from the simulation" : "SQNR against float";
    return head + `<svg class="sqnr-curve" viewBox="0 0 ${w} ${h + 20}" width="${w}" role="img"`
      + ` aria-label="per-layer ${against}"><text x="2" y="12">${esc(unit)}</text>${limit}<polyline points="${points}"/>`
      + `${dots}${labels}</svg>`;
  }

  function show(i) {
    if (!("DecompressionStream" in window)) {
      const panel = document.getElementById("record");
      panel.innerHTML = "<p>This browser cannot read the page's compressed records (no DecompressionStream); "
        + "report.csv and the run's cells*.jsonl hold them.</p>";
      panel.hidden = false;
      return;
    }
    records().then((all) => showRecord(all[i], i));
  }

  function showRecord(r, i) {
    const m = r.metrics || {};
    const keys = METRICS.filter((k) => k in m).concat(Object.keys(m).filter((k) => !METRICS.includes(k)));
    const expected = r.expected || {};
    const claim = r.documented;
    const command = r.nodeid ? `pytest '${r.nodeid}'` : "";
    const ops = r.op_counts ? Object.entries(r.op_counts).map(([kind, counts]) =>
      `${esc(kind)}: ${Object.entries(counts || {}).map(([op, n]) => `${esc(op)} ×${n}`).join(", ") || "none"}`)
      .join("<br>") : "";
    const panel = document.getElementById("record");
    panel.innerHTML = `<button class="close" title="close (Esc)">✕</button><h2>${esc(r.case_id)}</h2>
      <p><span class="chip s-${esc(r.status)}">${SYMBOLS[r.status] || ""} ${esc(r.status)}</span>
      ${r.stage ? `at stage <b>${esc(r.stage)}</b>` : ""} · ${esc(CONFIG.verdicts[r.verdict] || r.verdict || "no verdict")}</p>
      ${r.error_type ? `<pre>${esc(r.error_type)}: ${esc(r.error_message)}</pre>` : ""}
      ${r.reason ? `<p>${link(r.reason)}</p>` : ""}
      ${command ? `<p>Rerun it alone: <code class="cmd">${esc(command)}</code> <button class="copy">copy</button></p>` : ""}
      <h3>Cell</h3>${rows([["kind", esc(r.kind)], ["model", esc(r.model)], ["mode", esc(r.mode)],
        ["scheme", esc(r.scheme)], ["qspec", esc(r.qspec)], ["backend", esc(r.backend)], ["seed", esc(r.seed)]])}
      <h3>Metrics</h3>${keys.length ? rows(keys.map((k) => [k, number(k, m[k])])) : "<p><i>none recorded</i></p>"}
      <h3>Timings</h3>${timings(r.timings)}
      <h3>Artifact</h3>${rows([["quantized ops", esc(r.quantized_ops)], ["float ops", esc(r.float_ops)],
        ["ops", ops], ["simulation", esc(r.simulation)]])}
      ${divergence(r.divergence)}
      <h3>Expected</h3>${rows([["status", esc(expected.status || "pass")], ["reason", link(expected.reason)],
        ["source", link(expected.source)]])}
      ${claim ? `<h3>Documented</h3>${rows([["claim", esc(claim.status) + ": " + esc(claim.claim)],
        ["source", link(claim.source)]])}` : ""}
      ${r.traceback ? `<details><summary>traceback</summary><pre>${esc(r.traceback)}</pre></details>` : ""}`;
    panel.hidden = false;
    panel.scrollTop = 0;
    $$("tr.selected").forEach((tr) => tr.classList.remove("selected"));
    $$(`tr[data-i="${i}"]`).forEach((tr) => tr.classList.add("selected"));
    panel.querySelector(".close").addEventListener("click", () => { panel.hidden = true; });
    const copy = panel.querySelector(".copy");
    if (copy) copy.addEventListener("click", () => copyText(command, copy));
  }

  function copyText(text, button) {
    const done = () => { button.textContent = "copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else fallbackCopy(text, done);
  }

  function fallbackCopy(text, done) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { area.remove(); }
  }

  function jumpToCells(td) {
    Object.keys(filters).forEach((axis) => { if (axis !== "model" && axis !== "kind") setFilter(axis, ""); });
    ["mode", "scheme", "backend"].forEach((axis) => setFilter(axis, td.dataset[axis]));
    apply();
    cellRows();
    document.getElementById("cells").scrollIntoView();
  }

  function onClick(event) {
    const target = event.target;
    const filter = target.closest("[data-filter]");
    if (filter) {
      setFilter(filter.dataset.filter, filter.dataset.value);
      apply();
      return;
    }
    const th = target.closest("table.sortable thead th");
    if (th) return sortBy(th);
    const tally = target.closest("td.tally[data-cells]");
    if (tally) return jumpToCells(tally);
    const chip = target.closest("[data-i]");
    if (chip && !target.closest("a, button, code")) show(+chip.dataset.i);
  }

  function reset() {
    Object.keys(filters).forEach((axis) => setFilter(axis, ""));
    search = "";
    document.getElementById("search").value = "";
    apply();
  }

  function compareOnly() {
    const only = document.getElementById("only-differing");
    const box = document.getElementById("search");
    const update = () => {
      document.body.classList.toggle("only-differing", only.checked);
      const text = box.value.trim().toLowerCase();
      $$("table.compare tbody tr").forEach((tr) => { tr.hidden = !!text && !tr.textContent.toLowerCase().includes(text); });
    };
    only.addEventListener("change", update);
    box.addEventListener("input", update);
  }

  function start() {
    document.addEventListener("click", onClick);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") document.getElementById("record").hidden = true;
    });
    const bar = document.getElementById("bar");
    const measure = () => document.documentElement.style.setProperty("--bar", bar ? `${bar.offsetHeight}px` : "0px");
    measure();
    window.addEventListener("resize", measure);
    if (document.getElementById("only-differing")) compareOnly();
    document.body.dataset.ready = "yes";
    if (!bar) return;
    $$("select[data-axis]").forEach((select) => select.addEventListener("change", () => {
      filters[select.dataset.axis] = select.value;
      apply();
    }));
    document.getElementById("search").addEventListener("input", (event) => {
      search = event.target.value.trim().toLowerCase();
      apply();
    });
    document.getElementById("reset").addEventListener("click", reset);
    // A fresh page shows every cell as rendered; the first filter applies itself.
    const cells = document.getElementById("cells");
    const later = [[cells, () => cellRows()]].concat(
      $$("template.lazy").map((template) => [template.parentNode, () => unfold(template)]));
    later.forEach(([section, show]) => {
      if (!section) return;
      if (!("IntersectionObserver" in window)) { show(); return; }
      const near = new IntersectionObserver((seen) => {
        if (seen.some((entry) => entry.isIntersecting)) { near.disconnect(); show(); }
      }, { rootMargin: "100% 0px" });
      near.observe(section);
    });
  }

  start();
})();
