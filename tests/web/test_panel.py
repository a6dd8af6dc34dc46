"""The page at / and its <sessions-panel>, in a real browser: what it shows, signing sessions
out, the signed-out message, live updates, the map, accessibility (axe-core), and that nothing
breaks the page's Content-Security-Policy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from sessions_config.resources import Resources
from sessions_ops.demo import seed_demo
from store.models import utcnow
from tests.conftest import Users

AXE = Path(__file__).parent / "axe.min.js"
PATIENCE = 10_000  # ms for what the page shows to settle


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        yield ctx
    finally:
        await ctx.close()


async def open_page(
    context: BrowserContext, server: str, token: str | None
) -> tuple[Page, list[str]]:
    """The page at / signed in with this token; and the browser's console errors, as they come
    (a Content-Security-Policy violation is one)."""
    if token is not None:
        host = urlsplit(server).hostname
        await context.add_cookies(
            [{"name": "psession", "value": token, "domain": host, "path": "/"}]
        )
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(server + "/")
    return page, errors


def active(page: Page) -> Any:
    return page.locator("sessions-panel li.session:not(.past)")


async def test_the_page_shows_the_demo_users_sessions_and_their_map(
    context: BrowserContext, server: str, resources: Resources, output: Path
) -> None:
    seeded = await seed_demo(resources.store)
    page, errors = await open_page(context, server, seeded.token)
    await expect(active(page)).to_have_count(seeded.active, timeout=PATIENCE)
    current = page.locator("sessions-panel li[data-current]")
    await expect(current).to_have_count(1)
    await expect(current).to_contain_text("This device")
    await expect(current).to_contain_text("Chrome 131.0.0 on Mac OS X 10.15.7")
    await expect(current.get_by_role("button")).to_have_count(0)  # no "Sign out" on itself
    await expect(page.locator("sessions-panel li.past")).to_have_count(6)
    # The map: a marker for each session with coordinates, or its country shaded.
    sessions = await graphql_sessions(page)
    with_point = [s for s in sessions if s["geo"] and s["geo"]["lat"] is not None]
    countries = {s["geo"]["countryCode"] for s in sessions if s["geo"] and s["geo"]["lat"] is None}
    await expect(page.locator("sessions-panel .map .marker")).to_have_count(len(with_point))
    shaded = page.locator("sessions-panel .map .shaded")
    await expect(shaded).to_have_count(len(countries))
    assert len(with_point) + len(countries) >= 1
    assert {await s.get_attribute("data-country") for s in await shaded.all()} == countries
    await page.screenshot(path=output / "panel-1280.png", full_page=True)
    await page.set_viewport_size({"width": 360, "height": 800})
    await page.screenshot(path=output / "panel-360.png", full_page=True)
    # Nothing at 360 px is wider than the screen.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    assert not [e for e in errors if "Content Security Policy" in e], errors


async def graphql_sessions(page: Page) -> list[dict[str, Any]]:
    body = await page.evaluate(
        """async () => (await fetch('/graphql', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({query: '{ me { sessions { id geo { countryCode lat } } } }'})
           })).json()"""
    )
    sessions: list[dict[str, Any]] = body["data"]["me"]["sessions"]
    return sessions


async def test_signing_out_one_session_moves_it_to_history(
    context: BrowserContext, server: str, users: Users
) -> None:
    user = users.new_id()
    me = await users.session(user)
    phone = await users.session(user, ip="8.8.8.8", user_agent="Mozilla/5.0 (iPhone)")
    await users.session(user, ip="1.1.1.1")
    page, _ = await open_page(context, server, me.token)
    await expect(active(page)).to_have_count(3, timeout=PATIENCE)
    row = page.locator(f'sessions-panel li.session:not(.past)[data-session="{phone.record.id}"]')
    await row.get_by_role("button", name="Sign out").click()
    dialog = page.locator("sessions-panel dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Sign out").click()
    await expect(active(page)).to_have_count(2, timeout=PATIENCE)
    past = page.locator(f'sessions-panel li.past[data-session="{phone.record.id}"]')
    await expect(past).to_contain_text("Signed out remotely")
    await expect(page.locator("sessions-panel .notice")).to_contain_text("Signed out")


async def test_cancelling_with_the_keyboard_keeps_the_session(
    context: BrowserContext, server: str, users: Users
) -> None:
    user = users.new_id()
    me = await users.session(user)
    await users.session(user, ip="8.8.8.8")
    page, _ = await open_page(context, server, me.token)
    await expect(active(page)).to_have_count(2, timeout=PATIENCE)
    button = page.locator("sessions-panel li.session:not(.past) button", has_text="Sign out")
    await button.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("sessions-panel dialog")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(active(page)).to_have_count(2)


async def test_signing_out_of_all_other_sessions_leaves_one(
    context: BrowserContext, server: str, users: Users
) -> None:
    user = users.new_id()
    me = await users.session(user)
    for ip in ("8.8.8.8", "1.1.1.1", "9.9.9.9"):
        await users.session(user, ip=ip)
    page, _ = await open_page(context, server, me.token)
    await expect(active(page)).to_have_count(4, timeout=PATIENCE)
    await page.get_by_role("button", name="Sign out of all other sessions").click()
    await (
        page.locator("sessions-panel dialog")
        .get_by_role("button", name="Sign out all others")
        .click()
    )
    await expect(page.locator("sessions-panel .notice")).to_have_text(
        "Signed out of 3 other sessions.", timeout=PATIENCE
    )
    await expect(active(page)).to_have_count(1)
    await expect(page.locator("sessions-panel li[data-current]")).to_have_count(1)


async def test_it_updates_live_and_says_when_its_own_session_ends(
    context: BrowserContext, server: str, users: Users
) -> None:
    user = users.new_id()
    me = await users.session(user)
    page, _ = await open_page(context, server, me.token)
    await expect(active(page)).to_have_count(1, timeout=PATIENCE)
    # Signed in elsewhere: it appears without a reload.
    await wait_for_live(page)
    await users.session(user, ip="8.8.8.8")
    await expect(active(page)).to_have_count(2, timeout=PATIENCE)
    # Its own session ends elsewhere: it says so, in words.
    await users.resources.store.end(me.token, reason="revoked")
    await expect(page.locator("sessions-panel .notice")).to_have_text(
        "Your session has ended; sign in again.", timeout=PATIENCE
    )
    await expect(active(page)).to_have_count(0)


async def wait_for_live(page: Page) -> None:
    """Until the panel's subscription is set up (the server's /metrics counts it)."""
    await page.wait_for_function(
        """async () => {
             const text = await (await fetch('/metrics')).text();
             const m = /^sessions_api_live_subscriptions(?:\\{[^}]*\\})? (\\S+)$/m.exec(text);
             return m !== null && Number(m[1]) >= 1;
           }""",
        timeout=PATIENCE,
        polling=100,
    )


async def test_without_a_session_the_page_says_how_to_sign_in(
    context: BrowserContext, server: str
) -> None:
    page, _ = await open_page(context, server, "not-a-valid-token-at-all")
    await expect(page.get_by_role("heading", name="Where you're signed in")).to_be_visible()
    await expect(page.locator(".hint")).to_contain_text("sessions-api demo")
    await expect(page.locator("sessions-panel")).to_have_count(0)
    response = await page.request.get(server + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert (await page.request.get(server + "/favicon.ico")).ok


async def test_axe_finds_no_serious_or_critical_issues(
    browser: Browser, server: str, resources: Resources
) -> None:
    seeded = await seed_demo(resources.store)
    # axe is injected by the test itself, past the page's policy.
    ctx = await browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        page, _ = await open_page(ctx, server, seeded.token)
        await expect(active(page)).to_have_count(seeded.active, timeout=PATIENCE)
        await expect(page.locator("sessions-panel .map svg")).to_have_count(1, timeout=PATIENCE)
        await page.add_script_tag(content=AXE.read_text("utf-8"))
        results = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    finally:
        await ctx.close()
    bad = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], json.dumps(
        [
            {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in bad
        ],
        indent=1,
    )


async def test_show_more_pages_through_history(
    context: BrowserContext, server: str, users: Users
) -> None:
    user = users.new_id()
    me = await users.session(user)
    now = utcnow()
    for days in range(1, 13):
        await users.session(
            user,
            ip="8.8.8.8",
            created_at=now - timedelta(days=days, hours=1),
            expires_at=now - timedelta(days=days) + timedelta(days=30),
            ended_at=now - timedelta(days=days),
            end_reason="logout",
        )
    page, _ = await open_page(context, server, me.token)
    past = page.locator("sessions-panel li.past")
    await expect(past).to_have_count(10, timeout=PATIENCE)
    await page.get_by_role("button", name="Show more").click()
    await expect(past).to_have_count(12, timeout=PATIENCE)
    await expect(page.get_by_role("button", name="Show more")).to_have_count(0)


async def test_errors_are_said_in_words(context: BrowserContext, server: str, users: Users) -> None:
    user = users.new_id()
    me = await users.session(user)
    other = await users.session(user, ip="8.8.8.8")
    page, _ = await open_page(context, server, me.token)
    await expect(active(page)).to_have_count(2, timeout=PATIENCE)
    notice = page.locator("sessions-panel .notice")
    # The service answers 503 to the revoke (as it does while its storage is down)...
    unavailable = {"errors": [{"message": "x", "extensions": {"code": "UNAVAILABLE"}}]}
    await page.route(
        "**/graphql",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body=json.dumps(unavailable)
        ),
    )
    row = page.locator(f'sessions-panel li.session[data-session="{other.record.id}"]')
    await row.get_by_role("button", name="Sign out").click()
    await page.locator("sessions-panel dialog").get_by_role("button", name="Sign out").click()
    await expect(notice).to_have_text(
        "The sessions service is unavailable right now; try again in a moment."
    )
    # ... or cannot be reached at all.
    await page.unroute("**/graphql")
    await page.route("**/graphql", lambda route: route.abort())
    await row.get_by_role("button", name="Sign out").click()
    await page.locator("sessions-panel dialog").get_by_role("button", name="Sign out").click()
    await expect(notice).to_contain_text("could not be reached")
    assert "{" not in (await notice.text_content() or "")
    await expect(active(page)).to_have_count(2)


async def test_the_demo_link_signs_this_browser_in_on_localhost(
    context: BrowserContext, server: str, resources: Resources
) -> None:
    seeded = await seed_demo(resources.store)
    page = await context.new_page()
    await page.goto(f"{server}/#psession={seeded.token}")
    await expect(active(page)).to_have_count(seeded.active, timeout=PATIENCE)
    assert "psession" not in page.url  # the fragment is gone from the address bar
