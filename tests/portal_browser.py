#!/usr/bin/env python3
"""The portal in a real browser: Debian's chromium driven by Playwright, against `tidings serve`.

Starts `tidings serve` with a compressed retry schedule, two receivers (one healthy, one hostile:
it passes the destination check, then answers 500 with markup and script in its body), makes a
key and two subscriptions, publishes, and opens a portal link made by `tidings portal-link`.
Each flow asserts what the page shows and saves a screenshot under target/portal/. Prints the
time from opening the link to a rendered attempt list.

Run by scripts/test.sh with the venv's Python (which has `playwright`); set PORTAL_SCREENSHOTS to a
directory to also write the README's screenshots there (docs/: the list, a subscription's page, the
same at phone width). With `--base URL --key K --other-key K2`
it runs the same flows against a stack that is already running (the whole deployed stack under
emulation: tests/it/e2e_whole_stack.rs), making links through the API instead of the CLI; `--key` is
a key of ORG holding READ:PRODUCT, READ:USERINFO and READ:ORDER, `--other-key` one of another
organization. Every page is checked with axe-core (WCAG 2 A and AA, contrast included).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
TIDINGS = ROOT / "target" / "debug" / "tidings"
SHOTS = ROOT / "target" / "portal"
CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
ORG = "5b6a3f52-3c4e-11ee-be56-0242ac120002"
GOOD = "f02f80f8-8f35-11eb-8dcd-0242ac130003"
HOSTILE = "6eefcb26-912c-11eb-a8b3-0242ac130003"
HOSTILE_BODY = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script> down'
# Chromium on a closed network: no background fetches, no sandbox (root in CI), a fresh profile.
AXE = ROOT / "tests" / "lint" / "node_modules" / "axe-core" / "axe.min.js"
# What axe-core checks on every page: WCAG 2.0 and 2.1, levels A and AA (contrast included).
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def receiver(hostile: bool) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            # Zettle's destination check passes both; Metro's test_connection only the healthy one.
            check = json.loads(body or b"{}").get("eventName") == "TestMessage"
            if not check:
                with server.lock:
                    server.bodies.append((self.path, body))
            status, answer = (500, HOSTILE_BODY.encode()) if hostile and not check else (200, b'{"ok":true,"status":"OK"}')
            self.send_response(status)
            self.send_header("content-type", "text/html" if status == 500 else "application/json")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.lock, server.bodies = threading.Lock(), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def good_requests(server, path="/hooks"):
    """The bodies of the deliveries `server` got at `path`, in arrival order."""
    with server.lock:
        return [body for at, body in server.bodies if at == path]


def readme_shot(page, name, full_page=True):
    """The README's screenshots, when PORTAL_SCREENSHOTS names where they go."""
    if os.environ.get("PORTAL_SCREENSHOTS"):
        page.screenshot(path=Path(os.environ["PORTAL_SCREENSHOTS"]) / name, full_page=full_page)


def accessibility_violations(page):
    """axe-core's WCAG A and AA violations on the page as shown, as "rule: element" lines."""
    page.add_script_tag(path=AXE)
    found = page.evaluate("(tags) => axe.run(document, { runOnly: { type: 'tag', values: tags } })"
                          ".then((r) => r.violations.map((v) => v.id + ': ' + v.nodes.map((n) => n.target.join(' ')).join(', ')))",
                          WCAG)
    return found


