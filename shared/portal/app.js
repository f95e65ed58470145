// The Tidings portal: the organization's subscriptions, their health and attempts, through the
// same API integrators call, authenticated by the session cookie (never an API key). Every value
// that comes from the server or a receiver is put on the page as text, never as markup. It is
// loaded as a module: strict, deferred, and nothing of it leaks into the page's globals.

const state = { session: null };

// The page lives at <base>/portal/; the API at <base>/organizations/…
const api = (path) => new URL("../" + path.replace(/^\//, ""), document.baseURI).toString();

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-Tidings-CSRF"] = state.session ? state.session.csrfToken : "";
  }
  const response = await fetch(api(path), {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) {
    const fields = json && Array.isArray(json.invalidParams)
      ? json.invalidParams.map((p) => `${p.name}: ${p.reason}`).join("; ") : "";
    const reason = fields || (json && (json.developerMessage || json.message || json.detail || json.errorMessage)) ||
      text || response.statusText;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return json;
}

// Elements from a tag, attributes and children (strings become text nodes).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const main = () => document.getElementById("main");
function show(...nodes) {
  const target = main();
  target.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
  // Which view is on the page: a view replaced by a later one never overwrites it.
  target.dataset.view = location.hash || "#/";
  target.focus();
}
// What an action did, said above the page's content (in the flow: it never covers a row), and
// kept until the next action or until another page than `page` (by default this one) is shown.
function notice(text, page = location.hash) {
  const said = document.getElementById("notice");
  said.textContent = text;
  said.dataset.page = page;
}
const SESSION_ENDS = "tidings-portal-session-ends";
const SIGNED_OUT = "tidings-portal-signed-out";
function failure(error) {
  if (error.status === 401) {
    // The server says whether a session it was sent expired or was altered. Without one, the
    // tab remembers whether a session ended here (the browser dropped its cookie), or there
    // never was one in this browser.
    const ends = sessionStorage.getItem(SESSION_ENDS);
    const said = error.message.startsWith("Your portal session") ? error.message
      : sessionStorage.getItem(SIGNED_OUT) ? "You signed out of the portal in this browser. Open a new portal link to come back."
      : ends && Date.parse(ends) <= Date.now() ? "Your portal session expired. Ask for a new link."
        : "There is no portal session in this browser: it was never opened here, or the browser did not keep it. Open a portal link.";
    return el("p", { role: "alert", id: "expired" }, said);
  }
  return el("p", { role: "alert" }, "Something went wrong: ", error.message);
}

// Zettle's API takes version 1 UUIDs: the time in 100 ns since 1582, a random clock and node.
function uuidV1() {
  const t = BigInt(Date.now()) * 10000n + 0x01B21DD213814000n;
  const random = crypto.getRandomValues(new Uint8Array(8));
  random[2] |= 0x01; // a random node, as RFC 4122 marks one
  const hex = (n, width) => n.toString(16).padStart(width, "0");
  const low = hex(Number(t & 0xffffffffn), 8);
  const mid = hex(Number((t >> 32n) & 0xffffn), 4);
  const high = hex(Number((t >> 48n) & 0x0fffn) | 0x1000, 4);
  const clock = hex((((random[0] << 8) | random[1]) & 0x3fff) | 0x8000, 4);
  const node = Array.from(random.slice(2), (b) => hex(b, 2)).join("");
  return `${low}-${mid}-${high}-${clock}-${node}`;
}

// Puts a key panel at the top of the page and brings it into view, however far down the page
// was scrolled: it is shown this once.
function showKey(panel) {
  main().prepend(panel);
  panel.scrollIntoView({ block: "start" });
}

// A signing key, shown once: the server never shows it again.
function keyPanel(title, key) {
  return el("section", { class: "key", id: "signing-key", role: "status" },
    el("h2", {}, title),
    el("p", {}, "Copy it now: it is shown only this once. Your receiver verifies deliveries with it."),
    el("pre", { class: "mono" }, key));
}

// The Zettle events the session may subscribe to, as checkboxes.
async function eventChoices(chosen) {
  const events = (await call("GET", "organizations/self/events")).filter((e) => e.dialect === "zettle" && !e.deliveredToAll);
  return zettleEvents(events, chosen);
}
function zettleEvents(events, chosen) {
  return el("fieldset", { id: "event-choices" }, el("legend", {}, "Events (none ticked: all events)"),
    events.map((e) => el("label", { class: "choice" },
      el("input", { type: "checkbox", name: "events", value: e.name, checked: chosen.includes(e.name) }), e.name)));
}

function subscriptionForm(id, submitLabel, values, events, onsubmit) {
  return el("form", { id, class: "manage", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    await onsubmit({
      eventNames: data.getAll("events"),
      destination: data.get("destination"),
      contactEmail: data.get("contactEmail"),
    });
  } },
  el("label", {}, "Destination URL", el("input", { name: "destination", id: `${id}-destination`, type: "url", required: true, value: values.destination || "", placeholder: "https://example.com/webhooks" })),
  el("label", {}, "Contact email (alerts)", el("input", { name: "contactEmail", id: `${id}-contact`, type: "email", required: true, value: values.contactEmail || "" })),
  events,
  el("button", { type: "submit" }, submitLabel));
}

// A subscription's delivery options in words.
function describeDelivery(options) {
  const rate = options.rateLimit
    ? `at most ${options.rateLimit.perSecond} requests a second (burst ${options.rateLimit.burst})`
    : "no rate limit";
  return `${rate}; ${options.ordered ? "in order for each ordering key" : "unordered"}; ${options.filter ? "filtered" : "every message"}; ${options.transformation ? "transformed" : "sent as published"}`;
}

// The rate limit (empty: none) and ordering of a subscription, saved through the operators' route.
function deliveryForm(uuid, options) {
  const limit = options.rateLimit || {};
  return el("form", { id: "delivery-form", class: "manage", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    const perSecond = data.get("perSecond");
    const burst = data.get("burst");
    const body = {
      rateLimit: perSecond ? { perSecond: Number(perSecond), ...(burst ? { burst: Number(burst) } : {}) } : null,
      ordered: data.get("ordered") === "on",
      filter: options.filter || null,
      transformation: options.transformation || null,
    };
    try {
      await call("PUT", `organizations/self/subscriptions/${uuid}/delivery-options`, body);
      notice("Saved: messages already waiting follow it within 2 seconds.");
      await route();
    } catch (error) { notice(`Not saved: ${error.message}`); }
  } },
  el("p", { class: "muted" }, "A new limit applies within 2 seconds to messages already waiting, not only to new ones " +
    "(on AWS, a long backlog speeds up to a higher limit as its messages come back for their turn)."),
  el("label", {}, "Requests a second at most (empty: no limit)",
    el("input", { name: "perSecond", id: "rate-per-second", type: "number", min: "1", max: "1000", step: "1", value: limit.perSecond || "" })),
  el("label", {}, "Burst (empty: a tenth of the rate)",
    el("input", { name: "burst", id: "rate-burst", type: "number", min: "1", step: "1", value: limit.burst || "" })),
  el("label", { class: "choice" }, el("input", { type: "checkbox", name: "ordered", id: "ordered", checked: options.ordered }),
    "Deliver in order for each ordering key (the next message waits until the one before is delivered or dead-lettered)"),
  el("button", { type: "submit" }, "Save limits"));
}

