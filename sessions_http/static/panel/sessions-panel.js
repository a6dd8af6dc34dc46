// <sessions-panel endpoint="/graphql">: "Where you're signed in", as a drop-in web component.
//
// It talks only to this service's GraphQL endpoint (the `endpoint` attribute), with the
// browser's psession cookie. Its map and styles come from beside this file; it never loads
// anything from elsewhere, and it needs no inline script or style (it works under a strict
// Content-Security-Policy: styles are constructed stylesheets).
//
// Theming: the CSS custom properties below (--sessions-panel-*), set on the element or above.

const PAST_SESSION = `
  edges { node {
    id tokenSuffix createdAt endedAt endReason clientIp
    device { browser browserVersion os osVersion deviceType }
    geo { city regionName countryCode lat lon isp org }
  } }
  pageInfo { hasNextPage endCursor }`;
const QUERY = `query SessionsPanel($first: Int!, $after: String) {
  me {
    id
    sessions {
      id tokenSuffix createdAt expiresAt lastSeenAt clientIp isCurrent
      isNewLocation impossibleTravel
      device { browser browserVersion os osVersion deviceType isMobile }
      geo { city regionName countryCode lat lon isp org isMobile isProxy isHosting }
    }
    history(first: $first, after: $after) { ${PAST_SESSION} }
  }
}`;
const HISTORY_QUERY = `query SessionsPanelHistory($first: Int!, $after: String) {
  me { history(first: $first, after: $after) { ${PAST_SESSION} } }
}`;
const REVOKE = `mutation SessionsPanelRevoke($id: ID!) { revokeSession(id: $id) }`;
const REVOKE_OTHERS = `mutation SessionsPanelRevokeOthers { revokeOtherSessions }`;
const EVENTS = `subscription SessionsPanelEvents { sessionEvents { type } }`;
const HISTORY_PAGE = 10;

const MESSAGES = {
  UNAUTHENTICATED: "Your session has ended; sign in again.",
  CURRENT_SESSION: "This is the device you are using; sign out here instead.",
  NOT_FOUND: "That session has already ended.",
  RATE_LIMITED: "Too many requests at once; try again in a moment.",
  UNAVAILABLE: "The sessions service is unavailable right now; try again in a moment.",
  NETWORK: "The sessions service could not be reached; check your connection and try again.",
  OTHER: "Something went wrong; try again.",
};
const HTTP_CODES = { 401: "UNAUTHENTICATED", 409: "CURRENT_SESSION", 429: "RATE_LIMITED", 503: "UNAVAILABLE" };
const SIGNAL_TEXT = {
  newLocation:
    "New location: none of your earlier sessions was here. If this was not you, sign it out.",
  impossibleTravel:
    "Impossible travel: nobody could have got here from your previous session's place in time. If this was not you, sign it out.",
};
const END_REASONS = { LOGOUT: "Signed out", REVOKED: "Signed out remotely", EXPIRED: "Expired" };