def api(base, method, path, key, body=None):
    request = Request(f"{base}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


class Local:
    """Keys and links through the CLI on `tidings serve`'s data directory."""

    def __init__(self, data: Path):
        self.data = data

    def key(self) -> str:
        return subprocess.run([TIDINGS, "keys", "create", "--data-dir", self.data, "--org", ORG, "--scope",
                               "READ:PRODUCT", "--scope", "READ:USERINFO", "--scope", "READ:ORDER"],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]

    def link(self, base: str, _key: str) -> str:
        made = subprocess.run([TIDINGS, "portal-link", "--data-dir", self.data, "--org", ORG, "--url", base,
                               "--scope", "READ:PRODUCT", "--scope", "READ:USERINFO", "--ttl", "30m"],
                              check=True, capture_output=True, text=True)
        return made.stdout.strip().splitlines()[-1]

    def narrow_link(self, base: str, _key: str, scope: str) -> str:
        made = subprocess.run([TIDINGS, "portal-link", "--data-dir", self.data, "--org", ORG, "--url", base,
                               "--scope", scope, "--ttl", "30m"], check=True, capture_output=True, text=True)
        return made.stdout.strip().splitlines()[-1]

    def short_link(self, base: str, _key: str, ttl: int = 1) -> str:
        made = subprocess.run([TIDINGS, "portal-link", "--data-dir", self.data, "--org", ORG, "--url", base,
                               "--scope", "READ:PRODUCT", "--ttl", f"{ttl}s"], check=True, capture_output=True, text=True)
        return made.stdout.strip().splitlines()[-1]

    def other_link(self, base: str) -> str:
        other_org = str(uuid.uuid4())
        subprocess.run([TIDINGS, "keys", "create", "--data-dir", self.data, "--org", other_org, "--scope", "READ:PRODUCT"],
                       check=True, capture_output=True)
        return subprocess.run([TIDINGS, "portal-link", "--data-dir", self.data, "--org", other_org, "--url", base],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


class Deployed:
    """Keys given, links through the API (`POST …/portal-links`)."""

    def __init__(self, key: str, other_key: str):
        self.given, self.other_key = key, other_key

    def key(self) -> str:
        return self.given

    def link(self, base: str, key: str) -> str:
        return api(base, "POST", "/organizations/self/portal-links", key,
                   {"scopes": ["READ:PRODUCT", "READ:USERINFO"], "ttlSeconds": 1800})["url"]

    def narrow_link(self, base: str, key: str, scope: str) -> str:
        return api(base, "POST", "/organizations/self/portal-links", key, {"scopes": [scope], "ttlSeconds": 1800})["url"]

    def short_link(self, base: str, key: str, ttl: int = 1) -> str:
        return api(base, "POST", "/organizations/self/portal-links", key, {"ttlSeconds": ttl})["url"]

    def other_link(self, base: str) -> str:
        return api(base, "POST", "/organizations/self/portal-links", self.other_key, {"ttlSeconds": 1800})["url"]


class Flows:
    def __init__(self, page=None):
        self.passed, self.failed, self.page = 0, 0, page

    def run(self, name, flow):
        try:
            flow()
            self.passed += 1
            print(f"portal: {name}: ok")
        except Exception as error:  # one flow's failure is reported, the rest still run
            self.failed += 1
            shown = ""
            if self.page is not None:
                shown = f" (at {self.page.url}: {self.page.locator('main').inner_text()[:400]!r})"
            print(f"portal: {name}: FAILED: {error}{shown}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="a running stack's base URL (with its stage)")
    parser.add_argument("--key")
    parser.add_argument("--other-key")
    args = parser.parse_args()
    good, hostile = receiver(False), receiver(True)
    if args.base:
        return browse(args.base.rstrip("/"), Deployed(args.key, args.other_key), good, hostile, SHOTS / "deployed")
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        data.mkdir()
        serve = subprocess.Popen([TIDINGS, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
                                  "--retry-schedule", "0s,100ms,100ms"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            base = "http://" + serve.stdout.readline().split("http://", 1)[1].split(" ", 1)[0]
            return browse(base, Local(data), good, hostile, SHOTS)
        finally:
            serve.terminate()
            serve.wait(timeout=30)


def browse(base, stack, good, hostile, shots) -> int:
    shots.mkdir(parents=True, exist_ok=True)
    key = stack.key()
    for uuid_, server, events in [(GOOD, good, ["ProductCreated"]), (HOSTILE, hostile, ["ProductCreated"])]:
        api(base, "POST", "/organizations/self/subscriptions", key, {
            "uuid": uuid_, "transportName": "WEBHOOK", "eventNames": events,
            "destination": f"http://127.0.0.1:{server.server_address[1]}/hooks", "contactEmail": "ops@example.com"})
    for n in range(3):
        api(base, "POST", "/organizations/self/events", key,
            {"eventName": "ProductCreated", "payload": {"n": n}, "messageId": f"product-{n}"})
    deadline = time.time() + 30
    while time.time() < deadline:
        good_attempts = api(base, "GET", f"/organizations/self/subscriptions/{GOOD}/attempts", key)
        bad_attempts = api(base, "GET", f"/organizations/self/subscriptions/{HOSTILE}/attempts", key)
        if len(good_attempts) >= 3 and len(bad_attempts) >= 9:
            break
        time.sleep(0.1)
    link = stack.link(base, key)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        flows = Flows(page)
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        timing = {}

        def open_link():
            started = time.perf_counter()
            page.goto(link)
            expect(page).to_have_url(f"{base}/portal/")
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)
            timing["list"] = time.perf_counter() - started
            expect(page.locator("#who")).to_contain_text(ORG)
            expect(page.locator(f'tr[data-uuid="{HOSTILE}"] .status')).to_have_text("FAILING")
            expect(page.locator(f'tr[data-uuid="{GOOD}"] .status')).to_have_text("ACTIVE")
            # Messages (each once) apart from attempts.
            expect(page.locator(f'tr[data-uuid="{GOOD}"] .health')).to_contain_text("3 of 3 messages delivered")
            expect(page.locator(f'tr[data-uuid="{GOOD}"] .health')).to_contain_text("100.0 % answered 2xx")
            expect(page.locator(f'tr[data-uuid="{HOSTILE}"] .health')).to_contain_text(
                "0 of 3 messages delivered · 3 failed (dead letters) · 0 still retrying")
            expect(page.locator(f'tr[data-uuid="{HOSTILE}"] .health')).to_contain_text("9 attempts, 0.0 % answered 2xx")
            page.screenshot(path=shots / "01-subscriptions.png", full_page=True)
            readme_shot(page, "portal.png")

        def no_credentials_in_the_page():
            assert "tidings_portal" not in page.evaluate("document.cookie"), "the session cookie is HttpOnly"
            assert key not in page.content(), "no API key in the page"
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["tidings_portal"]
            assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict", session

        def attempts_of_a_subscription():
            started = time.perf_counter()
            page.locator(f'tr[data-uuid="{GOOD}"] a').click()
            expect(page.locator("#attempts tbody tr")).to_have_count(3)
            timing["attempts"] = time.perf_counter() - started
            expect(page.locator("#destination")).to_contain_text(f"127.0.0.1:{good.server_address[1]}")
            expect(page.locator("#attempts tbody tr").first).to_contain_text("200")
            expect(page.locator("#attempt-health")).to_contain_text("3 attempts, 100.0 % answered 2xx")
            expect(page.locator("#message-health")).to_contain_text("3 of 3 messages delivered")
            # The chart has its axes, says what it shows, and its bars are as tall as their hour.
            expect(page.locator("#chart svg line.axis")).to_have_count(2)
            expect(page.locator("#chart svg")).to_have_attribute("aria-label", re.compile(r"3 attempts, 0 failed \(0 %\)"))
            expect(page.locator("#chart figcaption")).to_contain_text("answered 2xx")
            stray = page.evaluate("[...document.getElementById('main').childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent)")
            assert not [t for t in stray if t.strip()], f"stray text on the page: {stray}"
            page.screenshot(path=shots / "02-attempts.png", full_page=True)
            readme_shot(page, "portal-subscription.png")

        def the_request_an_attempt_sent():
            page.goto(f"{base}/portal/#/s/{GOOD}")
            expect(page.locator("#attempts")).to_be_visible()
            page.locator("#attempts tbody tr").first.get_by_role("button", name="Request of attempt").click()
            request = page.locator("#request-text")
            expect(request).to_contain_text("webhook-signature: v1,")
            # Spelled as sent on the wire: the documented spellings, the rest lowercase.
            expect(request).to_contain_text("X-iZettle-Signature: ")
            expect(request).to_contain_text("User-Agent: Tidings/")
            expect(request).to_contain_text('"eventName":"ProductCreated"')
            assert request.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap", "long lines wrap"
            page.get_by_role("button", name="Copy request").click()
            expect(page.locator("#notice")).to_contain_text("Request copied.")
            copied = page.evaluate("navigator.clipboard.readText()")
            assert copied == request.inner_text(), "the copy is the request as shown"
            page.screenshot(path=shots / "22-request.png", full_page=True)

        def replay_a_message():
            before = len(api(base, "GET", f"/organizations/self/subscriptions/{GOOD}/attempts", key))
            page.locator("#attempts tbody tr").first.get_by_role("button", name="Replay").click()
            expect(page.locator("#notice")).to_contain_text("queued again")
            deadline = time.time() + 10
            while len(api(base, "GET", f"/organizations/self/subscriptions/{GOOD}/attempts", key)) == before:
                assert time.time() < deadline, "the replay was never delivered"
                time.sleep(0.05)
            page.reload()
            expect(page.locator("#attempts tbody tr")).to_have_count(before + 1)
            page.screenshot(path=shots / "03-replayed.png", full_page=True)

        def a_message_and_every_subscription_it_went_to():
            page.goto(f"{base}/portal/#/s/{GOOD}")
            page.get_by_role("link", name="product-1").first.click()
            expect(page.locator("#message-id")).to_have_text("product-1")
            expect(page.locator("#payload")).to_contain_text('"n": 1')
            expect(page.locator("#deliveries > li")).to_have_count(2)  # the healthy receiver and the hostile one
            expect(page.locator(f'#deliveries > li[data-uuid="{HOSTILE}"] ol li')).to_have_count(3)
            expect(page.locator(f'#deliveries > li[data-uuid="{GOOD}"]')).to_contain_text("200")
            page.screenshot(path=shots / "20-message.png", full_page=True)

        def replay_failed_messages_with_progress():
            page.goto(f"{base}/portal/#/s/{HOSTILE}")
            expect(page.locator("#attempts")).to_be_visible()
            page.get_by_role("button", name="Replay failed").click()  # the last 24 hours
            progress = page.locator("#replay-progress")
            # The receiver still fails: the messages are tried again and fail again. A long-failing
            # endpoint is probed one request at a time with growing waits (on the deployed stack up
            # to minutes), so the page is asked to show the replays counted as they fail, not all.
            expect(progress).to_contain_text(re.compile(r"0 of 3 delivered, [1-3] failing again, [0-2] waiting"), timeout=60000)
            page.screenshot(path=shots / "21-replay-failed.png", full_page=True)

        def hostile_excerpt_is_text():
            page.goto(f"{base}/portal/#/s/{HOSTILE}")
            expect(page.locator("#attempts tbody tr").first).to_contain_text("<img src=x onerror=")
            expect(page.locator("#message-health")).to_contain_text("0 of 3 messages delivered")
            expect(page.locator("#chart svg")).to_have_attribute("aria-label", re.compile(r"failed \(100 %\)"))
            expect(page.locator("#attempts tbody tr").first).to_contain_text("dead letter")
            assert page.locator("#attempts img, #attempts script").count() == 0, "receiver markup became elements"
            assert page.evaluate("window.__pwned") is None, "receiver script ran"
            assert not dialogs, dialogs
            page.screenshot(path=shots / "04-hostile-excerpt.png", full_page=True)

        def filter_attempts():
            view = page.locator("#main")
            page.select_option("#filter-status", "failed")
            page.get_by_role("button", name="Filter", exact=True).click()
            expect(view).to_have_attribute("data-view", f"#/s/{HOSTILE}?status=failed")  # the filtered view is shown
            rows = page.locator("#attempts tbody tr")
            expect(rows.first).to_contain_text("500")
            assert all("500" in rows.nth(i).inner_text() for i in range(rows.count()))
            page.select_option("#filter-status", "delivered")
            page.get_by_role("button", name="Filter", exact=True).click()
            expect(view).to_have_attribute("data-view", f"#/s/{HOSTILE}?status=delivered")
            expect(page.locator("#no-attempts")).to_have_text("No attempts match.")
            page.fill("#filter-event", "ProductUpdated")
            page.select_option("#filter-status", "")
            page.get_by_role("button", name="Filter", exact=True).click()
            expect(view).to_have_attribute("data-view", f"#/s/{HOSTILE}?event=ProductUpdated")
            expect(page.locator("#no-attempts")).to_be_visible()
            page.screenshot(path=shots / "05-filtered.png", full_page=True)

        def keyboard_only():
            page.goto(f"{base}/portal/")
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)
            focused = None
            for _ in range(6):  # past the header's links to the first subscription
                page.keyboard.press("Tab")
                focused = page.evaluate("document.activeElement.getAttribute('href')")
                if focused and focused.startswith("#/s/"):
                    break
            assert focused and focused.startswith("#/s/"), focused
            page.keyboard.press("Enter")
            expect(page.locator("#attempts")).to_be_visible()
            assert page.locator("label:has(#filter-status)").count() == 1, "every field has a label"
            # On to an action by Tab alone, shown focused, and used with Enter.
            for _ in range(30):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "send-test":
                    break
            assert page.evaluate("document.activeElement.id") == "send-test", "Send a test event is reachable by Tab"
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), f"the focused button shows it: {outline}"
            page.keyboard.press("Enter")
            expect(page.locator("#notice")).to_contain_text("Test ProductCreated sent")
            page.screenshot(path=shots / "06-keyboard.png", full_page=True)

        def phone_sized():
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.add_cookies(context.cookies())
            small = phone.new_page()
            small.goto(f"{base}/portal/")
            expect(small.locator("#endpoints tbody tr")).to_have_count(2)
            assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scroll"
            small.screenshot(path=shots / "07-phone.png", full_page=True)
            small.goto(f"{base}/portal/#/s/{HOSTILE}")
            expect(small.locator("#attempts")).to_be_visible()
            assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scroll"
            small.screenshot(path=shots / "28-phone-subscription.png")  # the first screen
            readme_shot(small, "portal-phone.png", full_page=False)
            phone.close()

        def event_catalog():
            page.goto(f"{base}/portal/")
            page.get_by_role("link", name="Event catalog").click()
            expect(page.locator("#events > li")).to_have_count(9)  # READ:PRODUCT, READ:USERINFO: no purchases
            expect(page.locator('li[data-event="ProductCreated"] .example')).to_contain_text('"name": "Kaffe"')
            assert page.locator('li[data-event="PurchaseCreated"]').count() == 0, "beyond the link's scopes"
            expect(page.locator("#snippet")).to_contain_text("standardwebhooks")
            page.screenshot(path=shots / "13-event-catalog.png", full_page=True)

        def send_a_test_event():
            page.goto(f"{base}/portal/#/s/{GOOD}")
            rows = page.locator("#attempts tbody tr")
            expect(page.locator("#health")).to_be_visible()
            before = rows.count()
            page.get_by_role("button", name="Send a test event").click()
            expect(page.locator("#notice")).to_contain_text("Test ProductCreated sent")
            expect(rows).to_have_count(before + 1, timeout=10000)
            page.screenshot(path=shots / "14-test-event.png", full_page=True)

        created = {}

        def create_a_subscription():
            page.goto(f"{base}/portal/")
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)
            page.get_by_role("button", name="New subscription").click()
            page.get_by_label("Destination URL").fill(f"http://127.0.0.1:{good.server_address[1]}/new")
            page.get_by_label("Contact email (alerts)").fill("shop@example.com")
            page.get_by_label("ProductUpdated").check()
            page.get_by_role("button", name="Create").click()
            panel = page.locator("#signing-key")
            expect(panel).to_contain_text("shown only this once")
            created["key"] = panel.locator("pre").inner_text().strip()
            assert len(created["key"]) == 64, created
            expect(page.locator("#endpoints tbody tr")).to_have_count(3)
            row = page.locator("#endpoints tbody tr", has_text="/new")
            created["uuid"] = row.get_attribute("data-uuid")
            page.screenshot(path=shots / "15-created.png", full_page=True)
            page.reload()
            expect(page.locator("#endpoints tbody tr")).to_have_count(3)
            assert created["key"] not in page.content(), "the key is shown once"

        def edit_a_subscription():
            page.goto(f"{base}/portal/#/s/{created['uuid']}")
            page.get_by_role("button", name="Edit").click()
            page.get_by_label("ProductCreated").check()
            page.get_by_label("ProductUpdated").uncheck()
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#notice")).to_contain_text("Saved.")
            expect(page.locator(".facts")).to_contain_text("ProductCreated")
            page.screenshot(path=shots / "16-edited.png", full_page=True)

        def set_a_rate_limit_and_order():
            page.goto(f"{base}/portal/#/s/{created['uuid']}")
            expect(page.locator("#delivery-options")).to_have_text("no rate limit; unordered; every message; sent as published")
            page.get_by_role("button", name="Rate limit and order").click()
            page.get_by_label("Requests a second at most").fill("20")
            page.get_by_label("Deliver in order").check()
            expect(page.locator("#delivery-form")).to_contain_text("applies within 2 seconds to messages already waiting")
            page.get_by_role("button", name="Save limits").click()
            expect(page.locator("#notice")).to_contain_text("Saved: messages already waiting follow it within 2 seconds.")
            expect(page.locator("#delivery-options")).to_have_text(
                "at most 20 requests a second (burst 2); in order for each ordering key; every message; sent as published")
            page.screenshot(path=shots / "24-rate-limit.png", full_page=True)
            # A refused value says why and changes nothing.
            page.get_by_role("button", name="Rate limit and order").click()
            page.get_by_label("Burst").fill("999")
            page.get_by_role("button", name="Save limits").click()
            expect(page.locator("#notice")).to_contain_text("burst")
            page.reload()
            expect(page.locator("#delivery-options")).to_contain_text("at most 20 requests a second (burst 2)")

        def switch_off_and_on():
            page.goto(f"{base}/portal/#/s/{created['uuid']}")
            page.get_by_role("button", name="Switch off").click()
            expect(page.locator("#status")).to_have_text("INACTIVE")
            # Said in a banner; what would send to it is not offered.
            expect(page.locator("#off-banner")).to_contain_text("switched off")
            expect(page.get_by_role("button", name="Send a test event")).to_be_disabled()
            expect(page.get_by_role("button", name="Replay failed")).to_be_disabled()
            page.screenshot(path=shots / "17-switched-off.png", full_page=True)
            page.get_by_role("button", name="Switch on").click()
            expect(page.locator("#status")).to_have_text("ACTIVE")
            expect(page.locator("#off-banner")).to_have_count(0)
            expect(page.get_by_role("button", name="Send a test event")).to_be_enabled()

        def rotate_the_signing_key():
            page.goto(f"{base}/portal/#/s/{created['uuid']}")
            page.select_option("#overlap", "0")
            # A short window scrolled to the button: the key, shown once above it, is brought
            # into view.
            page.set_viewport_size({"width": 1280, "height": 260})
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.get_by_role("button", name="Rotate signing key").click()
            rotated = page.locator("#signing-key pre")
            expect(rotated).to_have_text(re.compile(r"^[A-Za-z0-9]{64}$"))
            expect(page.locator("#signing-key h2")).to_be_in_viewport()
            page.set_viewport_size({"width": 1280, "height": 800})
            assert rotated.inner_text().strip() != created["key"]
            page.screenshot(path=shots / "18-rotated.png", full_page=True)

        def delete_with_a_second_click():
            page.goto(f"{base}/portal/#/s/{created['uuid']}")
            page.get_by_role("button", name="Delete", exact=True).click()
            page.get_by_role("button", name="Delete for good").click()
            expect(page).to_have_url(f"{base}/portal/#/")
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)
            page.screenshot(path=shots / "19-deleted.png", full_page=True)

        def unknown_subscription():
            page.goto(f"{base}/portal/#/s/{uuid.uuid4()}")
            expect(page.get_by_role("alert")).to_contain_text("No such subscription")
            page.screenshot(path=shots / "08-unknown.png")

        def a_link_opens_once():
            again = browser.new_context()
            other = again.new_page()
            other.goto(link)
            expect(other.locator("#refusal")).to_contain_text("opened already")
            other.screenshot(path=shots / "09-link-used.png")
            again.close()

        def an_expired_link_is_refused():
            short = stack.short_link(base, key)  # opens within a second
            time.sleep(1.5)
            again = browser.new_context()
            other = again.new_page()
            other.goto(short)
            expect(other.locator("#refusal")).to_contain_text("expired")
            other.screenshot(path=shots / "23-link-expired.png")
            again.close()

        def a_tampered_link_is_refused():
            again = browser.new_context()
            other = again.new_page()
            other.goto(link.replace("code=eyJ", "code=eyK"))
            expect(other.locator("#refusal")).to_contain_text("not valid")
            other.screenshot(path=shots / "10-link-tampered.png")
            again.close()

        def an_ended_session():
            ended = browser.new_context()
            other = ended.new_page()
            other.goto(f"{base}/portal/")
            expect(other.locator("#expired")).to_contain_text("no portal session in this browser")
            other.screenshot(path=shots / "11-session-ended.png")
            ended.close()

        def an_altered_and_an_expired_session_read_differently():
            # A session of three seconds, its cookie altered in another browser, then let expire.
            short = stack.short_link(base, key, ttl=3)
            again = browser.new_context()
            other = again.new_page()
            other.goto(short)
            cookie = next(c for c in again.cookies() if c["name"] == "tidings_portal")
            altered = browser.new_context()
            altered.add_cookies([{**cookie, "value": cookie["value"].replace(".", ".x", 1)}])
            tampered = altered.new_page()
            tampered.goto(f"{base}/portal/")
            expect(tampered.locator("#expired")).to_contain_text("was altered")
            tampered.screenshot(path=shots / "25-session-altered.png")
            altered.close()
            time.sleep(3.5)
            other.reload()
            expect(other.locator("#expired")).to_contain_text("Your portal session expired")
            other.screenshot(path=shots / "26-session-expired.png")
            again.close()

        def another_organizations_link_sees_only_its_own():
            made = stack.other_link(base)
            stranger = browser.new_context()
            other = stranger.new_page()
            other.goto(made)
            expect(other.locator("#empty")).to_have_text("No subscriptions yet.")
            other.goto(f"{base}/portal/#/s/{GOOD}")
            expect(other.get_by_role("alert")).to_contain_text("No such subscription")
            other.screenshot(path=shots / "12-other-organization.png")
            stranger.close()

        def a_filter_and_a_transformation_tried_on_a_payload_and_saved():
            page.goto(f"{base}/portal/#/s/{GOOD}")
            expect(page.locator("#attempts")).to_be_visible()
            page.get_by_role("button", name="Filter and transform").click()
            pattern = page.get_by_label("Filter (empty: every message)")
            sample = page.get_by_label("Try them on a payload")
            pattern.fill('{"payload": {"n": [{"numeric": [">", 5]}]}}')
            sample.fill('{"n": 1}')
            page.get_by_role("button", name="Preview").click()
            expect(page.locator("#filter-verdict")).to_contain_text("Kept back")
            sample.fill('{"n": 9}')
            page.get_by_role("button", name="Preview").click()
            expect(page.locator("#filter-verdict")).to_contain_text("Sent")
            page.screenshot(path=shots / "32-filter-preview.png", full_page=True)
            # A filter that cannot be read says where, and is not saved.
            pattern.fill('{"payload": {"n": [5,]}}')
            page.get_by_role("button", name="Preview").click()
            expect(page.locator("#filter-verdict")).to_contain_text("line 1, column")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#notice")).to_contain_text("Not saved")
            pattern.fill('{"payload": {"n": [{"numeric": [">", 5]}]}}')
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#notice")).to_contain_text("only messages the filter matches are sent")
            expect(page.locator("#delivery-options")).to_contain_text("filtered")
            # Kept back at publish: the message's page says so, and nothing reached the receiver.
            before = len(good_requests(good))
            for n in (0, 9):
                api(base, "POST", "/organizations/self/events", key,
                    {"eventName": "ProductCreated", "payload": {"n": n}, "messageId": f"filter-{n}"})
            page.goto(f"{base}/portal/#/m/filter-0")
            expect(page.locator(f'#deliveries > li[data-uuid="{GOOD}"] .filtered-out')).to_contain_text("Filtered out")
            expect(page.locator("#sent-to")).to_have_text("Sent to 1 subscription; filtered out by 1")
            page.screenshot(path=shots / "33-filtered-out.png", full_page=True)
            deadline = time.time() + 15
            while len(good_requests(good)) < before + 1:
                assert time.time() < deadline, "the matching message never arrived"
                time.sleep(0.05)
            time.sleep(0.5)
            got = [json.loads(body).get("messageId") for body in good_requests(good)[before:]]
            assert got == ["filter-9"], got
            # A transformation, tried on the sample, saved, and what the receiver then gets.
            page.goto(f"{base}/portal/#/s/{GOOD}")
            page.get_by_role("button", name="Filter and transform").click()
            page.get_by_label("Transformation (empty: sent as published)").fill(
                '{"inputPathsMap": {"n": "$.payload.n", "id": "$.messageId"}, "inputTemplate": "{\\"count\\": <n>, \\"ref\\": \\"<id>\\"}"}')
            page.get_by_label("Try them on a payload").fill('{"n": 9}')
            page.get_by_role("button", name="Preview").click()
            expect(page.locator("#transformed")).to_contain_text('"count": 9')
            page.screenshot(path=shots / "34-transformation-preview.png", full_page=True)
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#delivery-options")).to_contain_text("transformed")
            before = len(good_requests(good))
            api(base, "POST", "/organizations/self/events", key,
                {"eventName": "ProductCreated", "payload": {"n": 11}, "messageId": "filter-11"})
            deadline = time.time() + 15
            while len(good_requests(good)) < before + 1:
                assert time.time() < deadline, "the transformed message never arrived"
                time.sleep(0.05)
            envelope = json.loads(good_requests(good)[before])
            assert json.loads(envelope["payload"]) == {"count": 11, "ref": "filter-11"}, envelope
            # Removed again: every message is sent.
            page.goto(f"{base}/portal/#/s/{GOOD}")
            page.get_by_role("button", name="Filter and transform").click()
            page.get_by_label("Filter (empty: every message)").fill("")
            page.get_by_label("Transformation (empty: sent as published)").fill("")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#notice")).to_contain_text("every message is sent, as published")
            expect(page.locator("#delivery-options")).to_contain_text("every message")

        narrow = {}

        def a_narrower_link_shows_only_what_it_covers():
            # A link for order events only: none of the product subscriptions, only order events.
            narrow["context"] = browser.new_context(viewport={"width": 1280, "height": 800})
            orders = narrow["page"] = narrow["context"].new_page()
            orders.goto(stack.narrow_link(base, key, "READ:ORDER"))
            expect(orders.locator("#who")).to_contain_text(ORG)
            expect(orders.locator("#endpoints, #empty")).to_be_visible()
            for hidden in (GOOD, HOSTILE):
                assert orders.locator(f'tr[data-uuid="{hidden}"]').count() == 0, "beyond the link's scopes"
            orders.goto(f"{base}/portal/#/events")
            expect(orders.locator("#events > li").first).to_be_visible()
            assert orders.locator('li[data-event="ProductCreated"]').count() == 0, "no product events"
            assert orders.locator("#events > li", has_text="(metro").count() > 0, "Metro's order events"
            orders.goto(f"{base}/portal/#/s/{GOOD}")
            expect(orders.get_by_role("alert")).to_contain_text("No such subscription")
            orders.screenshot(path=shots / "27-narrower-link.png", full_page=True)

        def a_metro_subscription_is_made_changed_tested_and_deleted():
            orders = narrow["page"]
            orders.goto(f"{base}/portal/")
            orders.get_by_role("button", name="New subscription").click()
            # Zettle is not offered to an order-only link.
            expect(orders.locator("#create-api option")).to_have_text(["Metro Markets", "Lagerkoll"])
            orders.select_option("#create-api", "metro")
            orders.get_by_label("Destination URL").fill(f"http://127.0.0.1:{good.server_address[1]}/metro")
            orders.select_option("#create-form-event", index=0)
            orders.get_by_label("Fallback email (alerts)").fill("orders@example.com")
            orders.get_by_role("button", name="Create").click()
            expect(orders.locator("#signing-key pre")).to_have_text(re.compile(r"^[A-Za-z0-9]{64}$"))
            row = orders.locator("#endpoints tbody tr", has_text="/metro")
            expect(row).to_contain_text("Metro Markets")
            made = row.get_attribute("data-uuid")
            orders.goto(f"{base}/portal/#/s/{made}")
            expect(orders.locator(".eyebrow")).to_have_text("Metro Markets subscription")
            # Metro's rule: a URL whose receiver does not confirm the test_connection is refused,
            # in Metro's words, and nothing changes.
            orders.get_by_role("button", name="Edit").click()
            orders.get_by_label("Destination URL").fill(f"http://127.0.0.1:{hostile.server_address[1]}/metro")
            orders.get_by_role("button", name="Save").click()
            expect(orders.locator("#notice")).to_contain_text("url: Server response is not valid")
            orders.reload()
            expect(orders.locator("#destination")).to_contain_text(f"{good.server_address[1]}/metro")
            orders.get_by_role("button", name="Edit").click()
            orders.get_by_label("Destination URL").fill(f"http://127.0.0.1:{good.server_address[1]}/metro-2")
            orders.get_by_role("button", name="Save").click()
            expect(orders.locator("#notice")).to_contain_text("Saved.")
            expect(orders.locator("#destination")).to_contain_text("/metro-2")
            orders.get_by_role("button", name="Send a test event").click()
            expect(orders.locator("#notice")).to_contain_text("sent as message")
            expect(orders.locator("#attempts tbody tr")).to_have_count(1, timeout=10000)
            orders.get_by_role("button", name="Switch off").click()
            expect(orders.locator("#status")).to_have_text("INACTIVE")
            orders.get_by_role("button", name="Switch on").click()
            expect(orders.locator("#status")).to_have_text("ACTIVE")
            orders.screenshot(path=shots / "29-metro.png", full_page=True)
            orders.get_by_role("button", name="Delete", exact=True).click()
            orders.get_by_role("button", name="Delete for good").click()
            expect(orders.locator("#notice")).to_have_text("Deleted.")
            expect(orders.locator("#endpoints tbody tr", has_text="/metro")).to_have_count(0)

        def a_lagerkoll_webhook_is_made_tested_and_deleted():
            page.goto(f"{base}/portal/")
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)
            page.get_by_role("button", name="New subscription").click()
            page.select_option("#create-api", "lagerkoll")
            page.get_by_label("Feature").fill("articles")
            page.get_by_label("Method").fill("update")
            page.get_by_label("Destination URL").fill(f"http://127.0.0.1:{good.server_address[1]}/lagerkoll")
            page.get_by_role("button", name="Create").click()
            expect(page.locator("#signing-key pre")).to_have_text(re.compile(r"^[A-Za-z0-9]{64}$"))
            row = page.locator("#endpoints tbody tr", has_text="/lagerkoll")
            expect(row).to_contain_text("articles · update")
            expect(row).to_contain_text("Lagerkoll")
            page.goto(f"{base}/portal/#/s/{row.get_attribute('data-uuid')}")
            page.get_by_role("button", name="Edit").click()
            expect(page.locator("#edit-form")).to_contain_text("changes no webhook in place")
            page.get_by_role("button", name="Send a test event").click()
            expect(page.locator("#attempts tbody tr")).to_have_count(1, timeout=10000)
            page.screenshot(path=shots / "30-lagerkoll.png", full_page=True)
            page.get_by_role("button", name="Delete", exact=True).click()
            page.get_by_role("button", name="Delete for good").click()
            expect(page.locator("#endpoints tbody tr")).to_have_count(2)

        def sign_out_ends_the_session_everywhere():
            signed = browser.new_context()
            mine = signed.new_page()
            mine.goto(stack.link(base, key))
            expect(mine.locator("#endpoints tbody tr")).to_have_count(2)
            copy = next(c for c in signed.cookies() if c["name"] == "tidings_portal")
            mine.get_by_role("button", name="Sign out").click()
            expect(mine.locator("#signed-out")).to_contain_text("You signed out")
            mine.screenshot(path=shots / "31-signed-out.png")
            mine.reload()
            expect(mine.locator("#expired")).to_contain_text("You signed out")
            # A copy of the cookie taken before is refused too: the session ended on the server.
            elsewhere = browser.new_context()
            elsewhere.add_cookies([copy])
            stolen = elsewhere.new_page()
            stolen.goto(f"{base}/portal/")
            expect(stolen.locator("#expired")).to_contain_text("was signed out")
            elsewhere.close()
            signed.close()

        def every_page_meets_wcag_aa():
            # The page's own policy keeps injected scripts out; this context lets axe-core in.
            checked = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
            checked.add_cookies(context.cookies())
            view = checked.new_page()
            found = {}
            for name, path, ready in [
                ("subscriptions", "/portal/", "#endpoints"),
                ("a subscription", f"/portal/#/s/{GOOD}", "#attempts"),
                ("a failing subscription", f"/portal/#/s/{HOSTILE}", "#attempts"),
                ("a message", "/portal/#/m/product-1", "#deliveries"),
                ("the event catalog", "/portal/#/events", "#events"),
            ]:
                view.goto(f"{base}{path}")
                view.reload()  # a new document for each page: axe is added once to each
                expect(view.locator(ready)).to_be_visible()
                expect(view.locator("td.health", has_text="…")).to_have_count(0)  # filled in after the rows
                found[name] = accessibility_violations(view)
            view.goto(f"{base}/portal/")
            view.set_viewport_size({"width": 390, "height": 844})
            view.reload()
            expect(view.locator("#endpoints")).to_be_visible()
            found["subscriptions at phone width"] = accessibility_violations(view)
            refused = checked.new_page()
            refused.goto(link)  # opened already: the refusal page
            expect(refused.locator("#refusal")).to_be_visible()
            found["a refused link"] = accessibility_violations(refused)
            checked.close()
            bad = {name: v for name, v in found.items() if v}
            assert not bad, bad
            print(f"portal: axe-core ({', '.join(WCAG)}): no violations on {len(found)} pages")

        for name, flow in [
            ("open a link: every subscription with its status and 24 h health", open_link),
            ("no credential readable by the page", no_credentials_in_the_page),
            ("a subscription's attempts", attempts_of_a_subscription),
            ("the exact request an attempt sent", the_request_an_attempt_sent),
            ("replay one message", replay_a_message),
            ("a message and every subscription it went to", a_message_and_every_subscription_it_went_to),
            ("replay every failed message, with progress", replay_failed_messages_with_progress),
            ("a hostile response excerpt is shown as text", hostile_excerpt_is_text),
            ("filter attempts by outcome and event", filter_attempts),
            ("keyboard only", keyboard_only),
            ("phone-sized screen", phone_sized),
            ("the event catalog with examples and a receiver snippet", event_catalog),
            ("send a test event and watch its attempt appear", send_a_test_event),
            ("create a subscription: its signing key is shown once", create_a_subscription),
            ("edit a subscription's events", edit_a_subscription),
            ("set a rate limit and ordered delivery", set_a_rate_limit_and_order),
            ("switch a subscription off and on", switch_off_and_on),
            ("rotate a signing key: the new one shown once", rotate_the_signing_key),
            ("delete a subscription, with a second click", delete_with_a_second_click),
            ("an unknown subscription", unknown_subscription),
            ("a link opens once", a_link_opens_once),
            ("an expired link is refused", an_expired_link_is_refused),
            ("a tampered link is refused", a_tampered_link_is_refused),
            ("no session: the page says it ended", an_ended_session),
            ("an altered and an expired session read differently", an_altered_and_an_expired_session_read_differently),
            ("another organization's link sees only its own", another_organizations_link_sees_only_its_own),
            ("a narrower link shows only what it covers", a_narrower_link_shows_only_what_it_covers),
            ("a Metro subscription: made, refused and changed in Metro's terms, tested, deleted",
             a_metro_subscription_is_made_changed_tested_and_deleted),
            ("a Lagerkoll webhook: made, tested, deleted", a_lagerkoll_webhook_is_made_tested_and_deleted),
            ("sign out ends the session everywhere", sign_out_ends_the_session_everywhere),
            ("a filter and a transformation tried on a payload and saved; what they keep back and send",
             a_filter_and_a_transformation_tried_on_a_payload_and_saved),
            ("every page meets WCAG 2.1 AA (axe-core)", every_page_meets_wcag_aa),
        ]:
            flows.run(name, flow)
        if "context" in narrow:
            narrow["context"].close()
        browser.close()
    if "list" in timing and "attempts" in timing:
        print(f"portal: link opened to subscription list rendered: {timing['list'] * 1000:.0f} ms; "
              f"to its attempt list: {(timing['list'] + timing['attempts']) * 1000:.0f} ms")
    print(f"portal: {flows.passed} flows passed, {flows.failed} failed; screenshots in {shots}")
    return 1 if flows.failed else 0


if __name__ == "__main__":
    sys.exit(main())