// The filter's and the transformation's editor: an EventBridge event pattern and input
// transformer, tried on a payload (or the event's example) before they are saved; saving keeps
// the rate limit and order as they are.
function filterForm(uuid, options) {
  const result = el("div", { id: "filter-result", role: "status", "aria-live": "polite" });
  const read = (form) => {
    const data = new FormData(form);
    const filter = data.get("filter").trim();
    const transformation = data.get("transformation").trim();
    const sample = data.get("sample").trim();
    return { filter: filter || null, transformation: transformation || null, sample };
  };
  const form = el("form", { id: "filter-form", class: "manage", onsubmit: async (event) => {
    event.preventDefault();
    const { filter, transformation } = read(event.target);
    try {
      await call("PUT", `organizations/self/subscriptions/${uuid}/delivery-options`,
        { rateLimit: options.rateLimit, ordered: options.ordered, filter, transformation });
      notice(`Saved: ${filter ? "only messages the filter matches are sent" : "every message is sent"}, ` +
        `${transformation ? "as the transformation makes them" : "as published"}.`);
      await route();
    } catch (error) { notice(`Not saved: ${error.message}`); }
  } },
  el("p", { class: "muted" }, "An EventBridge event pattern, matched against {\"eventName\", \"messageId\", \"orderingKey\", \"payload\"} " +
    "before anything is queued: a message it does not match is not sent here (the message's page says \"filtered out\"). " +
    "Test events and replays are sent whatever the filter."),
  el("label", {}, "Filter (empty: every message)",
    el("textarea", { name: "filter", id: "filter-text", rows: "6", class: "mono", spellcheck: "false",
      placeholder: '{"payload": {"price": [{"numeric": [">", 100]}]}}' },
    options.filter ? JSON.stringify(options.filter, null, 2) : "")),
  el("label", {}, "Transformation (empty: sent as published)",
    el("textarea", { name: "transformation", id: "transformation-text", rows: "6", class: "mono", spellcheck: "false",
      placeholder: '{"inputPathsMap": {"total": "$.payload.amount"}, "inputTemplate": "{\\"total\\": <total>}"}' },
    options.transformation ? JSON.stringify(options.transformation, null, 2) : "")),
  el("p", { class: "hint" }, "An EventBridge input transformer: inputPathsMap names values of the message by path " +
    "($.payload.amount, $.eventName), inputTemplate places them (<total>). The payload it makes is what is signed and sent."),
  el("label", {}, "Try them on a payload (empty: the event's example)",
    el("textarea", { name: "sample", id: "filter-sample", rows: "4", class: "mono", spellcheck: "false", placeholder: '{"price": 250}' })),
  el("div", { class: "actions" },
    el("button", { type: "button", class: "secondary", id: "filter-preview", onclick: async () => {
      const { filter, transformation, sample } = read(form);
      let payload;
      try {
        payload = sample ? JSON.parse(sample) : undefined;
      } catch (error) {
        result.replaceChildren(el("p", { class: "bad" }, `The payload is not JSON: ${error.message}`));
        return;
      }
      try {
        const tried = await call("POST", `organizations/self/subscriptions/${uuid}/delivery-options/preview`,
          { filter, transformation, ...(payload === undefined ? {} : { payload }) });
        result.replaceChildren(
          el("p", { class: tried.matches ? "ok" : "bad", id: "filter-verdict" },
            tried.matches ? "Sent: the filter matches this message." : "Kept back: the filter does not match this message."),
          el("pre", { class: "mono wrapped" }, JSON.stringify(tried.document, null, 2)),
          tried.transformationError
            ? el("p", { class: "bad", id: "transformation-verdict" }, tried.transformationError)
            : el("div", {}, el("p", { id: "transformation-verdict" }, "The payload sent:"),
              el("pre", { class: "mono wrapped", id: "transformed" }, JSON.stringify(tried.payload, null, 2))));
      } catch (error) {
        result.replaceChildren(el("p", { class: "bad", id: "filter-verdict" }, error.message));
      }
    } }, "Preview"),
    el("button", { type: "submit" }, "Save")),
  result);
  return form;
}