const STYLE = `
:host {
  --sessions-panel-bg: #ffffff;
  --sessions-panel-fg: #1b1f24;
  --sessions-panel-muted: #57606a;
  --sessions-panel-border: #d0d7de;
  --sessions-panel-accent: #0a58ca;
  --sessions-panel-danger: #b42318;
  --sessions-panel-warning-bg: #fff4e5;
  --sessions-panel-warning-fg: #7a3e00;
  --sessions-panel-land: #dfe3e8;
  --sessions-panel-shaded: #8fb3ef;
  --sessions-panel-marker: #0a58ca;
  --sessions-panel-current: #1a7f37;
  --sessions-panel-radius: 8px;
  --sessions-panel-font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  display: block;
  color: var(--sessions-panel-fg);
  background: var(--sessions-panel-bg);
  font: 15px/1.45 var(--sessions-panel-font);
}
@media (prefers-color-scheme: dark) {
  :host {
    --sessions-panel-bg: #0d1117;
    --sessions-panel-fg: #e6edf3;
    --sessions-panel-muted: #9da7b3;
    --sessions-panel-border: #30363d;
    --sessions-panel-accent: #6cb6ff;
    --sessions-panel-danger: #ff7b72;
    --sessions-panel-warning-bg: #3d2a00;
    --sessions-panel-warning-fg: #ffd58a;
    --sessions-panel-land: #2d333b;
    --sessions-panel-shaded: #2f5fa8;
    --sessions-panel-marker: #6cb6ff;
    --sessions-panel-current: #57d364;
  }
}
* { box-sizing: border-box; }
.panel { max-width: 960px; margin: 0 auto; padding: 16px; }
header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; justify-content: space-between; }
h2 { font-size: 1.4em; margin: 0; }
h3 { font-size: 1.1em; margin: 28px 0 8px; }
button {
  font: inherit; cursor: pointer; border-radius: var(--sessions-panel-radius);
  border: 1px solid var(--sessions-panel-border); background: transparent;
  color: var(--sessions-panel-fg); padding: 6px 12px; min-height: 36px;
}
button.danger { color: var(--sessions-panel-danger); border-color: currentColor; }
button.primary { background: var(--sessions-panel-accent); border-color: var(--sessions-panel-accent); color: var(--sessions-panel-bg); }
button:focus-visible, a:focus-visible { outline: 3px solid var(--sessions-panel-accent); outline-offset: 2px; }
button:disabled { opacity: 0.6; cursor: progress; }
.notice { margin: 12px 0; padding: 10px 12px; border-radius: var(--sessions-panel-radius); border: 1px solid var(--sessions-panel-border); }
.notice:empty { display: none; }
.notice.error { color: var(--sessions-panel-danger); border-color: currentColor; }
.map { margin: 16px 0; border: 1px solid var(--sessions-panel-border); border-radius: var(--sessions-panel-radius); overflow: hidden; }
.map svg { display: block; width: 100%; height: auto; }
.map .land { fill: var(--sessions-panel-land); stroke: var(--sessions-panel-bg); stroke-width: 0.5; }
.map .land.shaded { fill: var(--sessions-panel-shaded); }
.map .land.shaded.current { fill: var(--sessions-panel-current); }
.map .marker { fill: var(--sessions-panel-marker); stroke: var(--sessions-panel-bg); stroke-width: 2; }
.map .marker.current { fill: var(--sessions-panel-current); }
ul { list-style: none; margin: 0; padding: 0; }
li.session { display: grid; grid-template-columns: 40px 1fr auto; gap: 4px 12px; padding: 14px 0; border-top: 1px solid var(--sessions-panel-border); }
li.session:first-child { border-top: 0; }
.icon { width: 32px; height: 32px; color: var(--sessions-panel-muted); }
.icon svg { width: 32px; height: 32px; fill: none; stroke: currentColor; stroke-width: 1.6; }
.title { font-weight: 600; }
.this-device { display: inline-block; margin-left: 8px; padding: 0 8px; border-radius: 999px; font-size: 0.8em; font-weight: 600; color: var(--sessions-panel-bg); background: var(--sessions-panel-current); }
.line { color: var(--sessions-panel-muted); }
.badges { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 4px; }
.badge { font-size: 0.8em; padding: 0 8px; border: 1px solid var(--sessions-panel-border); border-radius: 999px; }
.warning { margin-top: 6px; padding: 6px 10px; border-radius: var(--sessions-panel-radius); background: var(--sessions-panel-warning-bg); color: var(--sessions-panel-warning-fg); }
.actions { align-self: start; }
.body { min-width: 0; overflow-wrap: anywhere; }
dialog { border: 1px solid var(--sessions-panel-border); border-radius: var(--sessions-panel-radius); background: var(--sessions-panel-bg); color: var(--sessions-panel-fg); max-width: min(420px, 92vw); }
dialog::backdrop { background: rgba(0, 0, 0, 0.45); }
dialog .buttons { display: flex; gap: 8px; justify-content: flex-end; margin-top: 16px; }
.empty { color: var(--sessions-panel-muted); }
@media (max-width: 480px) {
  .panel { padding: 10px; }
  li.session { grid-template-columns: 32px 1fr; }
  .actions { grid-column: 2; }
}
`;

