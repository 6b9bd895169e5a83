// The live table (docs/live-table.md): one WebSocket, the resume fills the table,
// live changes update it in place. Plain DOM, no framework; data only ever goes
// through textContent / setAttribute, never innerHTML.
"use strict";

(() => {
  const TOKEN_KEY = "sf-live-table.token";
  const TYPE_KEY = "sf-live-table.type";
  const ALL_KEY = "sf-live-table.all-projects";
  const FILTER_KEY = "sf-live-table.filter";
  const SORT_KEY = "sf-live-table.sort";
  const FILTER_DELAY = 400;     // ms of no typing before the filter applies
  const PAGE_SIZE = 200;        // the first page of a live search (the server's cap)
  const DEFAULT_TYPE = "OS::Nova::Server";
  // Used only if the server's "authenticated" frame does not list its types.
  const KNOWN_TYPES = [
    "OS::Cinder::Snapshot", "OS::Cinder::Volume", "OS::Designate::RecordSet",
    "OS::Designate::Zone", "OS::Glance::Image", "OS::Heat::Stack",
    "OS::Neutron::FloatingIP", "OS::Neutron::Net", "OS::Neutron::Port",
    "OS::Neutron::Router", "OS::Neutron::SecurityGroup", "OS::Neutron::Subnet",
    "OS::Nova::Flavor", "OS::Nova::Server",
  ];
  const BACKOFF_FIRST = 500;    // ms; doubles per failed attempt, with jitter
  const BACKOFF_MAX = 5000;
  const DASH = "\u2014";

  // -- cell formatting: value -> {text, title?, badge?} ---------------------------

  const plain = (v) => {
    if (v === null || v === undefined || v === "") return {text: DASH};
    if (typeof v === "boolean") return {text: v ? "Yes" : "No"};
    if (Array.isArray(v)) {
      if (v.every((x) => x === null || typeof x !== "object")) return {text: v.join(", ") || DASH};
      return {text: String(v.length)};
    }
    if (typeof v === "object") return {text: JSON.stringify(v, (k, x) =>
      typeof x === "bigint" ? x.toString() : x)};
    return {text: String(v)};
  };
  const time = (v) => {
    if (!v) return {text: DASH};
    const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)/.exec(String(v));
    return m ? {text: `${m[1]} ${m[2]}`, title: String(v)} : plain(v);
  };
  const status = (v) => {
    if (v === null || v === undefined || v === "") return {text: DASH};
    const s = String(v), u = s.toUpperCase();
    let badge = "neutral";
    if (/ERROR|FAIL/.test(u)) badge = "bad";
    else if (/^(ACTIVE|AVAILABLE|IN-USE|UP)$|_COMPLETE$/.test(u)) badge = "ok";
    else if (/BUILD|PENDING|PROGRESS|ING$|QUEUED|REBOOT|RESIZE|MIGRAT|VERIFY/.test(u)) badge = "busy";
    else if (/SHUTOFF|SUSPENDED|PAUSED|SHELVED|DOWN|STOPPED|DELETED/.test(u)) badge = "off";
    return {text: s, badge};
  };
  const POWER = {0: "No State", 1: "Running", 3: "Paused", 4: "Shut Down", 6: "Crashed",
                 7: "Suspended"};
  const power = (v) => (v === null || v === undefined ? {text: DASH}
    : {text: POWER[v] || String(v)});
  const flavor = (v) => (v && typeof v === "object"
    ? {text: String(v.original_name || v.id || DASH), title: v.id ? `id ${v.id}` : undefined}
    : plain(v));
  const addresses = (v) => {
    if (!v || typeof v !== "object") return plain(v);
    const ips = [];
    for (const list of Object.values(v)) {
      for (const a of Array.isArray(list) ? list : []) if (a && a.addr) ips.push(String(a.addr));
    }
    return {text: ips.join(", ") || DASH};
  };
  const fixedIps = (v) => (Array.isArray(v)
    ? {text: v.map((x) => (x && x.ip_address) || "").filter(Boolean).join(", ") || DASH}
    : plain(v));
  const gateway = (v) => (v && typeof v === "object"
    ? {text: String(v.network_id || DASH)} : plain(v));
  const count = (v) => (Array.isArray(v) ? {text: String(v.length)} : plain(v));
  const gib = (v) => (typeof v === "number" ? {text: `${v} GiB`} : plain(v));
  const mib = (v) => (typeof v === "number" ? {text: `${v} MiB`} : plain(v));
  const bytes = (v) => {
    if (typeof v !== "number") return plain(v);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = v, i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return {text: `${i ? n.toFixed(1) : n} ${units[i]}`, title: `${v} bytes`};
  };
  const shortId = (v) => (v ? {text: String(v).slice(0, 8), title: String(v)} : {text: DASH});

  const col = (field, label, format = plain) => ({field, label, format});
  const NAME = col("name", "Name");
  const STATUS = col("status", "Status", status);
  const CREATED = col("created_at", "Created", time);
  const UPDATED = col("updated_at", "Updated", time);
  // Per type: the columns worth a glance. A column shows only while some row's
  // document has its field, so what the server redacts for this connection (e.g.
  // admin-only fields) never gets a header.
  const COLUMNS = {
    "OS::Nova::Server": [NAME, STATUS, col("OS-EXT-STS:task_state", "Task"),
      col("OS-EXT-STS:power_state", "Power State", power), col("flavor", "Flavor", flavor),
      col("addresses", "IP Address", addresses), col("OS-EXT-SRV-ATTR:host", "Host"),
      col("created", "Created", time), UPDATED],
    "OS::Nova::Flavor": [NAME, col("vcpus", "VCPUs"), col("ram", "RAM", mib),
      col("disk", "Root Disk", gib), col("os-flavor-access:is_public", "Public"),
      col("tenant_access", "Projects", count), UPDATED],
    "OS::Glance::Image": [NAME, STATUS, col("visibility", "Visibility"),
      col("disk_format", "Format"), col("size", "Size", bytes), CREATED, UPDATED],
    "OS::Neutron::Net": [NAME, STATUS, col("subnets", "Subnets", count),
      col("shared", "Shared"), col("router:external", "External"),
      col("provider:network_type", "Network Type"),
      col("provider:segmentation_id", "Segmentation ID"), col("admin_state_up", "Admin State"),
      UPDATED],
    "OS::Neutron::Port": [NAME, STATUS, col("fixed_ips", "Fixed IPs", fixedIps),
      col("mac_address", "MAC Address"), col("device_owner", "Attached Device"),
      col("binding:host_id", "Host"), col("admin_state_up", "Admin State"), UPDATED],
    "OS::Neutron::Subnet": [NAME, col("cidr", "CIDR"), col("ip_version", "IP Version"),
      col("gateway_ip", "Gateway IP"), col("network_id", "Network", shortId), UPDATED],
    "OS::Neutron::Router": [NAME, STATUS,
      col("external_gateway_info", "External Network", gateway),
      col("distributed", "Distributed"), col("ha", "HA"),
      col("admin_state_up", "Admin State"), UPDATED],
    "OS::Neutron::FloatingIP": [col("floating_ip_address", "Floating IP"),
      col("fixed_ip_address", "Mapped Fixed IP"), STATUS,
      col("port_id", "Port", shortId), UPDATED],
    "OS::Neutron::SecurityGroup": [NAME, col("description", "Description"),
      col("security_group_rules", "Rules", count), col("stateful", "Stateful"), UPDATED],
    "OS::Cinder::Volume": [NAME, STATUS, col("size", "Size", gib),
      col("availability_zone", "Availability Zone"),
      col("attachments", "Attachments", count), col("os-vol-host-attr:host", "Host"),
      CREATED, UPDATED],
    "OS::Cinder::Snapshot": [NAME, STATUS, col("size", "Size", gib),
      col("volume_id", "Volume", shortId), CREATED, UPDATED],
    "OS::Designate::Zone": [NAME, STATUS, col("action", "Action"), col("type", "Type"),
      col("email", "Email"), col("serial", "Serial"), UPDATED],
    "OS::Designate::RecordSet": [NAME, col("type", "Type"), col("records", "Records"),
      STATUS, col("zone_name", "Zone"), UPDATED],
    "OS::Heat::Stack": [col("stack_name", "Stack Name"),
      col("stack_status", "Status", status), col("stack_status_reason", "Reason"),
      col("creation_time", "Created", time), UPDATED],
  };
  const FALLBACK = [NAME, STATUS, UPDATED];
  const PROJECT = col("project_id", "Project", shortId);
  // The live search (docs/websocket.md): keyword fields take the filter box's
  // "starts with"; these fields sort on the server (keyword, number, date).
  const FILTERS = {
    "OS::Heat::Stack": [["stack_name", "Stack Name"], ["stack_status", "Status"]],
    "OS::Neutron::FloatingIP": [["floating_ip_address", "Floating IP"], ["status", "Status"]],
  };
  const DEFAULT_FILTERS = [["name", "Name"], ["status", "Status"]];
  const SORTABLE = new Set(["name", "status", "created", "created_at", "updated_at",
    "stack_name", "stack_status", "creation_time", "size", "vcpus", "ram", "disk",
    "OS-EXT-STS:task_state", "OS-EXT-STS:power_state", "OS-EXT-SRV-ATTR:host",
    "visibility", "disk_format", "floating_ip_address", "cidr", "type", "action"]);

  // -- state -------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const el = {
    login: $("login"), token: $("token"), loginError: $("login-error"), app: $("app"),
    who: $("who"), logout: $("logout"), type: $("type"), allLabel: $("all-projects-label"),
    all: $("all-projects"), conn: $("conn"), connText: $("conn-text"),
    appError: $("app-error"), head: $("head"), rows: $("rows"), empty: $("empty"),
    filterField: $("filter-field"), filterValue: $("filter-value"),
    count: $("count"), renew: $("renew"), renewText: $("renew-text"),
    renewToken: $("renew-token"),
  };
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    identity: null,             // the "authenticated" frame
    type: sessionStorage.getItem(TYPE_KEY) || DEFAULT_TYPE,
    allProjects: sessionStorage.getItem(ALL_KEY) === "true",
    ws: null,
    cursor: null,               // the cursor of the last frame applied
    attempt: 0,                 // failed connection attempts in a row
    timer: null,
    resuming: null,             // {ids: Set} while a resume runs
    loaded: false,              // a resume has completed for the rows shown
    rows: new Map(),            // id -> {tr, doc, key, cols}
    versions: new Map(),        // id -> highest version applied (deletes too)
    fieldCounts: new Map(),     // field -> rows whose document has it
    columns: [],
    colsKey: "",
    renewal: null,              // a token sent in-band, not accepted yet
    filter: JSON.parse(sessionStorage.getItem(FILTER_KEY) || "null"),  // {field, value}
    sort: JSON.parse(sessionStorage.getItem(SORT_KEY) || "null"),      // {field, order}
    filterTimer: null,
  };

  // Versions are ~1.8e18, beyond a double's 53 bits: read them exactly when the
  // browser gives the number's source text (JSON.parse source text access).
  const parseFrame = (text) => JSON.parse(text, function (key, value, ctx) {
    if (key === "version" && typeof value === "number" && ctx && typeof ctx.source === "string"
        && /^-?\d+$/.test(ctx.source)) {
      return BigInt(ctx.source);
    }
    return value;
  });
  const newer = (v, prev) => {
    if (prev === undefined) return true;
    if (typeof v === "bigint" && typeof prev === "bigint") return v > prev;
    return v >= prev;   // imprecise numbers: do not drop a change that may be newer
  };

  // -- connection ---------------------------------------------------------------------

  function setConn(stateName, text) {
    el.conn.dataset.state = stateName;
    el.connText.textContent = text;
  }

  function showError(text) {
    el.appError.textContent = text || "";
    el.appError.hidden = !text;
  }

  function wsUrl() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/`;
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    const ws = new WebSocket(wsUrl());
    state.ws = ws;
    setConn(state.attempt ? "reconnecting" : "connecting",
      state.attempt ? `reconnecting (attempt ${state.attempt})\u2026` : "connecting\u2026");
    ws.onopen = () => {
      if (ws === state.ws) ws.send(JSON.stringify({action: "authenticate", token: state.token}));
    };
    ws.onmessage = (event) => {
      if (ws !== state.ws) return;
      let frame;
      try { frame = parseFrame(event.data); } catch (e) { return; }
      onFrame(ws, frame);
    };
    ws.onclose = (event) => {
      if (ws !== state.ws) return;      // replaced on purpose
      state.ws = null;
      const renewal = state.renewal;
      state.renewal = null;
      if (event.code === 4005 && renewal !== null) {   // the renewal raced the expiry
        state.token = renewal;
        sessionStorage.setItem(TOKEN_KEY, renewal);
        el.renew.hidden = true;
        state.attempt = 0;
        connect();
        return;
      }
      onClose(event.code, event.reason);
    };
  }

  function disconnect() {
    clearTimeout(state.timer);
    state.timer = null;
    const ws = state.ws;
    state.ws = null;
    state.resuming = null;
    state.renewal = null;
    if (ws) ws.close(1000, "client navigates");
  }

  function onClose(code, reason) {
    state.resuming = null;
    el.renew.hidden = true;
    if (code === 4001 || code === 4006) {   // bad or revoked token: log in again
      logout(reason || "authentication failed");
      return;
    }
    if (code === 4005) {                // expired: a new token resumes where we were
      tokenExpired();
      return;
    }
    if (code === 4002 || code === 4029) {   // a client bug: do not hammer the server
      setConn("offline", "disconnected");
      showError(`The server closed the connection (${code} ${reason || ""}); reload the page.`);
      return;
    }
    const delay = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** state.attempt)
      * (0.75 + Math.random() * 0.5);
    state.attempt += 1;
    setConn("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`
      + ` (attempt ${state.attempt})\u2026`);
    state.timer = setTimeout(connect, delay);
  }

  // A filter or a sort makes the subscription a live search: the server answers
  // with the matching rows ("results"), then "entered", "updated" and "left".
  function liveSearch() {
    const message = {};
    if (state.filter && state.filter.value) {
      message.query = {prefix: {[state.filter.field]: state.filter.value}};
    }
    if (state.sort) message.sort = [{[state.sort.field]: state.sort.order}];
    if (!message.query && !message.sort) return null;
    message.page_size = PAGE_SIZE;
    return message;
  }

  function subscribe(ws) {
    state.resuming = {ids: new Set()};
    state.fromResults = false;
    setConn("resuming", state.cursor ? "connected, resuming\u2026" : "connected, loading\u2026");
    ws.send(JSON.stringify(Object.assign({
      action: "subscribe", resource_types: [state.type],
      all_projects: Boolean(state.identity && state.identity.admin && state.allProjects),
      cursor: state.cursor,
    }, liveSearch() || {})));
  }

  function onResults(frame) {
    // Everything the query matches now replaces the table.
    for (const id of Array.from(state.rows.keys())) removeRow(id);
    state.versions.clear();
    state.resuming = null;
    for (const env of frame.hits || []) applyEnvelope(env);
    refreshColumns();
    if (frame.cursor) state.cursor = frame.cursor;
    state.loaded = true;
    state.attempt = 0;
    showError("");
    const shown = (frame.hits || []).length;
    setConn("live", frame.total > shown
      ? `connected \u00b7 live \u00b7 first ${shown} of ${frame.total}`
      : "connected \u00b7 live");
    el.conn.dataset.full = "true";
    el.conn.dataset.count = String(shown);
    state.fromResults = true;
    updateFooter();
  }

  function onLeft(frame) {
    if (frame.resource_type !== state.type) return;
    const id = String(frame.id);
    if (!newer(frame.version, state.versions.get(id))) return;
    state.versions.set(id, frame.version);
    removeRow(id);
    refreshColumns();
    updateFooter();
  }

  function onFrame(ws, frame) {
    switch (frame.type) {
      case "authenticated": onAuthenticated(ws, frame); break;
      case "change":
      case "entered":
      case "updated":
        applyEnvelope(frame.envelope);
        if (frame.cursor) state.cursor = frame.cursor;
        break;
      case "left":
        onLeft(frame);
        if (frame.cursor) state.cursor = frame.cursor;
        break;
      case "results": onResults(frame); break;
      case "resumed": onResumed(frame); break;
      case "token_expiring": onExpiring(frame); break;
      case "reauthenticated":
        if (state.renewal !== null) {     // accepted: now it is the token in force
          state.token = state.renewal;
          sessionStorage.setItem(TOKEN_KEY, state.token);
          state.renewal = null;
        }
        state.identity = Object.assign({}, state.identity, {expires_at: frame.expires_at});
        el.renew.hidden = true;
        showError("");
        break;
      case "error":
        if (frame.action === "authenticate") state.renewal = null;   // refused: keep ours
        showError(`${frame.code}: ${frame.message || ""}`);
        if (frame.code === "forbidden" && state.allProjects) {   // no longer admin
          setAllProjects(false);
          resubscribe();
        }
        break;
      default: break;
    }
  }

  function onAuthenticated(ws, frame) {
    const prev = state.identity;
    const same = prev && prev.user_id === frame.user_id
      && prev.project_id === frame.project_id && prev.admin === frame.admin;
    if (prev && !same) resetTable();    // someone else now: nothing of theirs stays
    el.rows.hidden = false;
    state.identity = frame;
    el.who.textContent = `${frame.user_id} \u00b7 project ${frame.project_id || DASH}`
      + (frame.admin ? " \u00b7 admin" : "");
    el.who.hidden = false;
    el.logout.hidden = false;
    el.allLabel.hidden = !frame.admin;
    el.all.checked = Boolean(frame.admin && state.allProjects);
    const types = Array.isArray(frame.resource_types) && frame.resource_types.length
      ? frame.resource_types.slice().sort() : KNOWN_TYPES;
    fillTypes(types);
    if (!types.includes(state.type)) {
      state.type = types.includes(DEFAULT_TYPE) ? DEFAULT_TYPE : types[0];
      el.type.value = state.type;
      resetTable();
    }
    subscribe(ws);
  }

  // -- token lifetime: renew in-band before expiry, never loop on an expired token --

  function onExpiring(frame) {
    const at = frame.expires_at ? new Date(frame.expires_at) : null;
    el.renewText.textContent = at && !isNaN(at)
      ? `Your token expires at ${at.toLocaleTimeString()}. Paste a fresh token to stay live.`
      : "Your token expires soon. Paste a fresh token to stay live.";
    el.renew.hidden = false;
  }

  // Send a fresh token on the open connection: subscription and cursor stay.
  // Horizon can call window.sfLiveTable.renew(token) when it refreshes its own.
  function renew(token) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN && state.identity) {
      if (state.renewal !== null) return;     // one at a time: wait for the answer
      // The token in force stays until the server accepts this one: a refused
      // token must never be what the next reconnect or reload sends.
      state.renewal = token;
      state.ws.send(JSON.stringify({action: "authenticate", token}));
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (el.app.hidden) start();
  }
  window.sfLiveTable = {renew};

  function tokenExpired() {
    // Keep the rows, the identity and the cursor: the same user's new token
    // resumes from where the table stopped.
    disconnect();
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    // The server's reason is for developers; say what to do instead.
    showLogin("Your token expired. Log in again: the table continues where it stopped.");
  }

  function onResumed(frame) {
    if (state.fromResults) {     // a live search: "results" was the full load
      state.fromResults = false;
      if (frame.cursor) state.cursor = frame.cursor;
      return;
    }
    const resume = state.resuming;
    state.resuming = null;
    if (frame.full && resume) {          // drop what the full resync did not mention
      for (const id of Array.from(state.rows.keys())) {
        if (!resume.ids.has(id)) removeRow(id);
      }
      refreshColumns();
    }
    if (frame.cursor) state.cursor = frame.cursor;
    const first = !state.loaded;
    state.attempt = 0;
    state.loaded = true;
    showError("");
    const n = frame.count || 0;
    if (!frame.full) {
      setConn("live", `connected \u00b7 resumed ${n} ${n === 1 ? "change" : "changes"}`);
    } else if (first) {
      setConn("live", "connected \u00b7 live");
    } else {
      setConn("live", `connected \u00b7 full resync, ${n} ${n === 1 ? "resource" : "resources"}`);
    }
    el.conn.dataset.full = String(Boolean(frame.full));
    el.conn.dataset.count = String(n);
    updateFooter();
  }

  // -- table ---------------------------------------------------------------------------

  function columnDefs() {
    const defs = (COLUMNS[state.type] || FALLBACK).slice();
    if (state.identity && state.identity.admin && state.allProjects) defs.splice(1, 0, PROJECT);
    return defs;
  }

  function countFields(doc, delta) {
    for (const c of columnDefs()) {
      if (Object.prototype.hasOwnProperty.call(doc, c.field)) {
        state.fieldCounts.set(c.field, (state.fieldCounts.get(c.field) || 0) + delta);
      }
    }
  }

  // The columns some document has; re-render everything only when they change.
  function refreshColumns() {
    const cols = columnDefs().filter((c) => (state.fieldCounts.get(c.field) || 0) > 0);
    const key = cols.map((c) => c.field).join("\n");
    if (key === state.colsKey) return false;
    state.columns = cols;
    state.colsKey = key;
    const ths = cols.map((c) => {
      const th = document.createElement("th");
      th.dataset.field = c.field;
      th.scope = "col";
      if (SORTABLE.has(c.field)) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        const order = state.sort && state.sort.field === c.field ? state.sort.order : null;
        button.textContent = c.label + (order === "asc" ? " \u25b2" : order === "desc" ? " \u25bc" : "");
        th.setAttribute("aria-sort", order === "asc" ? "ascending"
          : order === "desc" ? "descending" : "none");
        button.addEventListener("click", () => cycleSort(c.field));
        th.append(button);
      } else {
        th.textContent = c.label;
      }
      return th;
    });
    el.head.replaceChildren(...ths);
    for (const row of state.rows.values()) renderRow(row, false);
    return true;
  }

  function sortKey(doc, id) {
    const first = (COLUMNS[state.type] || FALLBACK)[0];
    const v = doc[first.field];
    return `${v === null || v === undefined ? "\uffff" : String(v).toLowerCase()}\u0000${id}`;
  }

  // Rows in the server's order: the sort field (missing values last, whatever the
  // order), then the id; without a sort, the first column, case-insensitively.
  function precedes(a, b) {
    if (!state.sort) return a.key < b.key;
    const f = state.sort.field;
    const x = a.doc[f], y = b.doc[f];
    const xm = x === null || x === undefined, ym = y === null || y === undefined;
    if (xm !== ym) return ym;
    if (!xm && x !== y) return state.sort.order === "asc" ? x < y : x > y;
    return a.tr.dataset.id < b.tr.dataset.id;
  }

  function place(row) {
    let next = null;
    for (const other of el.rows.children) {
      if (other !== row.tr && precedes(row, state.rows.get(other.dataset.id))) {
        next = other;
        break;
      }
    }
    if (row.tr.nextSibling !== next || row.tr.parentNode !== el.rows) {
      el.rows.insertBefore(row.tr, next);
    }
  }

  function fillCell(td, c, doc) {
    const out = c.format(doc[c.field]);
    if (out.badge) {
      const span = document.createElement("span");
      span.className = `badge badge-${out.badge}`;
      span.textContent = out.text;
      td.replaceChildren(span);
    } else {
      td.textContent = out.text;
    }
    if (out.title) td.title = out.title; else td.removeAttribute("title");
  }

  function flash(node) {
    if (node.animate) {
      node.animate([{backgroundColor: "#fff1b8"}, {backgroundColor: "transparent"}],
        {duration: 1600, easing: "ease-out"});
    }
  }

  // Fill a row's cells. Same columns as before: only the cells whose text changed
  // are touched (and flash); otherwise the cells are rebuilt, the <tr> stays.
  function renderRow(row, live) {
    const {tr, doc} = row;
    if (row.cols !== state.colsKey) {
      const tds = state.columns.map((c) => {
        const td = document.createElement("td");
        td.dataset.field = c.field;
        fillCell(td, c, doc);
        return td;
      });
      tr.replaceChildren(...tds);
      row.cols = state.colsKey;
      return;
    }
    state.columns.forEach((c, i) => {
      const td = tr.children[i];
      const before = td.textContent, title = td.title;
      fillCell(td, c, doc);
      if (live && (td.textContent !== before || td.title !== title)) flash(td);
    });
  }

  function applyEnvelope(env) {
    if (!env || env.resource_type !== state.type) return;
    const id = String(env.id);
    if (state.resuming) state.resuming.ids.add(id);
    if (!newer(env.version, state.versions.get(id))) return;
    state.versions.set(id, env.version);
    const live = state.loaded;     // not during the first load
    if (env.operation === "delete" || !env.document) {
      removeRow(id);
      refreshColumns();
    } else {
      upsertRow(id, env.document, live);
    }
    updateFooter();
  }

  function upsertRow(id, doc, live) {
    let row = state.rows.get(id);
    const isNew = !row;
    if (isNew) {
      const tr = document.createElement("tr");
      tr.dataset.id = id;
      row = {tr, doc, key: "", cols: null};
      state.rows.set(id, row);
    } else {
      countFields(row.doc, -1);
      row.doc = doc;
    }
    countFields(doc, +1);
    row.key = sortKey(doc, id);
    if (!refreshColumns()) renderRow(row, live && !isNew);
    place(row);
    if (live && isNew) for (const td of row.tr.children) flash(td);
  }

  function removeRow(id) {
    const row = state.rows.get(id);
    if (!row) return;
    countFields(row.doc, -1);
    state.rows.delete(id);
    row.tr.remove();
  }

  function resetTable() {
    state.rows.clear();
    state.versions.clear();
    state.fieldCounts.clear();
    state.cursor = null;
    state.loaded = false;
    state.columns = [];
    state.colsKey = "";
    el.rows.replaceChildren();
    el.head.replaceChildren();
    updateFooter();
  }

  function updateFooter() {
    const n = state.rows.size;
    el.empty.hidden = n > 0;
    el.empty.textContent = state.loaded ? "No items to display." : "Loading\u2026";
    el.count.textContent = n ? `Displaying ${n} ${n === 1 ? "item" : "items"}` : "";
  }

  // -- controls -----------------------------------------------------------------------

  function fillTypes(types) {
    const current = Array.from(el.type.options).map((o) => o.value).join("\n");
    if (current !== types.join("\n")) {
      el.type.replaceChildren(...types.map((t) => {
        const option = document.createElement("option");
        option.value = t;
        option.textContent = t;
        return option;
      }));
    }
    el.type.value = state.type;
  }

  function fillFilterFields() {
    const fields = FILTERS[state.type] || DEFAULT_FILTERS;
    el.filterField.replaceChildren(...fields.map(([field, label]) => {
      const option = document.createElement("option");
      option.value = field;
      option.textContent = label;
      return option;
    }));
    const current = state.filter && fields.some(([f]) => f === state.filter.field)
      ? state.filter : {field: fields[0][0], value: ""};
    el.filterField.value = current.field;
    el.filterValue.value = current.value;
    state.filter = current.value ? current : null;
  }

  function setFilter() {
    const value = el.filterValue.value;
    state.filter = value ? {field: el.filterField.value, value} : null;
    sessionStorage.setItem(FILTER_KEY, JSON.stringify(state.filter));
    resubscribe();
  }

  function cycleSort(field) {
    const order = state.sort && state.sort.field === field ? state.sort.order : null;
    state.sort = order === null ? {field, order: "asc"}
      : order === "asc" ? {field, order: "desc"} : null;
    sessionStorage.setItem(SORT_KEY, JSON.stringify(state.sort));
    state.colsKey = "";           // redraw the headers' arrows
    resubscribe();
  }

  // A new subscription (type, project scope): a new connection and a full load.
  function resubscribe() {
    disconnect();
    resetTable();
    showError("");
    state.attempt = 0;
    connect();
  }

  function setAllProjects(on) {
    state.allProjects = on;
    el.all.checked = on;
    sessionStorage.setItem(ALL_KEY, String(on));
  }

  function showLogin(message) {
    el.app.hidden = true;
    el.login.hidden = false;
    el.who.hidden = true;
    el.logout.hidden = true;
    el.loginError.textContent = message || "";
    el.loginError.hidden = !message;
    el.token.focus();
  }

  function logout(message) {
    disconnect();
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.identity = null;
    resetTable();
    showLogin(message);
  }

  function start() {
    el.login.hidden = true;
    el.app.hidden = false;
    // Rows kept from an expired token stay hidden until the server says whose
    // token this is: another user must not see them even for a moment.
    el.rows.hidden = Boolean(state.identity);
    showError("");
    state.attempt = 0;
    updateFooter();
    connect();
  }

  el.login.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.token.value.trim();
    if (!token) return;
    el.token.value = "";
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  el.logout.addEventListener("click", () => logout(""));
  el.renew.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.renewToken.value.trim();
    if (!token) return;
    el.renewToken.value = "";
    renew(token);
  });
  el.type.addEventListener("change", () => {
    state.type = el.type.value;
    sessionStorage.setItem(TYPE_KEY, state.type);
    state.sort = null;
    sessionStorage.removeItem(SORT_KEY);
    fillFilterFields();
    resubscribe();
  });
  el.filterField.addEventListener("change", () => { if (el.filterValue.value) setFilter(); });
  el.filterValue.addEventListener("input", () => {
    clearTimeout(state.filterTimer);
    state.filterTimer = setTimeout(setFilter, FILTER_DELAY);
  });
  el.all.addEventListener("change", () => {
    setAllProjects(el.all.checked);
    resubscribe();
  });
  // Back online or back in view: retry now rather than at the end of the backoff.
  const retryNow = () => {
    if (state.timer && state.token) { state.attempt = Math.max(0, state.attempt - 1); connect(); }
  };
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") retryNow();
  });

  fillFilterFields();
  if (state.token) start(); else showLogin("");
})();