const percent = (rate) => (rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + " %");
const ms = (value) => (value === null || value === undefined ? "–" : value + " ms");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
const hourOf = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const share = (part, whole) => (whole ? Math.round((part / whole) * 100) : 0);

// Attempts per hour: each bar as tall as the hour's attempts, its failed share in red on top.
// The full chart has axes (attempts up the side, hours along the bottom) and a legend; the
// compact one, in the list, is the bars alone.
function chart(hourly, { compact } = {}) {
  const top = Math.max(1, ...hourly.map((h) => h.attempts));
  const [width, height] = compact ? [96, 24] : [480, 120];
  const [left, bottom] = compact ? [0, 0] : [36, 18];
  const plot = { x: left, w: width - left - 4, h: height - bottom - 4 };
  const step = plot.w / Math.max(1, hourly.length);
  const y = (count) => 4 + plot.h - (count / top) * plot.h;
  const bars = hourly.map((h, i) => {
    const x = plot.x + i * step + 0.5;
    const failedTop = y(h.attempts);
    const okTop = y(h.attempts - h.failed);
    return svg("g", {},
      svg("title", {}, `${when(h.hour)}: ${h.attempts} attempts, ${h.failed} failed (${share(h.failed, h.attempts)} %)`),
      svg("rect", { class: "ok-bar", x, y: okTop, width: Math.max(1, step - 1), height: Math.max(0, 4 + plot.h - okTop) }),
      svg("rect", { class: "failed-bar", x, y: failedTop, width: Math.max(1, step - 1), height: Math.max(0, okTop - failedTop) }));
  });
  const attempts = hourly.reduce((n, h) => n + h.attempts, 0);
  const failed = hourly.reduce((n, h) => n + h.failed, 0);
  const label = `Attempts per hour over the last ${hourly.length} hours: ${attempts} attempts, ${failed} failed (${share(failed, attempts)} %)`;
  const axes = compact ? [] : [
    svg("line", { class: "axis", x1: left, y1: 4, x2: left, y2: 4 + plot.h }),
    svg("line", { class: "axis", x1: left, y1: 4 + plot.h, x2: width - 4, y2: 4 + plot.h }),
    svg("text", { class: "tick", x: left - 4, y: 12, "text-anchor": "end" }, String(top)),
    svg("text", { class: "tick", x: left - 4, y: 4 + plot.h, "text-anchor": "end" }, "0"),
    hourly.length ? svg("text", { class: "tick", x: left, y: height - 2 }, hourOf(hourly[0].hour)) : null,
    hourly.length ? svg("text", { class: "tick", x: width - 4, y: height - 2, "text-anchor": "end" }, "now") : null,
  ].filter(Boolean);
  const drawing = svg("svg", { class: compact ? "chart compact" : "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label), axes, bars);
  if (compact) return drawing;
  return el("figure", { class: "chart-figure", id: "chart" }, drawing,
    el("figcaption", { class: "muted" }, el("span", { class: "key ok-key" }, "■"), " answered 2xx  ",
      el("span", { class: "key failed-key" }, "■"), " failed — attempts per hour, the last 24 hours; the side shows attempts in the busiest hour"));
}

// What became of the messages of the last 24 hours (each once), and then the attempts'
// figures: two different things, named apart.
function messageHealth(h) {
  const m = h.messages;
  return m.total === 0 ? "No messages in the last 24 hours"
    : `${m.delivered} of ${m.total} messages delivered · ${m.failed} failed (dead letters) · ${m.retrying} still retrying`;
}
function attemptHealth(h) {
  return `${h.attempts} attempts, ${percent(h.successRate)} answered 2xx · p50 ${ms(h.latencyP50Ms)} · p99 ${ms(h.latencyP99Ms)}`;
}

// The three APIs by the names their clients know them by.
const API_NAMES = { zettle: "Zettle Pusher", metro: "Metro Markets", lagerkoll: "Lagerkoll" };

// A subscription's events in words: a Lagerkoll webhook's are a feature and its method.
function eventsOf(endpoint) {
  if (!endpoint.eventNames.length) return "all events";
  return endpoint.eventNames.map((name) => (endpoint.dialect === "lagerkoll" ? name.split("\u001f").join(" · ") : name)).join(", ");
}

// Metro's form, as its API takes it: one event, a URL its receiver confirms (a test_connection
// message it must answer {"status":"OK"}), and a fallback email.
function metroForm(id, submitLabel, values, events, onsubmit) {
  return el("form", { id, class: "manage", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    await onsubmit({ url: data.get("url"), event: data.get("event"), fallbackEmail: data.get("fallbackEmail") });
  } },
  el("p", { class: "muted" }, "Metro checks the URL first: it sends a test_connection message, which the receiver must answer with 200 and {\"status\":\"OK\"}."),
  el("label", {}, "Destination URL", el("input", { name: "url", id: `${id}-url`, type: "url", required: true, value: values.destination || "", placeholder: "https://example.com/webhooks" })),
  el("label", {}, "Event", el("select", { name: "event", id: `${id}-event`, required: true },
    events.map((e) => el("option", { value: e.name, selected: (values.eventNames || []).includes(e.name) }, e.name)))),
  el("label", {}, "Fallback email (alerts)", el("input", { name: "fallbackEmail", id: `${id}-contact`, type: "email", required: true, value: values.contactEmail || "" })),
  el("button", { type: "submit" }, submitLabel));
}

// Lagerkoll's form: a feature and its method, and a URL. Its API changes no webhook in place.
function lagerkollForm(id, onsubmit) {
  return el("form", { id, class: "manage", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    await onsubmit({ featureId: data.get("featureId"), featureMethod: data.get("featureMethod"), url: data.get("url") });
  } },
  el("label", {}, "Feature", el("input", { name: "featureId", id: `${id}-feature`, required: true, placeholder: "articles" })),
  el("label", {}, "Method", el("input", { name: "featureMethod", id: `${id}-method`, required: true, placeholder: "update" })),
  el("label", {}, "Destination URL", el("input", { name: "url", id: `${id}-url`, type: "url", required: true, placeholder: "https://example.com/webhooks" })),
  el("button", { type: "submit" }, "Create"));
}

