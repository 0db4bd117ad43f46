// The reference dashboard page: reads through the persisted GET operations of the
// manifest (as the mobile app does), live through the DashboardUpdates and CohortUpdates
// subscriptions (graphql-transport-ws, vendored graphql-ws). No framework, no build step.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const OPS = config.operations;
  const TOKEN_KEY = "dashboard.token";
  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    pageCursors: [null], // `after` of each page visited
    page: 0,
    detailId: null,
    client: null,
    stopDashboard: null,
    stopDetail: null,
    lastRows: new Map(), // cohort id -> computedAt shown
  };

  // --- formatting (tests/test_dashboard_page.py mirrors these rules) ---------------------
  const fmt = {
    int: (v) => (v == null ? "—" : String(v)),
    rate: (v) => (v == null ? "—" : `${(v * 100).toFixed(1)} %`),
    avg: (v) => (v == null ? "—" : v.toFixed(1)),
    text: (v) => (v == null || v === "" ? "—" : String(v)),
    lower: (v) => (v == null ? "—" : String(v).toLowerCase()),
    list: (v) => (v && v.length ? v.join(" ") : "—"),
    instant: (v) => (v ? v.slice(0, 19).replace("T", " ") + " UTC" : "—"),
  };
  const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);

  const SUMMARY_KPIS = [
    ["Cohorts", "totalCohorts", "int"],
    ["Active cohorts", "activeCohorts", "int"],
    ["Active programs", "activePrograms", "int"],
    ["Seats", "seats.total", "int"],
    ["Seats used", "seats.used", "int"],
    ["Seat utilization", "seats.utilization", "rate"],
    ["Average readiness", "averageReadiness", "avg"],
    ["Completion rate", "completionRate", "rate"],
    ["Mentor coverage", "mentorCoverage", "rate"],
    ["Session completion", "sessionCompletionRate", "rate"],
    ["Critical alerts", "alertCounts.critical", "int"],
    ["Warnings", "alertCounts.warning", "int"],
  ];
  const COLUMNS = [
    ["name", "text"],
    ["status", "lower"],
    ["mode", "lower"],
    ["track.name", "text"],
    ["program.name", "text"],
    ["startDate", "text"],
    ["seats.used", "int"],
    ["seats.total", "int"],
    ["seats.utilization", "rate"],
    ["enrollment.enrolled", "int"],
    ["enrollment.active", "int"],
    ["enrollment.completionRate", "rate"],
    ["mentorship.mentorCoverage", "rate"],
    ["mentorship.sessionCompletionRate", "rate"],
    ["readiness.average", "avg"],
    ["readiness.ready", "int"],
    ["flags", "list"],
    ["computedAt", "instant"],
  ];
  const NUMERIC = new Set(["int", "rate", "avg"]);
  const DETAIL_KPIS = [
    ["Seats used", "seats.used", "int"],
    ["Seats", "seats.total", "int"],
    ["Seat utilization", "seats.utilization", "rate"],
    ["Enrolled", "enrollment.enrolled", "int"],
    ["Completion rate", "enrollment.completionRate", "rate"],
    ["Mentors", "mentorship.mentorCount", "int"],
    ["Mentor coverage", "mentorship.mentorCoverage", "rate"],
    ["Session completion", "mentorship.sessionCompletionRate", "rate"],
    ["Average readiness", "readiness.average", "avg"],
    ["Approval rate", "missionFunnel.approvalRate", "rate"],
    ["Published portfolios", "portfolio.publishedRate", "rate"],
  ];

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }
  const svgEl = (tag, attrs = {}) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };

  function kpi(label, path, kind, source, attr) {
    const value = get(source, path);
    return el("div", {}, el("dt", { text: label }),
      el("dd", { [attr]: path, "data-value": JSON.stringify(value ?? null), text: fmt[kind](value) }));
  }

  // --- the API ------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(errors) {
      super(errors.map((e) => e.message).join("; "));
      this.errors = errors;
    }
  }
  const persistedExtension = (name) => ({ persistedQuery: { version: 1, sha256Hash: OPS[name].sha256 } });

  async function read(name, variables = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    const params = new URLSearchParams({
      operationName: name,
      variables: JSON.stringify(variables),
      extensions: JSON.stringify(persistedExtension(name)),
    });
    // Revalidated every time (If-None-Match: a 304 when nothing changed): an answer the
    // browser keeps for its max-age may be older than the update that asked for this read.
    let response = await fetch(`/graphql?${params}`, { headers, cache: "no-cache" });
    let body = await response.json();
    const code = body.errors && body.errors[0].extensions && body.errors[0].extensions.code;
    if (code === "PERSISTED_QUERY_NOT_FOUND") {
      // Unknown to this gateway (no manifest): registered once, as Apollo's link does.
      response = await fetch("/graphql", {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json" },
        body: JSON.stringify({ query: OPS[name].body, operationName: name, variables,
                               extensions: persistedExtension(name) }),
      });
      body = await response.json();
    }
    if (response.status === 401) {
      signOut(body.errors ? body.errors[0].message : "Signed out.");
      throw new ApiError(body.errors || []);
    }
    if (body.errors) throw new ApiError(body.errors);
    return body.data;
  }

  function subscribe(name, variables, onData) {
    return state.client.subscribe(
      { query: OPS[name].body, operationName: name, variables, extensions: persistedExtension(name) },
      {
        next: (result) => (result.errors ? showError(new ApiError(result.errors)) : onData(result.data)),
        error: (error) => {
          if (Array.isArray(error)) showError(new ApiError(error));
        },
        complete: () => {},
      },
    );
  }

  // --- connection -----------------------------------------------------------------------
  function setConnection(kind, text) {
    $("connection").dataset.state = kind;
    $("connection-text").textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    state.client = graphqlWs.createClient({
      url: `${scheme}${location.host}/graphql`,
      connectionParams: () => ({ Authorization: `Bearer ${state.token}` }),
      retryAttempts: Infinity,
      shouldRetry: (event) => !(event && [4401, 4403, 4429].includes(event.code)),
      on: {
        connecting: () => setConnection("connecting", "Connecting…"),
        connected: () => setConnection("live", "Live"),
        closed: (event) => {
          if (!state.token) return;
          if (event && event.code === 4401) return signOut(`Signed out: ${event.reason || "token refused"}`);
          if (event && event.code === 4403) return signOut(`Access ended: ${event.reason}`);
          const reason = event && event.reason ? ` (${event.reason})` : "";
          setConnection("closed", `Disconnected${reason}`);
        },
      },
    });
    state.stopDashboard = subscribe("DashboardUpdates", {}, onDashboardUpdate);
  }

  // --- rendering --------------------------------------------------------------------------
  function showError(error) {
    $("error").textContent = error ? String(error.message || error) : "";
  }

  function renderSummary(summary) {
    $("kpis").replaceChildren(...SUMMARY_KPIS.map(([l, p, k]) => kpi(l, p, k, summary, "data-kpi")));
    $("summary-computed-at").textContent = fmt.instant(summary.computedAt);
    $("summary-computed-at").dateTime = summary.computedAt;
    $("summary-stale").hidden = !summary.stale;
    $("alerts").replaceChildren(
      ...summary.alerts.map((a) =>
        el("li", { class: a.severity.toLowerCase(), "data-alert": a.code },
          `${a.severity === "CRITICAL" ? "Critical" : "Warning"} · cohort ${a.cohortId} · ${a.message}`),
      ),
    );
  }

  function controls() {
    const status = $("filter-status").value;
    const search = $("filter-name").value.trim();
    const filter = {};
    if (status) filter.status = [status];
    if (search) filter.search = search;
    return {
      first: Number($("page-size").value),
      after: state.pageCursors[state.page],
      filter: Object.keys(filter).length ? filter : null,
      orderBy: { field: $("order-field").value, direction: $("order-direction").value },
    };
  }

  async function loadCohorts(changed = []) {
    const data = await read("CohortList", controls());
    const connection = data.me.cohorts;
    const rows = connection.edges.map(({ node }) => cohortRow(node, changed.includes(node.id)));
    $("cohort-rows").replaceChildren(...rows);
    $("cohorts-count").textContent = `${connection.totalCount} cohort${connection.totalCount === 1 ? "" : "s"}`;
    state.pageCursors[state.page + 1] = connection.pageInfo.endCursor;
    state.pageCursors.length = state.page + 2;
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = !connection.pageInfo.hasNextPage;
    $("page-info").textContent = `Page ${state.page + 1}`;
  }

  function cohortRow(node, changed) {
    const cells = COLUMNS.map(([path, kind]) => {
      const value = get(node, path);
      const attrs = { "data-field": path, "data-value": JSON.stringify(value ?? null) };
      if (NUMERIC.has(kind)) attrs.class = "num";
      if (path === "name") {
        const button = el("button", { type: "button", class: "link", "aria-label": `Open ${node.name}`, text: node.name });
        button.addEventListener("click", () => openDetail(node.id));
        return el("td", attrs, button);
      }
      if (path === "flags") {
        return el("td", attrs, ...(value.length ? value.map((f) => el("span", { class: "flag", text: f })) : ["—"]));
      }
      return el("td", { ...attrs, text: fmt[kind](value) });
    });
    const row = el("tr", { "data-cohort-id": String(node.id) }, ...cells);
    if (node.id === state.detailId) row.classList.add("selected");
    if (changed) row.classList.add("flash");
    return row;
  }

  // --- charts (SVG) -----------------------------------------------------------------------
  function barChart(items, { width = 320, height = 150, label }) {
    const max = Math.max(1, ...items.map((i) => i.value));
    const gap = 8;
    const barWidth = (width - gap * (items.length + 1)) / items.length;
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
                               "aria-label": `${label}: ${items.map((i) => `${i.label} ${i.value}`).join(", ")}` });
    items.forEach((item, n) => {
      const h = ((height - 36) * item.value) / max;
      const x = gap + n * (barWidth + gap);
      svg.append(svgEl("rect", { x, y: height - 20 - h, width: barWidth, height: h, rx: 3, fill: item.color || "#2457c5" }));
      const value = svgEl("text", { x: x + barWidth / 2, y: height - 24 - h, "text-anchor": "middle" });
      value.textContent = String(item.value);
      const name = svgEl("text", { x: x + barWidth / 2, y: height - 6, "text-anchor": "middle" });
      name.textContent = item.label;
      svg.append(value, name);
    });
    return svg;
  }

  function renderDetail(c) {
    $("detail-title").textContent = `${c.name} — ${c.track.name}, ${c.program.name}`;
    $("detail-computed-at").textContent = fmt.instant(c.computedAt);
    $("detail-stale").hidden = !c.stale;
    $("detail-kpis").replaceChildren(...DETAIL_KPIS.map(([l, p, k]) => kpi(l, p, k, c, "data-detail")));
    $("chart-readiness").replaceChildren(
      barChart(c.readiness.distribution.map((b) => ({ label: `${b.lower}–${b.upper}`, value: b.count })),
               { label: "Readiness distribution" }),
    );
    const f = c.missionFunnel;
    $("chart-funnel").replaceChildren(
      barChart([
        { label: "Started", value: f.started },
        { label: "Submitted", value: f.submitted },
        { label: "Approved", value: f.approved, color: "#1b7f4b" },
        { label: "Rejected", value: f.rejected, color: "#b42318" },
      ], { label: "Mission funnel" }),
    );
    const maxLevel = Math.max(1, ...c.competencies.flatMap((r) => r.levels));
    const heat = el("table", { class: "heat" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Competency" }),
        ...[0, 1, 2, 3, 4, 5].map((l) => el("th", { scope: "col", text: `Level ${l}` })),
        el("th", { scope: "col", text: "Average" }))),
      el("tbody", {}, ...c.competencies.map((row) => el("tr", {},
        el("th", { scope: "row", text: row.competency }),
        ...row.levels.map((count) => {
          const cell = el("td", { text: String(count) });
          cell.style.background = `rgba(36, 87, 197, ${(0.85 * count) / maxLevel})`;
          if (count / maxLevel > 0.55) cell.style.color = "#fff";
          return cell;
        }),
        el("td", { text: fmt.avg(row.averageLevel) })))));
    $("chart-competencies").replaceChildren(c.competencies.length ? heat : el("p", { class: "muted", text: "No levels yet." }));
    const money = (cents, currency) =>
      new Intl.NumberFormat("en", { style: "currency", currency }).format(cents / 100);
    const payments = el("table", {},
      el("thead", {}, el("tr", {}, ...["Currency", "Billed", "Paid", "Pending", "Overdue", "Refunded", "Collection"]
        .map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...c.payments.map((p) => el("tr", {},
        el("th", { scope: "row", text: p.currency }),
        ...[p.billedCents, p.paidCents, p.pendingCents, p.overdueCents, p.refundedCents]
          .map((v) => el("td", { class: "num", text: money(v, p.currency) })),
        el("td", { class: "num", text: fmt.rate(p.collectionRate) })))));
    $("chart-payments").replaceChildren(c.payments.length ? payments : el("p", { class: "muted", text: "No payments." }));
    const list = (title, items) => el("div", {}, el("h3", { text: title }),
      items.length ? el("ul", {}, ...items.map((m) => el("li", { text: `${m.dueDate} · ${m.title}` })))
                   : el("p", { class: "muted", text: "None." }));
    $("chart-milestones").replaceChildren(list("Upcoming", c.milestones.upcoming), list("Overdue", c.milestones.overdue));
  }

  async function openDetail(id) {
    closeDetail(false);
    state.detailId = id;
    for (const row of document.querySelectorAll("#cohort-rows tr")) {
      row.classList.toggle("selected", row.dataset.cohortId === String(id));
    }
    try {
      renderDetail((await read("CohortDetail", { id })).cohort);
    } catch (error) {
      return showError(error);
    }
    $("detail").hidden = false;
    $("detail-title").focus();
    state.stopDetail = subscribe("CohortUpdates", { id }, (data) => {
      if (state.detailId === id) renderDetail(data.cohort);
    });
  }

  function closeDetail(restoreFocus = true) {
    if (state.stopDetail) state.stopDetail();
    state.stopDetail = null;
    const id = state.detailId;
    state.detailId = null;
    $("detail").hidden = true;
    for (const row of document.querySelectorAll("#cohort-rows tr.selected")) row.classList.remove("selected");
    if (restoreFocus && id != null) {
      const button = document.querySelector(`#cohort-rows tr[data-cohort-id="${id}"] button`);
      (button || $("cohorts-title")).focus();
    }
  }

  // --- live updates -------------------------------------------------------------------------
  function onDashboardUpdate(data) {
    const update = data.dashboard;
    renderSummary(update.summary);
    if (update.changedCohortIds.length) {
      loadCohorts(update.changedCohortIds).catch(showError);
    }
  }

  // --- session --------------------------------------------------------------------------------
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    if (state.client) state.client.dispose();
    state.client = null;
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("signin").hidden = false;
    $("who").textContent = "Not signed in";
    $("signin-error").textContent = message || "";
    setConnection("off", "Offline");
  }

  async function start(token) {
    state.token = token;
    $("signin").hidden = true;
    $("signin-error").textContent = "";
    try {
      const me = (await read("DirectorSummary")).me;
      $("who").textContent = `${me.name} · ${me.email}`;
      renderSummary(me.summary);
      await loadCohorts();
    } catch (error) {
      if (state.token) {
        $("app").hidden = false;
        showError(error);
      }
      return;
    }
    $("app").hidden = false;
    $("sign-out").hidden = false;
    document.body.dataset.ready = "true";
    connect();
  }

  function wire() {
    $("cohort-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      state.page = 0;
      state.pageCursors = [null];
      loadCohorts().catch(showError);
    });
    $("next-page").addEventListener("click", () => {
      state.page += 1;
      loadCohorts().catch(showError);
    });
    $("prev-page").addEventListener("click", () => {
      state.page = Math.max(0, state.page - 1);
      loadCohorts().catch(showError);
    });
    $("close-detail").addEventListener("click", () => closeDetail());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && state.detailId != null) closeDetail();
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("signin-token").value.trim().replace(/^Bearer\s+/i, "");
      sessionStorage.setItem(TOKEN_KEY, token);
      start(token);
    });
  }

  function tokenFromFragment() {
    // `#token=…`: a fragment never reaches a server or a Referer; dropped from the address bar.
    const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  wire();
  const token = tokenFromFragment();
  if (token) start(token);
  else signOut();
})();