// Device icons: outlines on a 24 x 24 grid.
const ICONS = {
  desktop: ["M3 4h18v12H3z", "M8 20h8", "M12 16v4"],
  mobile: ["M7 2h10v20H7z", "M11 18h2"],
  tablet: ["M4 3h16v18H4z", "M11 18h2"],
  bot: ["M5 8h14v11H5z", "M12 4v4", "M9 13h.01", "M15 13h.01", "M9 16h6"],
  unknown: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z", "M9.5 9.5a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .9-1 1.6v.6", "M12 17h.01"],
};
const SVG_NS = "http://www.w3.org/2000/svg";

let sheet = null;
function styles() {
  if (sheet === null) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
  }
  return sheet;
}

// An element, its attributes (on* are listeners) and its children (strings become text).
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

// The children that are there (replaceChildren would write `null` as text).
function present(...children) {
  return children.filter((c) => c !== null && c !== undefined && c !== false);
}

function svg(tag, attributes = {}) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

function icon(kind) {
  const picture = svg("svg", { viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" });
  for (const d of ICONS[kind] ?? ICONS.unknown) {
    picture.append(svg("path", { d, "stroke-linecap": "round", "stroke-linejoin": "round" }));
  }
  return h("span", { class: "icon" }, picture);
}

function flag(countryCode) {
  if (!/^[A-Z]{2}$/.test(countryCode ?? "")) return "";
  return String.fromCodePoint(...[...countryCode].map((c) => 0x1f1a5 + c.charCodeAt(0)));
}

function countryName(code) {
  try {
    return new Intl.DisplayNames([navigator.language], { type: "region" }).of(code) ?? code;
  } catch {
    return code;
  }
}

function exact(iso) {
  return new Intl.DateTimeFormat(navigator.language, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

function relative(iso) {
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const format = new Intl.RelativeTimeFormat(navigator.language, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(0, "minute");
}

// A time, in words, with the exact time on hover.
function time(iso, words = relative(iso)) {
  return h("time", { datetime: iso, title: exact(iso) }, words);
}

function deviceName(device) {
  const browser = [device?.browser, device?.browserVersion].filter(Boolean).join(" ");
  const os = [device?.os, device?.osVersion].filter(Boolean).join(" ");
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || "Unknown device";
}

function place(geo) {
  if (!geo?.countryCode) return "Unknown location";
  const parts = [geo.city, geo.regionName, countryName(geo.countryCode)].filter(Boolean);
  return `${flag(geo.countryCode)} ${[...new Set(parts)].join(", ")}`.trim();
}

class RequestFailed extends Error {
  constructor(code, detail) {
    super(MESSAGES[code] ?? MESSAGES.OTHER);
    this.code = code;
    this.detail = detail;
  }
}

export class SessionsPanel extends HTMLElement {
  static get observedAttributes() {
    return ["endpoint"];
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.shadowRoot.adoptedStyleSheets = [styles()];
    this.data = null;
    this.history = [];
    this.historyCursor = null;
    this.hasMoreHistory = false;
    this.world = null;
    this.socket = null;
    this.retry = 1000;
    this.listenedBefore = false;
    this.signedOut = false;
    this.onVisible = () => {
      if (document.visibilityState === "visible") this.load();
    };
  }

  get endpoint() {
    return this.getAttribute("endpoint") || "/graphql";
  }

  connectedCallback() {
    document.addEventListener("visibilitychange", this.onVisible);
    this.renderFrame();
    this.load();
    this.loadWorld();
    this.listen();
  }

  disconnectedCallback() {
    document.removeEventListener("visibilitychange", this.onVisible);
    this.closeSocket();
  }

  attributeChangedCallback(name, before, after) {
    if (before !== null && before !== after && this.isConnected) {
      this.closeSocket();
      this.load();
      this.listen();
    }
  }

  // -- talking to the service ----------------------------------------------------------------

  async request(query, variables = {}) {
    let response;
    try {
      response = await fetch(this.endpoint, {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" },
        body: JSON.stringify({ query, variables }),
      });
    } catch (error) {
      throw new RequestFailed("NETWORK", error);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const code = body?.errors?.[0]?.extensions?.code;
    if (!response.ok && !body?.data) throw new RequestFailed(code ?? HTTP_CODES[response.status] ?? "OTHER");
    return body ?? {};
  }

  async load() {
    try {
      const body = await this.request(QUERY, { first: HISTORY_PAGE, after: null });
      const me = body.data?.me;
      if (!me) throw new RequestFailed(body.errors?.[0]?.extensions?.code ?? "OTHER");
      this.data = me;
      this.signedOut = false;
      if (this.notice.classList.contains("error")) this.notify("");
      const page = me.history;
      this.history = page ? page.edges.map((e) => e.node) : [];
      this.historyCursor = page?.pageInfo.endCursor ?? null;
      this.hasMoreHistory = Boolean(page?.pageInfo.hasNextPage);
      this.render();
      if (!page) this.notify(MESSAGES.UNAVAILABLE, true);
    } catch (error) {
      this.fail(error);
    }
  }

  async moreHistory() {
    try {
      const body = await this.request(HISTORY_QUERY, { first: HISTORY_PAGE, after: this.historyCursor });
      const page = body.data?.me?.history;
      if (!page) throw new RequestFailed(body.errors?.[0]?.extensions?.code ?? "OTHER");
      this.history.push(...page.edges.map((e) => e.node));
      this.historyCursor = page.pageInfo.endCursor;
      this.hasMoreHistory = page.pageInfo.hasNextPage;
      this.render();
    } catch (error) {
      this.fail(error);
    }
  }

  async signOut(session) {
    const confirmed = await this.confirm(
      `Sign out ${deviceName(session.device)}?`,
      `${place(session.geo)} · ${session.clientIp}. It will have to sign in again.`,
      "Sign out",
    );
    if (!confirmed) return;
    try {
      const body = await this.request(REVOKE, { id: session.id });
      const code = body.errors?.[0]?.extensions?.code;
      if (code) throw new RequestFailed(code);
      await this.load();
      this.notify(`Signed out ${deviceName(session.device)}.`);
    } catch (error) {
      this.fail(error);
    }
  }

  async signOutOthers() {
    const others = (this.data?.sessions ?? []).filter((s) => !s.isCurrent).length;
    const confirmed = await this.confirm(
      "Sign out of all other sessions?",
      `${others} other ${others === 1 ? "session" : "sessions"} will have to sign in again. This device stays signed in.`,
      "Sign out all others",
    );
    if (!confirmed) return;
    try {
      const body = await this.request(REVOKE_OTHERS);
      const code = body.errors?.[0]?.extensions?.code;
      if (code) throw new RequestFailed(code);
      const count = body.data.revokeOtherSessions;
      await this.load();
      this.notify(`Signed out of ${count} other ${count === 1 ? "session" : "sessions"}.`);
    } catch (error) {
      this.fail(error);
    }
  }

  async loadWorld() {
    try {
      const response = await fetch(new URL("world-110m.json", import.meta.url));
      if (response.ok) this.world = await response.json();
    } catch {
      this.world = null; // no map: the list says it all
    }
    if (this.data) this.render();
  }

  // Live updates (the sessionEvents subscription, graphql-transport-ws); when the socket cannot
  // be had, the panel still reloads whenever its tab becomes visible again.
  listen() {
    if (typeof WebSocket === "undefined") return;
    const url = new URL(this.endpoint, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let socket;
    try {
      socket = new WebSocket(url, "graphql-transport-ws");
    } catch {
      return;
    }
    this.socket = socket;
    const again = this.listenedBefore;
    this.listenedBefore = true;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "connection_init" })));
    socket.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data.type === "connection_ack") {
        this.retry = 1000;
        socket.send(JSON.stringify({ id: "events", type: "subscribe", payload: { query: EVENTS } }));
        // Back after a drop: what changed meanwhile was not heard.
        if (again) this.scheduleLoad();
      } else if (data.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      } else if (data.type === "next") {
        this.scheduleLoad();
      } else if (data.type === "error" || data.type === "complete") {
        socket.close(1000); // refused (a limit): try again later
      }
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === 4401) {
        this.load(); // the session ended: the list says so
        return;
      }
      // Whatever closed it (a restart, a drop, a refused handshake), the list may be stale, or
      // the session over: load it, and listen again unless it has ended.
      this.load();
      if (this.isConnected && !this.signedOut) {
        setTimeout(() => this.isConnected && !this.socket && !this.signedOut && this.listen(), this.retry);
        this.retry = Math.min(this.retry * 2, 60000);
      }
    });
  }

  closeSocket() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
  }

  scheduleLoad() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.load(), 150);
  }

  // -- drawing ---------------------------------------------------------------------------------

  renderFrame() {
    this.notice = h("p", { class: "notice", role: "status", "aria-live": "polite" });
    this.content = h("div", { class: "content" }, h("p", { class: "empty" }, "Loading your sessions…"));
    this.dialog = h("dialog", { "aria-labelledby": "confirm-title" });
    this.shadowRoot.replaceChildren(
      h("section", { class: "panel", part: "panel", "aria-labelledby": "panel-title" },
        h("header", {}, h("h2", { id: "panel-title" }, "Where you're signed in")),
        this.notice,
        this.content,
        this.dialog,
      ),
    );
  }

  notify(text, isError = false) {
    this.notice.textContent = text;
    this.notice.classList.toggle("error", isError);
  }

  fail(error) {
    const code = error instanceof RequestFailed ? error.code : "OTHER";
    this.notify(error instanceof RequestFailed ? error.message : MESSAGES.OTHER, true);
    if (code === "UNAUTHENTICATED") {
      this.signedOut = true;
      this.data = null;
      this.content.replaceChildren();
      this.dispatchEvent(new CustomEvent("sessions-panel-signed-out", { bubbles: true, composed: true }));
    }
  }

  render() {
    const me = this.data;
    if (!me) return;
    const others = me.sessions.filter((s) => !s.isCurrent);
    const header = this.shadowRoot.querySelector("header");
    header.replaceChildren(
      ...present(
      h("h2", { id: "panel-title" }, "Where you're signed in"),
      others.length
        ? h("button", { class: "danger", type: "button", onclick: () => this.signOutOthers() }, "Sign out of all other sessions")
        : null,
      ),
    );
    this.content.replaceChildren(
      ...present(
      this.renderMap(me.sessions),
      h("h3", {}, `Active sessions (${me.sessions.length})`),
      h("ul", { class: "sessions", "aria-label": "Active sessions" }, me.sessions.map((s) => this.renderSession(s))),
      h("h3", {}, "Past sessions"),
      this.history.length
        ? h("ul", { class: "history", "aria-label": "Past sessions" }, this.history.map((s) => this.renderPast(s)))
        : h("p", { class: "empty" }, "No past sessions."),
      this.hasMoreHistory ? h("button", { type: "button", onclick: () => this.moreHistory() }, "Show more") : null,
      ),
    );
  }

  renderMap(sessions) {
    const world = this.world;
    if (!world) return null;
    const map = svg("svg", {
      viewBox: `0 0 ${world.width} ${world.viewHeight ?? world.height}`,
      role: "img",
      "aria-label": "Map of where your active sessions are",
    });
    const shadedCodes = new Set(
      sessions.filter((s) => s.geo?.countryCode && (s.geo.lat == null || s.geo.lon == null)).map((s) => s.geo.countryCode),
    );
    const currentCode = sessions.find((s) => s.isCurrent && s.geo?.lat == null)?.geo?.countryCode;
    for (const country of world.countries) {
      const shaded = country.code !== null && shadedCodes.has(country.code);
      const kind = shaded ? (country.code === currentCode ? "land shaded current" : "land shaded") : "land";
      const shape = svg("path", { d: country.d, class: kind });
      if (shaded) shape.setAttribute("data-country", country.code);
      map.append(shape);
    }
    // Markers last, the current session's on top.
    const located = sessions.filter((s) => s.geo?.lat != null && s.geo?.lon != null);
    located.sort((a, b) => Number(a.isCurrent) - Number(b.isCurrent));
    for (const session of located) {
      const x = ((session.geo.lon + 180) * world.width) / 360;
      const y = ((90 - session.geo.lat) * world.height) / 180;
      const marker = svg("circle", {
        cx: x.toFixed(1), cy: y.toFixed(1), r: session.isCurrent ? 9 : 7,
        class: session.isCurrent ? "marker current" : "marker", "data-session": session.id,
      });
      const title = svg("title");
      title.textContent = `${deviceName(session.device)}, ${place(session.geo)}${session.isCurrent ? " (this device)" : ""}`;
      marker.append(title);
      map.append(marker);
    }
    return h("figure", { class: "map" }, map);
  }

  renderLocation(geo) {
    const badges = [];
    if (geo?.isMobile) badges.push("Mobile network");
    if (geo?.isProxy) badges.push("Proxy or VPN");
    if (geo?.isHosting) badges.push("Hosting provider");
    return [
      h("div", { class: "line" }, place(geo), geo?.isp || geo?.org ? ` · ${[...new Set([geo.isp, geo.org].filter(Boolean))].join(" / ")}` : ""),
      badges.length ? h("div", { class: "badges" }, badges.map((b) => h("span", { class: "badge" }, b))) : null,
    ];
  }

  renderSession(session) {
    const name = deviceName(session.device);
    const warnings = [];
    if (session.isNewLocation) warnings.push(SIGNAL_TEXT.newLocation);
    if (session.impossibleTravel) warnings.push(SIGNAL_TEXT.impossibleTravel);
    return h("li", { class: "session", "data-session": session.id, "data-current": session.isCurrent ? "true" : null },
      icon(session.device?.deviceType),
      h("div", { class: "body" },
        h("div", { class: "title" }, name, session.isCurrent ? h("span", { class: "this-device" }, "This device") : null),
        this.renderLocation(session.geo),
        h("div", { class: "line" },
          `${session.clientIp} · started `, time(session.createdAt),
          session.lastSeenAt ? [" · active ", time(session.lastSeenAt)] : null,
          " · expires ", time(session.expiresAt),
        ),
        warnings.map((text) => h("p", { class: "warning", role: "note" }, text)),
      ),
      session.isCurrent
        ? null
        : h("div", { class: "actions" },
            h("button", { type: "button", class: "danger", "aria-label": `Sign out ${name}, ${place(session.geo)}`, onclick: () => this.signOut(session) }, "Sign out"),
          ),
    );
  }

  renderPast(session) {
    return h("li", { class: "session past", "data-session": session.id },
      icon(session.device?.deviceType),
      h("div", { class: "body" },
        h("div", { class: "title" }, deviceName(session.device)),
        this.renderLocation(session.geo),
        h("div", { class: "line" },
          `${session.clientIp} · started `, time(session.createdAt), " · ",
          h("span", { class: "reason" }, END_REASONS[session.endReason] ?? session.endReason), " ", time(session.endedAt),
        ),
      ),
    );
  }

  // A modal question (the native <dialog>: focus stays in it, Escape cancels).
  confirm(title, text, action) {
    const dialog = this.dialog;
    return new Promise((resolve) => {
      const answer = (value) => {
        dialog.close();
        resolve(value);
      };
      dialog.replaceChildren(
        h("h3", { id: "confirm-title" }, title),
        h("p", {}, text),
        h("div", { class: "buttons" },
          h("button", { type: "button", onclick: () => answer(false) }, "Cancel"),
          h("button", { type: "button", class: "primary", onclick: () => answer(true) }, action),
        ),
      );
      dialog.oncancel = () => resolve(false);
      dialog.showModal();
      dialog.querySelector("button.primary").focus();
    });
  }
}

if (!customElements.get("sessions-panel")) customElements.define("sessions-panel", SessionsPanel);