// A new subscription in any API the session may use: Zettle's and Metro's by the events its
// scopes allow, Lagerkoll's (which has no scopes) always. Each is made through that API's own
// route, so it is checked as that API's clients are.
async function newSubscriptionForm() {
  const catalog = await call("GET", "organizations/self/events");
  const eventsOfApi = (dialect) => catalog.filter((e) => e.dialect === dialect && !e.deliveredToAll);
  const apis = ["zettle", "metro"].filter((d) => eventsOfApi(d).length).concat("lagerkoll");
  const form = el("div", { id: "create-fields" });
  const created = async (uuid, signingKey) => {
    await route();
    showKey(keyPanel(`Subscription ${uuid} created`, signingKey));
  };
  const choose = (dialect) => {
    if (dialect === "zettle") {
      form.replaceChildren(subscriptionForm("create-form", "Create", {}, zettleEvents(eventsOfApi("zettle"), []), async (fields) => {
        try {
          const made = await call("POST", "organizations/self/subscriptions", { uuid: uuidV1(), transportName: "WEBHOOK", ...fields });
          await created(made.uuid, made.signingKey);
        } catch (error) { notice(`Not created: ${error.message}`); }
      }));
    } else if (dialect === "metro") {
      form.replaceChildren(metroForm("create-form", "Create", {}, eventsOfApi("metro"), async (fields) => {
        try {
          const made = await call("POST", "openapi/v1/subscriptions", fields);
          await created(made.id, made.signingKey);
        } catch (error) { notice(`Not created: ${error.message}`); }
      }));
    } else {
      form.replaceChildren(lagerkollForm("create-form", async (fields) => {
        try {
          const made = (await call("POST", "v1/webhooks", fields)).webhooks[0];
          await created(made.guid, made.signingKey);
        } catch (error) { notice(`Not created: ${error.message}`); }
      }));
    }
  };
  const picker = el("label", {}, "API", el("select", { id: "create-api", onchange: (event) => choose(event.target.value) },
    apis.map((d) => el("option", { value: d }, API_NAMES[d]))));
  choose(apis[0]);
  return el("div", {}, el("p", { class: "muted" }, "Made through the chosen API's own route, as its clients make them."), picker, form);
}

