// attnconf report page: draws the matrices and benchmark results embedded as JSON in #report-data.
// No network, no library: everything the page shows comes from that object (written by attnconf/report.py).
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const STR = DATA.strings;
  const TITLE = Object.fromEntries(DATA.contracts);
  const SPEC_ORDER = Object.fromEntries(DATA.contracts.map(([cid], i) => [cid, i]));
  const LABEL = { failed: "FAIL", xfailed: "XFAIL", passed: "PASS", skipped: "SKIP" };

  // ---- helpers ---------------------------------------------------------------------------------------------

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") node.style.cssText = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of [].concat(children || [])) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function option(value, text, selected) {
    const o = el("option", { value: String(value), text: text });
    o.selected = !!selected;
    return o;
  }

  function fmt(value, digits) {
    // three significant digits, no exponent for the usual ranges (0.0123, 1.23, 312)
    if (value === null || value === undefined || value === "" || Number.isNaN(value)) return "–";
    if (typeof value === "string") return value;
    if (value === 0) return "0";
    const magnitude = Math.floor(Math.log10(Math.abs(value)));
    return value.toFixed(Math.max(0, (digits || 3) - 1 - magnitude));
  }

  function percent(change) {
    return (change >= 0 ? "+" : "−") + Math.abs(change * 100).toFixed(1) + " %";
  }

  function ratioText(ratio) {
    return typeof ratio === "number" ? ratio.toFixed(2) : String(ratio);
  }

  // PASS cells: pale green at err/bound 0, towards yellow-green and darker as err/bound nears the bound (1)
  function passColor(ratio) {
    if (typeof ratio !== "number") return passColor(typeof ratio === "string" ? 1 : 0);  // no ratio: an exact check
    const r = Math.max(0, Math.min(1, ratio));
    return `hsl(${Math.round(135 - 60 * r)}, ${Math.round(45 + 25 * r)}%, ${Math.round(92 - 34 * r)}%)`;
  }

  function matrixLabel(m) {
    return `${m.device_name} · torch ${m.torch} · ${m.path}` + (m.date ? ` (${m.date})` : "");
  }

  function quote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  function reproduce(m, impl, nodeid) {
    return `python -m pytest ${quote(nodeid)} --impl ${quote(impl)} --attnconf-seed ${m.seed} ` +
      `--device ${m.device === "cuda" ? "cuda" : "cpu"}`;
  }

  function splitNodeid(nodeid) {
    const open = nodeid.indexOf("[");
    const base = open < 0 ? nodeid : nodeid.slice(0, open);
    const theCase = open < 0 ? "" : nodeid.slice(open + 1, nodeid.endsWith("]") ? -1 : undefined);
    return { test: base.replace(/^conformance\//, ""), case: theCase };
  }

  // ---- one matrix ------------------------------------------------------------------------------------------

  function cellKey(cell) {
    return cell ? cell.o + (cell.f.length ? " " + cell.f.join(",") : "") : "none";
  }

  function shortText(cell) {
    // the compare view's half cells: outcome, failure classes and err/bound, without the tensor and counts
    return LABEL[cell.o] + (cell.f.length ? " " + cell.f.join(",") : "") +
      (cell.o === "passed" && cell.r !== null ? " " + ratioText(cell.r) : "");
  }

  function fillCell(td, m, impl, cid, short) {
    const cell = m.cells[impl + " " + cid];
    td.dataset.outcome = cell ? cell.o : "none";
    td.classList.add(cell ? "o-" + cell.o : "o-none");
    if (cell && cell.o === "passed") td.style.background = passColor(cell.r);
    if (cell && cell.r !== null) td.dataset.ratio = String(cell.r);
    td.textContent = cell ? (short ? shortText(cell) : cell.t) : "–";
    td.title = cell ? `${impl} · ${cid}: ${cell.t}; ${cell.k.length} test(s)` : `${impl} · ${cid}: not tested`;
  }

  function drawMatrix(table, m, shown) {
    table.replaceChildren();
    const head = el("tr", {}, [el("th", { class: "contract", text: "contract" }),
      ...shown.map((impl) => el("th", { class: "impl", scope: "col", text: impl }))]);
    table.append(el("thead", {}, head));
    const body = el("tbody");
    for (const cid of m.contracts) {
      const row = el("tr", { dataset: { contract: cid } }, el("th", { class: "contract", scope: "row", title: TITLE[cid] || "" },
        [el("b", { text: cid }), el("span", { text: TITLE[cid] || "" })]));
      for (const impl of shown) {
        const td = el("td", { class: "cell", tabindex: "0", role: "button", dataset: { impl: impl, contract: cid } });
        fillCell(td, m, impl, cid);
        row.append(td);
      }
      body.append(row);
    }
    table.append(body);
  }

  function openOnActivate(table, details) {
    const open = (event) => {
      const td = event.target.closest("td[data-impl]");
      if (td) details(td.dataset.impl, td.dataset.contract);
    };
    table.addEventListener("click", open);
    table.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(event); }
    });
  }

  // ---- a cell's tests --------------------------------------------------------------------------------------

  function testsList(m, impl, cid) {
    // one block per test: outcome, test id and case, err/bound per tensor, reason, the command that reproduces it
    const cell = m.cells[impl + " " + cid];
    if (!cell) return el("p", { class: "note", text: "Not tested in this matrix." });
    return el("div", { class: "tests" }, cell.k.map((index) => {
      const [nodeid, outcome, reason, failure, ratios] = m.records[index];
      const id = STR[nodeid];
      const parts = splitNodeid(id);
      const errs = Object.entries(ratios).sort((a, b) => a[0].localeCompare(b[0]))
        .map(([tensor, ratio]) => `${tensor} ${ratioText(ratio)}`).join(" · ");
      return el("div", { class: "test", dataset: { nodeid: id, outcome: outcome } }, [
        el("div", { class: "head" }, [
          el("span", { class: "badge o-" + outcome, text: LABEL[outcome] + (failure ? " " + failure : "") }),
          el("code", { class: "test-id", text: parts.test }),
          parts.case ? el("span", { class: "case" }, ["case ", el("code", { text: parts.case })]) : null]),
        el("div", { class: "ratios", text: "err/bound: " + (errs || "– (no tolerance check)") }),
        STR[reason] ? el("div", { class: "reason", text: STR[reason] }) : null,
        el("code", { class: "cmd", title: "reproduce, from a clone's root", text: reproduce(m, impl, id) }),
      ]);
    }));
  }

  function showDetails(sides, impl, cid) {
    const dialog = document.getElementById("details");
    const body = document.getElementById("details-body");
    body.replaceChildren(el("h3", { id: "details-title", text: `${impl} · ${cid} ${TITLE[cid] || ""}` }));
    for (const [label, m] of sides) {
      const cell = m.cells[impl + " " + cid];
      body.append(el("h4", { text: (label ? label + ": " : "") + matrixLabel(m) }),
        el("p", { class: "summary", text: cell ? `${cell.t} · ${cell.k.length} test(s)` +
          (cell.r !== null ? ` · largest err/bound ${ratioText(cell.r)} (${cell.w})` : "") : "" }),
        testsList(m, impl, cid));
    }
    body.append(el("p", { class: "note", text: "Each command reproduces its test from a clone's root. Inputs derive from --attnconf-seed, the test and its case only, " +
      "so the command draws the same numbers on any machine. In an installed package the test files lie under " +
      "attnconf/conformance/ (run with --pyargs attnconf.conformance and -k)." }));
    if (!dialog.open) dialog.showModal();
    dialog.scrollTop = 0;
  }

  // ---- the matrix view: device × torch × run × implementations ----------------------------------------------

  function matrixView() {
    const table = document.getElementById("matrix-table");
    if (!table || !DATA.matrices.length) return;
    const controls = document.getElementById("matrix-controls");
    const devices = [...new Set(DATA.matrices.map((m) => m.device_name))];
    const device = el("select", { id: "select-device" }, devices.map((d) => option(d, d)));
    const torch = el("select", { id: "select-torch" });
    const run = el("select", { id: "select-run" });
    const impls = el("div", { class: "impls", id: "select-impls" });
    const hidden = new Set();
    let current = null;

    controls.append(el("label", {}, ["device", device]), el("label", {}, ["torch", torch]),
      el("label", {}, ["matrix", run]), el("span", {}, "implementations:"), impls,
      el("button", { type: "button", text: "all", onclick: () => { hidden.clear(); draw(); } }),
      el("button", { type: "button", text: "none", onclick: () => { current.impls.forEach((i) => hidden.add(i)); draw(); } }));

    function fillTorch() {
      const versions = [...new Set(DATA.matrices.filter((m) => m.device_name === device.value).map((m) => m.torch))];
      torch.replaceChildren(...versions.map((v) => option(v, v)));
      fillRun();
    }
    function fillRun() {
      const found = DATA.matrices.map((m, i) => [m, i])
        .filter(([m]) => m.device_name === device.value && m.torch === torch.value);
      run.replaceChildren(...found.map(([m, i]) => option(i, `${m.path}${m.date ? " (" + m.date + ")" : ""}` +
        `${m.main ? "" : " · partial run"}`)));
      pick();
    }
    function pick() {
      current = DATA.matrices[Number(run.value)];
      draw();
    }
    function draw() {
      const m = current;
      impls.replaceChildren(...m.impls.map((impl) => {
        const box = el("input", { type: "checkbox", value: impl });
        box.checked = !hidden.has(impl);
        box.addEventListener("change", () => { if (box.checked) hidden.delete(impl); else hidden.add(impl); draw(); });
        return el("label", {}, [box, impl]);
      }));
      const shown = m.impls.filter((impl) => !hidden.has(impl));
      drawMatrix(table, m, shown);
      const counts = {};
      table.querySelectorAll("td.cell").forEach((td) => { counts[td.dataset.outcome] = (counts[td.dataset.outcome] || 0) + 1; });
      const worst = shown.flatMap((impl) => m.contracts.map((cid) => m.cells[impl + " " + cid]))
        .filter((c) => c && c.o === "passed" && typeof c.r === "number").reduce((a, c) => Math.max(a, c.r), -1);
      const parts = ["failed", "xfailed", "passed", "skipped", "none"].filter((o) => counts[o])
        .map((o) => `${counts[o]} ${o === "none" ? "not tested" : LABEL[o]}`);
      document.getElementById("matrix-summary").textContent =
        `${matrixLabel(m)}: triton ${m.triton || "–"}` + (m.flash_attn ? `, flash-attn ${m.flash_attn}` : "") +
        `, seed ${m.seed}. ${shown.length} implementations × ${m.contracts.length} contracts: ${parts.join(" · ")}` +
        (worst >= 0 ? `; largest err/bound of a PASS ${worst.toFixed(2)}.` : ".") +
        (m.older_ratio ? " Its ratios follow the tolerance's older form, error / (reference error + floor), which " +
          "passed at <= 2 (outputs) or 3 (gradients): PASS cells above 1 are passes under that rule (the matrix's " +
          ".md header says so)." : "");
      const notRun = Object.entries(m.not_run);
      document.getElementById("matrix-notrun").replaceChildren(...(notRun.length ? [
        el("h4", { text: "Not run here" }),
        el("ul", {}, notRun.map(([impl, reason]) => el("li", {}, [el("b", { text: impl }), ": " + reason]))),
      ] : []));
    }
    device.addEventListener("change", fillTorch);
    torch.addEventListener("change", fillRun);
    run.addEventListener("change", pick);
    openOnActivate(table, (impl, cid) => showDetails([["", current]], impl, cid));
    fillTorch();
  }

  function legend() {
    const box = document.getElementById("legend");
    if (!box) return;
    const stops = [0, 0.25, 0.5, 0.75, 1].map((r) => passColor(r)).join(", ");
    const item = (outcome, swatch, text) => el("span", { class: "item", dataset: { outcome: outcome } }, [swatch, text]);
    box.append(
      item("passed", el("span", { class: "swatch gradient", style: `background: linear-gradient(to right, ${stops})` }),
        "PASS, err/bound 0 → 1 (no number: an exact check)"),
      item("failed", el("span", { class: "swatch o-failed" }), "FAIL + class"),
      item("xfailed", el("span", { class: "swatch o-xfailed" }), "XFAIL"),
      item("skipped", el("span", { class: "swatch o-skipped" }), "SKIP"),
      item("none", el("span", { class: "swatch o-none" }), "– not tested"),
      el("span", { class: "note", text: "(p/n): passed of the tests that ran, where not all passed." }));
  }

  // ---- two matrices side by side ---------------------------------------------------------------------------

  function compareView() {
    const table = document.getElementById("compare-table");
    if (!table || DATA.matrices.length < 2) return;
    const labels = DATA.matrices.map((m, i) => option(i, matrixLabel(m)));
    const a = el("select", { id: "compare-a" }, labels.map((o) => o.cloneNode(true)));
    const b = el("select", { id: "compare-b" }, labels);
    const mains = DATA.matrices.map((m, i) => [m, i]).filter(([m]) => m.main);
    a.value = String(mains.length ? mains[0][1] : 0);
    const other = DATA.matrices.map((m, i) => [m, i]).find(([m, i]) =>
      String(i) !== a.value && m.main && m.device_name !== DATA.matrices[Number(a.value)].device_name);
    b.value = String(other ? other[1] : (a.value === "0" ? 1 : 0));
    const onlyDiff = el("input", { type: "checkbox", id: "compare-only-diff" });
    const common = el("input", { type: "checkbox", id: "compare-common" });
    common.checked = true;
    document.getElementById("compare-controls").append(el("label", {}, ["A", a]), el("label", {}, ["B", b]),
      el("label", {}, [common, "only implementations in both"]), el("label", {}, [onlyDiff, "only rows that differ"]));

    function draw() {
      const ma = DATA.matrices[Number(a.value)], mb = DATA.matrices[Number(b.value)];
      const impls = common.checked ? ma.impls.filter((impl) => mb.impls.includes(impl)).sort()
        : [...new Set([...ma.impls, ...mb.impls])].sort();
      const ids = [...new Set([...ma.contracts, ...mb.contracts])]
        .sort((x, y) => (SPEC_ORDER[x] ?? 1e9) - (SPEC_ORDER[y] ?? 1e9) || x.localeCompare(y));
      table.replaceChildren(el("thead", {}, el("tr", {}, [el("th", { class: "contract", text: "contract (A | B)" }),
        ...impls.map((impl) => el("th", { class: "impl", text: impl }))])));
      const body = el("tbody");
      let differ = 0, total = 0;
      for (const cid of ids) {
        const row = el("tr", { dataset: { contract: cid } }, el("th", { class: "contract", scope: "row", title: TITLE[cid] || "" },
          [el("b", { text: cid }), el("span", { text: TITLE[cid] || "" })]));
        let rowDiffers = false;
        for (const impl of impls) {
          const ca = ma.cells[impl + " " + cid], cb = mb.cells[impl + " " + cid];
          const differs = cellKey(ca) !== cellKey(cb);
          const td = el("td", { class: "pair" + (differs ? " differs" : ""), tabindex: "0", role: "button",
            dataset: { impl: impl, contract: cid, differs: differs ? "1" : "0", a: cellKey(ca), b: cellKey(cb) } });
          for (const [side, m] of [["a", ma], ["b", mb]]) {
            const half = el("span", { class: "half side-" + side });
            fillCell(half, m, impl, cid, true);
            td.append(half);
          }
          total += 1;
          if (differs) { differ += 1; rowDiffers = true; }
          row.append(td);
        }
        row.classList.add(rowDiffers ? "differs" : "same");
        if (!rowDiffers && onlyDiff.checked) row.classList.add("hide");
        body.append(row);
      }
      table.append(body);
      document.getElementById("compare-summary").textContent =
        `${differ} of ${total} cells differ (outcome or failure classes) between A: ${matrixLabel(ma)} and B: ${matrixLabel(mb)}.`;
      document.getElementById("compare-summary").dataset.differ = String(differ);
      table._sides = [["A", ma], ["B", mb]];
    }
    for (const control of [a, b, onlyDiff, common]) control.addEventListener("change", draw);
    openOnActivate(table, (impl, cid) => showDetails(table._sides, impl, cid));
    draw();
  }

  // ---- benchmarks ------------------------------------------------------------------------------------------

  // A table whose header sorts it: columns [{key, label, num, fmt}], rows objects; rowClass(row) for highlighting.
  function sortableTable(columns, rows, options) {
    const opts = options || {};
    const table = el("table", { class: "sortable" + (opts.class ? " " + opts.class : "") });
    const headRow = el("tr");
    const body = el("tbody");
    let sortKey = opts.sortKey || null, descending = !!opts.descending;
    function draw() {
      headRow.replaceChildren(...columns.map((c) => el("th", { dataset: { key: c.key },
        "aria-sort": c.key === sortKey ? (descending ? "descending" : "ascending") : "none", text: c.label,
        onclick: () => { descending = c.key === sortKey ? !descending : !!c.num; sortKey = c.key; draw(); } })));
      const sorted = rows.slice();
      if (sortKey) {
        const column = columns.find((c) => c.key === sortKey);
        sorted.sort((x, y) => {
          const u = x[sortKey], v = y[sortKey];
          const missingU = u === null || u === undefined, missingV = v === null || v === undefined;
          if (missingU || missingV) return missingU - missingV;  // missing values last, either way
          const order = column.num ? u - v : String(u).localeCompare(String(v), undefined, { numeric: true });
          return descending ? -order : order;
        });
      }
      body.replaceChildren(...sorted.map((row) => el("tr", { class: opts.rowClass ? opts.rowClass(row) : "",
        dataset: { name: row.name } }, columns.map((c) => el("td", { class: (c.num ? "num " : "") + "col-" + c.key,
          text: c.fmt ? c.fmt(row[c.key], row) : (row[c.key] ?? "–") })))));
    }
    table.append(el("thead", {}, headRow), body);
    draw();
    return table;
  }

  const CASE_COLUMNS = [
    { key: "impl", label: "implementation" },
    { key: "layout", label: "layout" },
    { key: "pass", label: "pass" },
    { key: "mask", label: "mask" },
    { key: "dtype", label: "dtype" },
    { key: "head_dim", label: "D", num: true },
    { key: "batch", label: "B", num: true },
    { key: "heads", label: "H", num: true },
    { key: "seqlen", label: "S", num: true },
  ];

  function caseRow(s, id) {
    const c = s.cases[id];
    return { name: STR[Number(id)], impl: c.impl, layout: c.layout, pass: c.pass, mask: c.causal ? "causal" : "full",
      dtype: c.dtype, head_dim: c.head_dim, batch: c.batch, heads: c.heads, seqlen: c.seqlen };
  }

  function runsTable(s, box) {
    const base = s.runs[s.baseline];
    const rows = s.runs.map((run, i) => {
      const common = Object.keys(run.results).filter((id) => id in base.results);
      const slower = common.filter((id) => run.results[id][s.stat] / base.results[id][s.stat] - 1 > s.threshold);
      return { name: run.title, run: run.title, date: run.datetime.slice(0, 19).replace("T", " "), commit: run.commit,
        load: run.load, results: Object.keys(run.results).length,
        impls: [...new Set(Object.keys(run.results).map((id) => s.cases[id].impl))].sort().join(", "),
        verdict: i === s.baseline ? "baseline" : `${slower.length} of ${common.length} slower by > ${Math.round(s.threshold * 100)}%` };
    });
    box.replaceChildren(sortableTable([
      { key: "run", label: "run" }, { key: "date", label: "date (UTC)" }, { key: "commit", label: "commit" },
      { key: "load", label: "host load", num: true, fmt: (v) => (v === null || v === undefined ? "–" : v.toFixed(1)) },
      { key: "results", label: "results", num: true }, { key: "impls", label: "implementations" },
      { key: "verdict", label: `${s.stat} vs ${base.title}` },
    ], rows));
  }

  function resultsTable(s, article) {
    const controls = article.querySelector(".bench-results-controls");
    const box = article.querySelector(".bench-results");
    const run = el("select", { class: "results-run" }, s.runs.map((r, i) => option(i, r.title, i === s.shown)));
    const filter = el("input", { type: "search", class: "results-filter", placeholder: "filter: impl, pass, S2048…" });
    controls.append(el("label", {}, ["run", run]), el("label", {}, ["filter", filter]),
      el("span", { class: "note", text: "click a column to sort; ‡ host-bound (time follows the host CPU)" }));
    function draw() {
      const r = s.runs[Number(run.value)];
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      const rows = Object.entries(r.results).map(([id, res]) => ({ ...caseRow(s, id), median_ms: res.median * 1e3,
        mean_ms: res.mean * 1e3, rounds: res.rounds, tflops: res.tflops,
        peak_mib: res.peak === null || res.peak === undefined ? null : res.peak / 1048576, host_bound: res.host_bound }))
        .filter((row) => words.every((w) => row.name.toLowerCase().includes(w)));
      box.replaceChildren(sortableTable([CASE_COLUMNS[0],
        { key: "tflops", label: "TFLOP/s", num: true, fmt: (v) => fmt(v) },
        { key: "median_ms", label: "median (ms)", num: true, fmt: (v, row) => fmt(v) + (row.host_bound ? " ‡" : "") },
        { key: "peak_mib", label: "peak memory (MiB)", num: true, fmt: (v) => fmt(v) },
        ...CASE_COLUMNS.slice(1),
        { key: "mean_ms", label: "mean (ms)", num: true, fmt: (v) => fmt(v) },
        { key: "rounds", label: "rounds", num: true },
      ], rows, { class: "results-table", sortKey: "tflops", descending: true }));
    }
    run.addEventListener("change", draw);
    filter.addEventListener("input", draw);
    draw();
  }

  function runCompare(s, article) {
    const controls = article.querySelector(".bench-compare-controls");
    const box = article.querySelector(".bench-compare");
    const summary = article.querySelector(".bench-compare-summary");
    if (s.runs.length < 2) {
      summary.textContent = "One saved run only: nothing to compare with yet.";
      return;
    }
    const a = el("select", { class: "compare-run-a" }, s.runs.map((r, i) => option(i, r.title, i === s.baseline)));
    const b = el("select", { class: "compare-run-b" },
      s.runs.map((r, i) => option(i, r.title, i === (s.baseline === s.runs.length - 1 ? 0 : s.runs.length - 1))));
    const threshold = el("input", { type: "number", class: "compare-threshold", min: "0", step: "1",
      value: String(Math.round(s.threshold * 100)) });
    const onlyFlagged = el("input", { type: "checkbox", class: "compare-only" });
    controls.append(el("label", {}, ["baseline", a]), el("label", {}, ["against", b]),
      el("label", {}, ["threshold (%)", threshold]), el("label", {}, [onlyFlagged, "only beyond the threshold"]));
    function draw() {
      const ra = s.runs[Number(a.value)], rb = s.runs[Number(b.value)];
      const limit = Number(threshold.value) / 100;
      const rows = Object.keys(rb.results).filter((id) => id in ra.results).map((id) => {
        const old = ra.results[id][s.stat], now = rb.results[id][s.stat];
        return { ...caseRow(s, id), a_ms: old * 1e3, b_ms: now * 1e3, change: now / old - 1 };
      });
      const slower = rows.filter((row) => row.change > limit), faster = rows.filter((row) => row.change < -limit);
      const shown = onlyFlagged.checked ? rows.filter((row) => Math.abs(row.change) > limit) : rows;
      summary.textContent = `${rb.title} against ${ra.title}, ${rows.length} benchmarks in both, judged on the ` +
        `${s.stat}: ${slower.length} slower by more than ${threshold.value} % (red), ${faster.length} faster by ` +
        `more than ${threshold.value} % (green)` +
        (slower.length ? `; worst ${percent(Math.max(...slower.map((row) => row.change)))}.` : ".");
      summary.dataset.regressions = String(slower.length);
      box.replaceChildren(sortableTable([CASE_COLUMNS[0],
        { key: "change", label: "change", num: true, fmt: (v) => percent(v) },
        { key: "a_ms", label: `baseline ${s.stat} (ms)`, num: true, fmt: (v) => fmt(v) },
        { key: "b_ms", label: `against (ms)`, num: true, fmt: (v) => fmt(v) },
        ...CASE_COLUMNS.slice(1),
      ], shown, { class: "compare-table", sortKey: "change", descending: true,
        rowClass: (row) => (row.change > limit ? "regression" : row.change < -limit ? "improvement" : "") }));
    }
    for (const control of [a, b, onlyFlagged]) control.addEventListener("change", draw);
    threshold.addEventListener("input", draw);
    draw();
  }

  function benchmarkView() {
    for (const s of DATA.benchmarks) {
      const article = document.querySelector(`article.storage[data-storage="${CSS.escape(s.storage)}"]`);
      if (!article) continue;
      runsTable(s, article.querySelector(".bench-runs"));
      resultsTable(s, article);
      runCompare(s, article);
    }
  }

  try {
    legend();
    matrixView();
    compareView();
    benchmarkView();
    document.documentElement.dataset.ready = "1";
  } catch (error) {
    const box = document.getElementById("page-error");
    box.hidden = false;
    box.textContent = "The page's script failed: " + error;
    document.documentElement.dataset.ready = "error";
    throw error;
  }
})();
