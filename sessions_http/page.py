"""GET /: the "Where you're signed in" page (the <sessions-panel> web component and the page
around it, in static/panel/), and the favicon.

The page carries no inline script or style and is sent with a strict Content-Security-Policy.
A browser without an active psession cookie gets a note on how to sign in instead; locally,
the link `sessions-api demo` prints signs it in."""

from __future__ import annotations

import functools
from importlib import resources as package_files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sessions_config.resources import Resources
from sessions_http.cookie import session_token
from sessions_http.responses import NO_STORE
from store.errors import outage_of

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PANEL = '<sessions-panel endpoint="/graphql"></sessions-panel>'
SIGN_IN = """<section class="hint" aria-labelledby="hint-title">
  <h1 id="hint-title">Where you're signed in</h1>
  <p>You are not signed in. The portal's login service signs you in with the
  <code>psession</code> cookie; open this page again once you are.</p>
  <p>Trying it on this machine? Run <code>sessions-api demo</code> (or <code>make run</code>)
  and open the link it prints: it signs this browser in as the demo user, on localhost only.</p>
</section>"""


@functools.cache
def _asset(name: str) -> bytes:
    return (package_files.files("sessions_http") / "static" / "panel" / name).read_bytes()


def page(content: str) -> str:
    return _asset("index.html").decode("utf-8").replace("<!--CONTENT-->", content)


async def home(request: Request) -> Response:
    resources: Resources = request.app.state.resources
    token = session_token(request)
    signed_in = False
    if token:
        try:
            signed_in = await resources.store.authenticate(token) is not None
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            signed_in = True  # the panel says what is wrong, and tries again
    return HTMLResponse(page(PANEL if signed_in else SIGN_IN), headers=PAGE_HEADERS)


async def favicon(request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(_asset("favicon.svg"), media_type="image/svg+xml", headers=headers)