async function listView() {
  document.title = "Webhooks · Tidings portal";
  const endpoints = await call("GET", "organizations/self/endpoints");
  const rows = endpoints.map((e) => {
    const health = el("td", { "data-label": "Last 24 h", class: "health" }, "…");
    call("GET", `organizations/self/subscriptions/${e.uuid}/stats`).then((h) => {
      health.replaceChildren(
        el("div", {}, messageHealth(h)),
        el("div", { class: "muted" }, attemptHealth(h)),
        chart(h.hourly, { compact: true }),
      );
    }, (error) => health.replaceChildren(failure(error)));
    return el("tr", { "data-uuid": e.uuid },
      el("td", { "data-label": "Destination" }, el("a", { href: `#/s/${e.uuid}`, class: "mono" }, e.destination)),
      el("td", { "data-label": "API" }, API_NAMES[e.dialect] || e.dialect),
      el("td", { "data-label": "Events" }, eventsOf(e)),
      el("td", { "data-label": "Status" }, el("span", { class: `status ${e.status}` }, e.status),
        e.failingSince ? el("div", { class: "muted" }, "failing since ", when(e.failingSince)) : null),
      health,
    );
  });
  const creating = el("div", { id: "create" });
  const newButton = el("button", { type: "button", id: "new-subscription", onclick: async () => {
    newButton.hidden = true;
    creating.replaceChildren(el("h2", {}, "New subscription"), await newSubscriptionForm());
    creating.querySelector("select, input").focus();
  } }, "New subscription");
  return [
    el("h1", {}, "Subscriptions"),
    el("p", {}, newButton),
    creating,
    endpoints.length === 0
      ? el("p", { id: "empty" }, "No subscriptions yet.")
      : el("table", { class: "responsive", id: "endpoints" },
        el("thead", {}, el("tr", {}, ["Destination", "API", "Events", "Status", "Last 24 h"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows)),
  ];
}

async function subscriptionView(uuid, query) {
  const endpoints = await call("GET", "organizations/self/endpoints");
  const endpoint = endpoints.find((e) => e.uuid === uuid);
  if (!endpoint) {
    return [el("p", { role: "alert" }, "No such subscription, or it is not yours to see."), el("a", { href: "#/" }, "All subscriptions")];
  }
  document.title = `${endpoint.destination} · Tidings portal`;
  // Switched off: said in a banner, and what would send to it is not offered.
  const off = endpoint.status === "INACTIVE";
  const params = new URLSearchParams(query);
  const search = new URLSearchParams({ limit: "100" });
  for (const name of ["status", "event", "since"]) if (params.get(name)) search.set(name, params.get(name));
  const [attempts, health, delivery] = await Promise.all([
    call("GET", `organizations/self/subscriptions/${uuid}/attempts?${search}`),
    call("GET", `organizations/self/subscriptions/${uuid}/stats`),
    call("GET", `organizations/self/subscriptions/${uuid}/delivery-options`),
  ]);

  const filters = el("form", { class: "filters", id: "filters", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    const next = new URLSearchParams();
    if (data.get("status")) next.set("status", data.get("status"));
    if (data.get("event")) next.set("event", data.get("event"));
    if (data.get("since")) next.set("since", new Date(data.get("since")).toISOString());
    location.hash = `#/s/${uuid}?${next}`;
  } },
  el("label", {}, "Outcome", el("select", { name: "status", id: "filter-status" },
    el("option", { value: "" }, "any"),
    el("option", { value: "delivered", selected: params.get("status") === "delivered" }, "delivered"),
    el("option", { value: "failed", selected: params.get("status") === "failed" }, "failed"))),
  el("label", {}, "Event", el("input", { name: "event", id: "filter-event", value: params.get("event") || "", placeholder: "any" })),
  el("label", {}, "Since", el("input", { name: "since", id: "filter-since", type: "datetime-local", "aria-describedby": "filter-since-hint" }),
    el("span", { class: "hint", id: "filter-since-hint" }, "Empty: every attempt kept (30 days), newest 100.")),
  el("button", { type: "submit" }, "Filter"));

  const rows = attempts.map((a) => el("tr", {},
    el("td", { "data-label": "At" }, when(a.at)),
    el("td", { "data-label": "Message" }, el("a", { class: "mono", href: `#/m/${encodeURIComponent(a.messageId)}` }, a.messageId)),
    el("td", { "data-label": "Event" }, a.eventName),
    el("td", { "data-label": "Attempt" }, String(a.attempt)),
    el("td", { "data-label": "Status" }, el("span", { class: a.status >= 200 && a.status < 300 ? "ok" : "bad" }, a.status === null ? "no answer" : String(a.status)),
      a.deadLettered ? el("div", { class: "muted" }, "dead letter") : null),
    el("td", { "data-label": "Latency" }, ms(a.latencyMs)),
    el("td", { "data-label": "Response", class: "excerpt mono" }, a.error || a.responseExcerpt),
    el("td", { "data-label": "" }, el("button", { class: "secondary", type: "button", "aria-label": `Request of attempt ${a.attempt} of ${a.messageId}`,
      onclick: async () => {
        try {
          const request = await call("GET", `organizations/self/subscriptions/${uuid}/attempts/${encodeURIComponent(a.messageId)}/${a.attempt}/request`);
          const text = `${request.method} ${request.destination}\n` +
            request.headers.map((h) => `${h.name}: ${h.value}\n`).join("") + "\n" +
            (request.body === null ? "(the body is made from the message, which is no longer kept)" : request.body);
          document.getElementById("request").replaceChildren(
            el("h2", {}, `Request of attempt ${a.attempt} of ${a.messageId}`),
            el("button", { class: "secondary", type: "button", id: "copy-request", onclick: async () => {
              try {
                await navigator.clipboard.writeText(text);
                notice("Request copied.");
              } catch (error) { notice(`Not copied: ${error.message}`); }
            } }, "Copy request"),
            el("pre", { class: "mono wrapped", id: "request-text" }, text));
          document.getElementById("request").scrollIntoView();
        } catch (error) { notice(`No request: ${error.message}`); }
      } }, "Request"), " ", el("button", { class: "secondary", type: "button", "aria-label": `Replay message ${a.messageId}`,
      onclick: async (event) => {
        // Said in the row too: the notice above may be out of view.
        const said = event.target.parentElement.querySelector(".row-note") || el("span", { class: "row-note", role: "status" });
        event.target.after(said);
        try {
          await call("POST", `organizations/self/subscriptions/${uuid}/replay`, { messageId: a.messageId });
          notice(`Message ${a.messageId} queued again.`);
          said.textContent = " Queued again.";
        } catch (error) {
          notice(`Replay refused: ${error.message}`);
          said.textContent = " Refused.";
        }
      } }, "Replay")),
  ));

  const edit = {
    zettle: async () => subscriptionForm("edit-form", "Save", endpoint, await eventChoices(endpoint.eventNames), async (fields) => {
      try {
        await call("PUT", `organizations/self/subscriptions/${uuid}`, { transportName: "WEBHOOK", ...fields });
        notice("Saved.");
        await route();
      } catch (error) { notice(`Not saved: ${error.message}`); }
    }),
    metro: async () => {
      const events = (await call("GET", "organizations/self/events")).filter((e) => e.dialect === "metro" && !e.deliveredToAll);
      return metroForm("edit-form", "Save", endpoint, events, async (fields) => {
        try {
          await call("PATCH", `openapi/v1/subscriptions/${uuid}`, fields);
          notice("Saved.");
          await route();
        } catch (error) { notice(`Not saved: ${error.message}`); }
      });
    },
    lagerkoll: async () => el("p", { id: "edit-form" }, "Lagerkoll's API changes no webhook in place: create a new one for the same feature " +
      "with the new URL (New subscription, on the list), then delete this one."),
  }[endpoint.dialect];
  const editing = el("div", { id: "editing" });
  const open = (title, form) => {
    editing.replaceChildren(el("h2", {}, title), form);
    editing.querySelector("input, select, button, p").scrollIntoView({ block: "nearest" });
  };

  return [
    el("p", {}, el("a", { href: "#/" }, "← All subscriptions")),
    el("div", { class: "page-head" },
      el("p", { class: "eyebrow" }, `${API_NAMES[endpoint.dialect] || endpoint.dialect} subscription`),
      el("h1", { class: "destination", id: "destination" }, endpoint.destination),
      el("p", { class: "facts" },
        el("span", { class: `status ${endpoint.status}`, id: "status" }, endpoint.status),
        endpoint.failingSince ? ` since ${when(endpoint.failingSince)}` : "",
        " · ", eventsOf(endpoint),
        " · ", el("span", { id: "delivery-options" }, describeDelivery(delivery)))),
    off ? el("p", { class: "banner", id: "off-banner", role: "status" },
      "This subscription is switched off: nothing is sent to it. Messages published meanwhile are kept as dead letters, " +
      "to replay once it is on. Switch it on to send tests and replays.") : null,
    el("section", { "aria-labelledby": "health-heading" },
      el("h2", { id: "health-heading" }, "Last 24 hours"),
      el("dl", { id: "health" },
        el("dt", {}, "Messages"), el("dd", { id: "message-health" }, messageHealth(health)),
        el("dt", {}, "Attempts"), el("dd", { id: "attempt-health" }, attemptHealth(health))),
      chart(health.hourly)),
    el("section", { "aria-labelledby": "actions-heading" },
      el("h2", { id: "actions-heading" }, "Actions"),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "send-test", disabled: off, onclick: async () => {
          try {
            const sent = await call("POST", `organizations/self/subscriptions/${uuid}/test`, {});
            notice(`Test ${sent.eventName} sent as message ${sent.messageId}.`);
            setTimeout(route, 1000);
          } catch (error) { notice(`Test refused: ${error.message}`); }
        } }, "Send a test event"),
        el("button", { type: "button", id: "edit", class: "secondary", onclick: async () => open("Edit", await edit()) }, "Edit"),
        el("button", { type: "button", id: "limits", class: "secondary", onclick: () => open("Rate limit and order", deliveryForm(uuid, delivery)) },
          "Rate limit and order"),
        el("button", { type: "button", id: "filter", class: "secondary", onclick: () => open("Filter and transform", filterForm(uuid, delivery)) },
          "Filter and transform")),
      editing,
    el("form", { class: "filters", id: "replay-failed", onsubmit: async (event) => {
      event.preventDefault();
      const sinceValue = new FormData(event.target).get("since");
      const since = new Date(sinceValue || Date.now() - 24 * 3600 * 1000).toISOString();
      const progress = document.getElementById("replay-progress");
      try {
        const started = new Date().toISOString();
        const replay = await call("POST", `organizations/self/subscriptions/${uuid}/replay-failed`, { since });
        const total = replay.messageIds.length;
        const wanted = new Set(replay.messageIds);
        const note = replay.notRetained ? ` (${replay.notRetained} no longer kept)` : "";
        // The deliveries run in the background; their new attempts say how far it got.
        for (let round = 0; round < 120; round++) {
          const attempts = await call("GET", `organizations/self/subscriptions/${uuid}/attempts?since=${encodeURIComponent(started)}&limit=500`);
          const last = new Map();
          for (const a of attempts) if (wanted.has(a.messageId) && !last.has(a.messageId)) last.set(a.messageId, a);
          const delivered = [...last.values()].filter((a) => a.status >= 200 && a.status < 300).length;
          const failing = last.size - delivered;
          progress.replaceChildren(
            el("progress", { max: String(Math.max(total, 1)), value: String(delivered), "aria-label": "Replay progress" }),
            ` ${delivered} of ${total} delivered, ${failing} failing again, ${total - last.size} waiting${note}`);
          if (last.size === total) break;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      } catch (error) { notice(`Replay refused: ${error.message}`); }
    } },
    el("label", {}, "Replay failed messages since", el("input", { type: "datetime-local", name: "since", id: "replay-since", "aria-describedby": "replay-since-hint" }),
      el("span", { class: "hint", id: "replay-since-hint" }, "Empty: the last 24 hours.")),
    el("button", { type: "submit", class: "secondary", disabled: off }, "Replay failed")),
      el("p", { id: "replay-progress", role: "status", "aria-live": "polite" })),
    el("section", { class: "danger-zone", "aria-labelledby": "danger-heading" },
      el("h2", { id: "danger-heading" }, "Danger zone"),
      el("div", { class: "danger-row" },
        el("p", {}, el("strong", {}, off ? "Switch on" : "Switch off"), el("br"),
          off ? "Deliveries start again; what was kept meanwhile can be replayed." : "Nothing is sent until it is switched on again; messages are kept as dead letters."),
        el("button", { type: "button", id: "toggle", class: "secondary", onclick: async () => {
          const active = off;
          try {
            await call("PATCH", `organizations/self/endpoints/${uuid}`, { active });
            notice(active ? "Switched on." : "Switched off: nothing is sent to it until you switch it on.");
            await route();
          } catch (error) { notice(`Refused: ${error.message}`); }
        } }, off ? "Switch on" : "Switch off")),
      el("div", { class: "danger-row" },
        el("p", {}, el("strong", {}, "Rotate the signing key"), el("br"),
          "A new key signs every delivery; the old one signs beside it for the time chosen, so the receiver can switch over."),
        el("div", { class: "actions" },
          el("label", { class: "inline" }, "Old key signs on for",
            el("select", { id: "overlap" },
              el("option", { value: "86400" }, "24 hours"), el("option", { value: "3600" }, "1 hour"), el("option", { value: "0" }, "no time"))),
          el("button", { type: "button", id: "rotate", class: "secondary", onclick: async () => {
            try {
              const rotated = await call("POST", `organizations/self/subscriptions/${uuid}/secret/rotate`,
                { overlapSeconds: Number(document.getElementById("overlap").value) });
              showKey(keyPanel("New signing key", rotated.signingKey));
            } catch (error) { notice(`Not rotated: ${error.message}`); }
          } }, "Rotate signing key"))),
      el("div", { class: "danger-row" },
        el("p", {}, el("strong", {}, "Delete"), el("br"), "The subscription and its signing key go for good; its attempts stay until they expire."),
        el("button", { type: "button", id: "delete", class: "danger-outline", onclick: (event) => {
          event.target.replaceWith(el("button", { type: "button", id: "confirm-delete", class: "danger", onclick: async () => {
            try {
              await call("DELETE", `organizations/self/endpoints/${uuid}`);
              notice("Deleted.", "#/");
              location.hash = "#/";
            } catch (error) { notice(`Not deleted: ${error.message}`); }
          } }, "Delete for good"));
          document.getElementById("confirm-delete").focus();
        } }, "Delete"))),
    el("section", { "aria-labelledby": "attempts-heading" },
      el("h2", { id: "attempts-heading" }, "Attempts"),
      filters,
      el("div", { id: "request" }),
      attempts.length === 0
        ? el("p", { id: "no-attempts" }, "No attempts match.")
        : el("table", { class: "responsive", id: "attempts" },
          el("thead", {}, el("tr", {}, ["At", "Message", "Event", "Attempt", "Status", "Latency", "Response", ""].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, rows))),
  ];
}

