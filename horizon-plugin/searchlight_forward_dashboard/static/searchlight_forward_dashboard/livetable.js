// searchlight-forward's live table (docs/horizon.md): one WebSocket per table,
// opened with the Horizon session's own token; the resume fills the table, live
// changes update it in place. Horizon loads this on every page (ADD_JS_FILES); it
// acts only on a [data-sf-live-table] frame (templates/.../live_table.html).
// Plain DOM, no framework; data only ever goes through textContent / setAttribute,
// never innerHTML. The token lives in this closure only: never in the URL, the
// HTML, browser storage or the console.
"use strict";

(() => {
  const FILTER_DELAY = 400;     // ms of no typing before the filter applies
  const PAGE_SIZE = 200;        // the first page of a live search (the server's cap)
  // Rows in the page's DOM at once, as Horizon's own tables page theirs: the table
  // keeps every row up to date, the browser lays out only these
  // (docs/benchmarks.md, "Horizon live table").
  const PAGE_ROWS = 100;
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

  // -- one table ------------------------------------------------------------------------

  function LiveTable(root) {
    const q = (selector) => root.querySelector(selector);
    const cfg = {
      type: root.dataset.resourceType,
      table: root.dataset.table,
      allProjects: root.dataset.allProjects === "true",
      websocketUrl: root.dataset.websocketUrl,
      sessionUrl: root.dataset.sessionUrl,
      sessionCheck: Math.max(5, Number(root.dataset.sessionCheck) || 30) * 1000,
      detailUrl: root.dataset.detailUrl || "",
      loginUrl: root.dataset.loginUrl || "/auth/login/",
      // The Search panel: the type is chosen among the search API's plugins, facets
      // narrow the query, each type's rows link to their own detail pages.
      search: root.dataset.search === "true",
      pluginsUrl: root.dataset.pluginsUrl,
      facetsUrl: root.dataset.facetsUrl,
      detailUrls: root.dataset.detailUrls
        ? JSON.parse(document.getElementById(root.dataset.detailUrls).textContent) : {},
      csrf: (q("input[name=csrfmiddlewaretoken]") || {}).value || "",
    };
    const el = {
      conn: q(".sf-conn"), connText: q(".sf-conn-text"), error: q(".sf-error"),
      head: q(".sf-head"), rows: q(".sf-rows"), empty: q(".sf-empty"), count: q(".sf-count"),
      filterField: q(".sf-filter-field"), filterValue: q(".sf-filter-value"),
      type: q(".sf-type"), facets: q(".sf-facets"),
      prev: q(".sf-prev"), next: q(".sf-next"),
    };
    // Filter and sort survive a reload of this panel (never the token).
    const FILTER_KEY = `sf-live-table.${cfg.table}.${cfg.allProjects ? "admin" : "project"}.filter`;
    const SORT_KEY = FILTER_KEY.replace(/filter$/, "sort");
    const TYPE_KEY = FILTER_KEY.replace(/filter$/, "type");
    const state = {
      session: null,              // {token, user_id, project_id, expires_at}
      identity: null,             // the "authenticated" frame
      ended: false,               // the Horizon session is over: no reconnects
      ws: null,
      cursor: null,               // the cursor of the last frame applied
      attempt: 0,                 // failed connection attempts in a row
      timer: null,
      checkTimer: null,
      resuming: null,             // {ids: Set} while a resume runs
      loaded: false,              // a resume has completed for the rows shown
      fromResults: false,
      rows: new Map(),            // id -> {id, tr, doc, key, cols}
      order: [],                  // the rows in table order
      page: 0,                    // which PAGE_ROWS of them are shown
      versions: new Map(),        // id -> highest version applied (deletes too)
      fieldCounts: new Map(),     // field -> rows whose document has it
      columns: [],
      colsKey: "",
      renewal: null,              // a token sent in-band, not accepted yet
      queue: [],                  // [socket, frame] received, applied at the next paint
      flushing: false,
      filter: readStored(FILTER_KEY),   // {field, value}
      sort: readStored(SORT_KEY),       // {field, order}
      filterTimer: null,
      facets: {},                 // Search panel: field -> the value chosen
    };

    function readStored(key) {
      try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) { return null; }
    }

    // -- the Horizon session: the token, asked of our own origin ------------------------

    // Resolves to the session ({token, user_id, project_id, expires_at}) or null when
    // Horizon says the session is over (401: logged out or expired; 403: the CSRF
    // check failed because the session cookie changed).
    async function fetchSession() {
      const response = await fetch(cfg.sessionUrl, {
        method: "POST", credentials: "same-origin", cache: "no-store", redirect: "manual",
        headers: {"X-CSRFToken": cfg.csrf, "X-Requested-With": "XMLHttpRequest",
                  "Accept": "application/json"},
      });
      if (response.status === 401 || response.status === 403
          || response.type === "opaqueredirect") return null;
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response.json();
    }

    function sessionEnded() {
      state.ended = true;
      clearTimeout(state.checkTimer);
      disconnect();
      resetTable();
      setConn("offline", "session ended");
      showError("Your Horizon session has ended. Log in again to see live changes.",
        cfg.loginUrl);
      el.empty.textContent = "";
    }

    // A session for another project or user (switched or logged in again in another
    // tab): this page was rendered for the old one, so load it again.
    function sameIdentity(session) {
      return state.session && session.user_id === state.session.user_id
        && session.project_id === state.session.project_id;
    }

    async function checkSession() {
      clearTimeout(state.checkTimer);
      if (state.ended) return;
      let session;
      try {
        session = await fetchSession();
      } catch (e) {               // Horizon unreachable: keep the table, check later
        state.checkTimer = setTimeout(checkSession, cfg.sessionCheck);
        return;
      }
      if (session === null) { sessionEnded(); return; }
      if (!sameIdentity(session)) { location.reload(); return; }
      if (session.token !== state.session.token) renew(session);
      state.checkTimer = setTimeout(checkSession, cfg.sessionCheck);
    }

    async function start() {
      setConn("connecting", "connecting\u2026");
      let session;
      try {
        session = await fetchSession();
      } catch (e) {
        setConn("reconnecting", "waiting for Horizon\u2026");
        state.timer = setTimeout(start, BACKOFF_MAX);
        return;
      }
      if (session === null) { sessionEnded(); return; }
      state.session = session;
      if (cfg.search && !(await loadTypes())) return;
      connect();
      state.checkTimer = setTimeout(checkSession, cfg.sessionCheck);
    }

    // -- the Search panel: resource types and facets from the search API -----------------

    async function apiGet(url) {
      const response = await fetch(url, {
        credentials: "same-origin", cache: "no-store",
        headers: {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"},
      });
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (!response.ok) {
        const said = body && body.error && body.error.message;
        throw new Error(said || `the search API answered HTTP ${response.status}`);
      }
      return body;
    }

    async function loadTypes() {
      let plugins;
      try {
        plugins = (await apiGet(cfg.pluginsUrl)).plugins || [];
      } catch (e) {
        setConn("offline", "no search API");
        showError(`Resource types could not be loaded: ${e.message}`);
        return false;
      }
      const types = plugins.map((p) => p.type).filter(Boolean).sort();
      const stored = sessionStorage.getItem(TYPE_KEY);
      cfg.type = types.includes(stored) ? stored
        : types.includes("OS::Nova::Server") ? "OS::Nova::Server" : types[0];
      el.type.replaceChildren(...types.map((t) => {
        const option = document.createElement("option");
        option.value = t;
        option.textContent = t;
        return option;
      }));
      el.type.value = cfg.type;
      fillFilterFields();
      await loadFacets();
      return true;
    }

    // The facets with options on fields live search can query (keyword terms; not
    // nested ones) that can narrow the results (two values or more): a select each,
    // "any" first.
    async function loadFacets() {
      const type = cfg.type;
      let facets = [];
      try {
        const answer = await apiGet(`${cfg.facetsUrl}?type=${encodeURIComponent(type)}`);
        facets = ((answer[type] || {}).facets || []).filter(
          (f) => Array.isArray(f.options) && f.options.length > 1 && !f.nested);
      } catch (e) {
        showError(`Facets could not be loaded: ${e.message}`);
      }
      if (type !== cfg.type) return;       // the type changed meanwhile
      el.facets.replaceChildren(...facets.map((facet) => {
        const select = document.createElement("select");
        select.className = "form-control sf-facet";
        select.dataset.field = facet.name;
        select.setAttribute("aria-label", facet.name);
        const any = document.createElement("option");
        any.value = "";
        any.textContent = `${facet.name}: any`;
        select.append(any);
        for (const option of facet.options) {
          const o = document.createElement("option");
          o.value = String(option.key);
          o.textContent = `${facet.name}: ${option.key_as_string || option.key} (${option.doc_count})`;
          select.append(o);
        }
        select.value = state.facets[facet.name] || "";
        select.addEventListener("change", () => {
          if (select.value) state.facets[facet.name] = select.value;
          else delete state.facets[facet.name];
          resubscribe();
        });
        return select;
      }));
    }

    // -- connection ---------------------------------------------------------------------

    function setConn(stateName, text) {
      el.conn.dataset.state = stateName;
      el.connText.textContent = text;
    }

    function showError(text, link) {
      el.error.replaceChildren();
      if (text) {
        el.error.append(document.createTextNode(text));
        if (link) {
          const a = document.createElement("a");
          a.href = link;
          a.className = "alert-link";
          a.textContent = " Log in";
          el.error.append(a);
        }
      }
      el.error.hidden = !text;
    }

    function connect() {
      clearTimeout(state.timer);
      state.timer = null;
      if (state.ended || !state.session) return;
      let ws;
      try {
        ws = new WebSocket(cfg.websocketUrl);
      } catch (e) {
        setConn("offline", "disconnected");
        showError(`The live table's WebSocket URL is not valid (${cfg.websocketUrl}): `
          + "ask the operator to check SEARCHLIGHT_FORWARD['websocket_url'].");
        return;
      }
      state.ws = ws;
      setConn(state.attempt ? "reconnecting" : "connecting",
        state.attempt ? `reconnecting (attempt ${state.attempt})\u2026` : "connecting\u2026");
      ws.onopen = () => {
        if (ws === state.ws) {
          ws.send(JSON.stringify({action: "authenticate", token: state.session.token}));
        }
      };
      ws.onmessage = (event) => {
        if (ws !== state.ws) return;
        let frame;
        try { frame = parseFrame(event.data); } catch (e) { return; }
        state.queue.push([ws, frame]);
        if (!state.flushing) {
          state.flushing = true;
          // Every frame that arrived before the next paint is applied at once: one
          // style and layout pass per animation frame, not one per change.
          if (document.visibilityState === "visible") requestAnimationFrame(flush);
          else setTimeout(flush, 100);      // no animation frames in a hidden tab
        }
      };
      ws.onclose = (event) => {
        if (ws !== state.ws) return;      // replaced on purpose
        state.ws = null;
        state.renewal = null;
        onClose(event.code, event.reason);
      };
    }

    function flush() {
      state.flushing = false;
      const frames = state.queue;
      state.queue = [];
      for (const [ws, frame] of frames) {
        if (ws === state.ws) onFrame(ws, frame);    // in arrival order, this socket's
      }
      showPage();
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

    function retryLater() {
      const delay = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** state.attempt)
        * (0.75 + Math.random() * 0.5);
      state.attempt += 1;
      setConn("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`
        + ` (attempt ${state.attempt})\u2026`);
      state.timer = setTimeout(connect, delay);
    }

    async function onClose(code, reason) {
      state.resuming = null;
      if (state.ended) return;
      if (code === 4001 || code === 4005 || code === 4006) {
        // Refused, expired or revoked: only a token Horizon holds now can go on
        // (the same user and project resume where the table stopped).
        setConn("reconnecting", "checking the Horizon session\u2026");
        let session;
        try { session = await fetchSession(); } catch (e) { retryLater(); return; }
        if (session === null || session.token === state.session.token) { sessionEnded(); return; }
        if (!sameIdentity(session)) { location.reload(); return; }
        state.session = session;
        state.attempt = 0;
        connect();
        return;
      }
      if (code === 4002 || code === 4029) {   // a client bug: do not hammer the server
        setConn("offline", "disconnected");
        showError(`The server closed the connection (${code} ${reason || ""}); reload the page.`);
        return;
      }
      retryLater();
    }

    // A filter or a sort makes the subscription a live search: the server answers
    // with the matching rows ("results"), then "entered", "updated" and "left".
    function liveSearch() {
      const message = {};
      const clauses = [];
      if (state.filter && state.filter.value) {
        clauses.push({prefix: {[state.filter.field]: state.filter.value}});
      }
      for (const [field, value] of Object.entries(state.facets)) {
        clauses.push({term: {[field]: value}});
      }
      if (clauses.length === 1) message.query = clauses[0];
      else if (clauses.length > 1) message.query = {bool: {must: clauses}};
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
        action: "subscribe", resource_types: [cfg.type],
        all_projects: Boolean(cfg.allProjects && state.identity && state.identity.admin),
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
        ? `live \u00b7 first ${shown} of ${frame.total}` : "live");
      el.conn.dataset.full = "true";
      el.conn.dataset.count = String(shown);
      state.fromResults = true;
      updateFooter();
    }

    function onLeft(frame) {
      if (frame.resource_type !== cfg.type) return;
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
        case "token_expiring": checkSession(); break;   // Horizon may hold a newer one
        case "reauthenticated":
          if (state.renewal !== null) {     // accepted: now it is the session in force
            state.session = state.renewal;
            state.renewal = null;
          }
          break;
        case "error":
          if (frame.action === "authenticate") { state.renewal = null; break; }
          showError(`${frame.code}: ${frame.message || ""}`);
          break;
        default: break;
      }
    }

    function onAuthenticated(ws, frame) {
      const prev = state.identity;
      const same = prev && prev.user_id === frame.user_id
        && prev.project_id === frame.project_id && prev.admin === frame.admin;
      if (prev && !same) resetTable();    // someone else now: nothing of theirs stays
      state.identity = frame;
      if (cfg.allProjects && !frame.admin) {
        disconnect();
        setConn("offline", "not an admin");
        showError("This table shows every project and needs the admin role.");
        return;
      }
      subscribe(ws);
    }

    // Send Horizon's newer token on the open connection: subscription and cursor stay.
    function renew(session) {
      if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.identity) {
        state.session = session;
        return;
      }
      if (state.renewal !== null) return;     // one at a time: wait for the answer
      state.renewal = session;
      state.ws.send(JSON.stringify({action: "authenticate", token: session.token}));
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
        setConn("live", `live \u00b7 resumed ${n} ${n === 1 ? "change" : "changes"}`);
      } else if (first) {
        setConn("live", "live");
      } else {
        setConn("live", `live \u00b7 full resync, ${n} ${n === 1 ? "resource" : "resources"}`);
      }
      el.conn.dataset.full = String(Boolean(frame.full));
      el.conn.dataset.count = String(n);
      updateFooter();
    }

    // -- table ---------------------------------------------------------------------------

    function columnDefs() {
      const defs = (COLUMNS[cfg.type] || FALLBACK).slice();
      if (cfg.allProjects) defs.splice(1, 0, PROJECT);
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
          button.className = "btn btn-link sf-sort";
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
      const first = (COLUMNS[cfg.type] || FALLBACK)[0];
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
      return a.id < b.id;
    }

    // Keep ``state.order`` (the rows in table order): a binary search for the row's
    // place. The DOM follows at the next showPage.
    function place(row) {
      const order = state.order;
      const at = order.indexOf(row);
      if (at >= 0) order.splice(at, 1);
      let lo = 0, hi = order.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (precedes(row, order[mid])) hi = mid; else lo = mid + 1;
      }
      order.splice(lo, 0, row);
    }

    // The shown page's rows in the DOM, in order; nothing else. O(PAGE_ROWS).
    function showPage() {
      const pages = Math.max(1, Math.ceil(state.order.length / PAGE_ROWS));
      state.page = Math.min(state.page, pages - 1);
      const start = state.page * PAGE_ROWS;
      const shown = state.order.slice(start, start + PAGE_ROWS);
      const children = el.rows.children;
      shown.forEach((row, i) => {
        if (children[i] !== row.tr) el.rows.insertBefore(row.tr, children[i] || null);
      });
      while (children.length > shown.length) children[children.length - 1].remove();
      updateFooter();
    }

    function fillCell(td, c, doc, id, first) {
      const out = c.format(doc[c.field]);
      let node;
      if (out.badge) {
        node = document.createElement("span");
        node.className = `badge sf-badge sf-badge-${out.badge}`;
        node.textContent = out.text;
      } else {
        node = document.createTextNode(out.text);
      }
      const detail = cfg.search ? cfg.detailUrls[cfg.type] : cfg.detailUrl;
      if (first && detail) {              // Horizon's own detail page of the row
        const a = document.createElement("a");
        a.href = detail.replace("__ID__", encodeURIComponent(id));
        a.append(node);
        node = a;
      }
      td.replaceChildren(node);
      if (out.title) td.title = out.title; else td.removeAttribute("title");
    }

    // A changed cell is marked for a moment (class sf-changed). A class, not an
    // animation: at 200 changes/s hundreds of cells would animate at once, and a
    // 2,000-row table spent its frames in style and layout (docs/benchmarks.md).
    function flash(node) {
      node.classList.add("sf-changed");
      clearTimeout(node.sfFlash);
      node.sfFlash = setTimeout(() => node.classList.remove("sf-changed"), 1600);
    }

    // Fill a row's cells. Same columns as before: only the cells whose text changed
    // are touched (and flash); otherwise the cells are rebuilt, the <tr> stays.
    function renderRow(row, live) {
      const {tr, doc} = row;
      const id = tr.dataset.id;
      if (row.cols !== state.colsKey) {
        const tds = state.columns.map((c, i) => {
          const td = document.createElement("td");
          td.dataset.field = c.field;
          fillCell(td, c, doc, id, i === 0);
          return td;
        });
        tr.replaceChildren(...tds);
        row.cols = state.colsKey;
        return;
      }
      state.columns.forEach((c, i) => {
        const td = tr.children[i];
        const before = td.textContent, title = td.title;
        fillCell(td, c, doc, id, i === 0);
        if (live && (td.textContent !== before || td.title !== title)) flash(td);
      });
    }

    function applyEnvelope(env) {
      if (!env || env.resource_type !== cfg.type) return;
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
        row = {id, tr, doc, key: "", cols: null};
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
      const at = state.order.indexOf(row);
      if (at >= 0) state.order.splice(at, 1);
      row.tr.remove();
    }

    function resetTable() {
      state.rows.clear();
      state.order = [];
      state.page = 0;
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
      if (n > PAGE_ROWS) {
        const start = state.page * PAGE_ROWS;
        el.count.textContent = `Displaying ${start + 1}-${Math.min(n, start + PAGE_ROWS)}`
          + ` of ${n} items`;
      } else {
        el.count.textContent = n ? `Displaying ${n} ${n === 1 ? "item" : "items"}` : "";
      }
      if (el.prev) {
        el.prev.hidden = state.page === 0;
        el.next.hidden = (state.page + 1) * PAGE_ROWS >= n;
      }
    }

    // -- controls: Horizon's filter box (field and text), sortable headers ---------------

    function fillFilterFields() {
      const fields = FILTERS[cfg.type] || DEFAULT_FILTERS;
      el.filterField.replaceChildren(...fields.map(([field, label]) => {
        const option = document.createElement("option");
        option.value = field;
        option.textContent = `${label} =`;
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

    // A new subscription (filter, sort): a new connection and a full load.
    function resubscribe() {
      if (state.ended) return;
      disconnect();
      resetTable();
      showError("");
      state.attempt = 0;
      connect();
    }

    el.filterField.addEventListener("change", () => { if (el.filterValue.value) setFilter(); });
    if (el.prev) {
      el.prev.addEventListener("click", () => { state.page -= 1; showPage(); });
      el.next.addEventListener("click", () => { state.page += 1; showPage(); });
    }
    if (el.type) {
      el.type.addEventListener("change", () => {
        cfg.type = el.type.value;
        sessionStorage.setItem(TYPE_KEY, cfg.type);
        state.facets = {};
        state.sort = null;
        sessionStorage.removeItem(SORT_KEY);
        fillFilterFields();
        el.facets.replaceChildren();
        loadFacets();
        resubscribe();
      });
    }
    el.filterValue.addEventListener("input", () => {
      clearTimeout(state.filterTimer);
      state.filterTimer = setTimeout(setFilter, FILTER_DELAY);
    });
    el.filterValue.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {     // Horizon's filter box submits on Enter
        event.preventDefault();
        clearTimeout(state.filterTimer);
        setFilter();
      }
    });
    // Back online or back in view: retry now rather than at the end of the backoff.
    const retryNow = () => {
      if (state.timer && state.session && !state.ended) {
        state.attempt = Math.max(0, state.attempt - 1);
        connect();
      }
    };
    window.addEventListener("online", retryNow);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") retryNow();
    });
    window.addEventListener("pagehide", () => disconnect());

    fillFilterFields();
    updateFooter();
    start();
  }

  const boot = () => {
    for (const root of document.querySelectorAll("[data-sf-live-table]")) {
      if (!root.dataset.sfStarted) {
        root.dataset.sfStarted = "true";
        LiveTable(root);
      }
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