// "Sent to 2 subscriptions", and how many a filter kept it from.
function sentTo(deliveries) {
  const kept = deliveries.filter((d) => d.filteredOut).length;
  const sent = deliveries.length - kept;
  return `Sent to ${sent} subscription${sent === 1 ? "" : "s"}` + (kept ? `; filtered out by ${kept}` : "");
}

async function messageView(id) {
  const message = await call("GET", `organizations/self/messages/${encodeURIComponent(id)}`);
  document.title = `Message ${message.messageId} · Tidings portal`;
  return [
    el("p", {}, el("a", { href: "#/" }, "← All subscriptions")),
    el("h1", {}, "Message ", el("span", { class: "mono", id: "message-id" }, message.messageId)),
    el("dl", {},
      el("dt", {}, "Event"), el("dd", {}, message.eventName),
      el("dt", {}, "Published"), el("dd", {}, when(message.publishedAt))),
    el("h2", {}, "Payload"),
    el("pre", { class: "mono", id: "payload" }, JSON.stringify(message.payload, null, 2)),
    el("h2", { id: "sent-to" }, sentTo(message.deliveries)),
    el("ul", { id: "deliveries", class: "events" }, message.deliveries.map((d) => el("li", { "data-uuid": d.subscriptionUuid },
      el("h3", {}, el("a", { href: `#/s/${d.subscriptionUuid}`, class: "mono" }, d.destination), " ",
        el("span", { class: `status ${d.status}` }, d.status)),
      d.filteredOut ? el("p", { class: "muted filtered-out" }, "Filtered out: its filter does not match this message, so nothing was sent.") : null,
      el("ol", { reversed: true }, d.attempts.map((a) => el("li", {},
        `${when(a.at)} · attempt ${a.attempt} · `,
        el("span", { class: a.status >= 200 && a.status < 300 ? "ok" : "bad" }, a.status === null ? "no answer" : String(a.status)),
        ` · ${ms(a.latencyMs)} · `, el("span", { class: "mono" }, a.error || a.responseExcerpt))))))),
  ];
}

const VERIFY_SNIPPET = `# pip install standardwebhooks
from standardwebhooks.webhooks import Webhook
import base64

def verify(body: bytes, headers: dict, signing_key: str) -> dict:
    secret = "whsec_" + base64.b64encode(signing_key.encode()).decode()
    return Webhook(secret).verify(body, headers)  # raises if the signature is wrong`;

const DIALECT_HEADER = {
  zettle: "X-iZettle-Signature: lowercase hex HMAC-SHA256 of timestamp + \".\" + payload, keyed by the signing key.",
  metro: "x-signature: lowercase hex HMAC-SHA256 of x-timestamp + \".\" + the body, keyed by the signing key.",
};

async function eventsView() {
  document.title = "Event catalog · Tidings portal";
  const events = await call("GET", "organizations/self/events");
  return [
    el("h1", {}, "Event catalog"),
    el("p", {}, "Every event you may subscribe to, with an example payload. Every delivery carries Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature); verify them with any Standard Webhooks library:"),
    el("pre", { class: "mono", id: "snippet" }, VERIFY_SNIPPET),
    el("ul", { id: "events", class: "events" }, events.map((e) => el("li", { "data-event": e.name },
      el("h2", {}, e.name, " ", el("span", { class: "muted" }, `(${e.dialect}${e.aliases.length ? ", also " + e.aliases.join(", ") : ""})`)),
      el("p", { class: "muted" }, e.scope ? `Needs ${e.scope}.` : "Delivered to every subscription of its API.", " ", DIALECT_HEADER[e.dialect] || ""),
      el("pre", { class: "mono example" }, JSON.stringify(e.example, null, 2)),
    ))),
  ];
}

let routing = 0;
async function route() {
  // Only the latest navigation renders: a slower, earlier one is dropped when it lands.
  const mine = ++routing;
  const stale = () => mine !== routing;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  try {
    const match = path.match(/^\/s\/([0-9a-fA-F-]{36})$/);
    const message = path.match(/^\/m\/(.+)$/);
    const nodes = match ? await subscriptionView(match[1], query || "")
      : message ? await messageView(decodeURIComponent(message[1]))
        : path === "/events" ? await eventsView() : await listView();
    if (!stale()) show(...nodes);
  } catch (error) {
    if (!stale()) show(failure(error));
  }
}

async function start() {
  try {
    state.session = await call("GET", "portal/session");
    // Kept for this tab: a browser drops the cookie when the session ends, and the page can
    // then still say that it ended rather than that there was none.
    sessionStorage.setItem(SESSION_ENDS, state.session.expiresAt);
    sessionStorage.removeItem(SIGNED_OUT);
    document.getElementById("who").textContent =
      `Organization ${state.session.organization} · session ends ${when(state.session.expiresAt)}`;
  } catch (error) {
    show(failure(error));
    return;
  }
  const signOut = document.getElementById("sign-out");
  signOut.hidden = false;
  signOut.addEventListener("click", async () => {
    try {
      await call("POST", "portal/sign-out");
    } catch (error) {
      notice(`Not signed out: ${error.message}`);
      return;
    }
    window.removeEventListener("hashchange", route);
    sessionStorage.removeItem(SESSION_ENDS);
    sessionStorage.setItem(SIGNED_OUT, "1");
    state.session = null;
    signOut.hidden = true;
    document.getElementById("who").textContent = "";
    notice("");
    show(el("h1", {}, "Signed out"),
      el("p", { id: "signed-out" }, "You signed out: this session no longer opens the portal, in this browser or any other. Open a new portal link to come back."));
  });
  window.addEventListener("hashchange", () => {
    if (document.getElementById("notice").dataset.page !== location.hash) notice("");
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
