"""/docs: Redoc renders /openapi.json from the service's own files, offline."""

from __future__ import annotations

from playwright.async_api import Browser


async def test_docs_render_the_document_offline(browser: Browser, server: str) -> None:
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        outside: list[str] = []
        page.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if not r.url.startswith(server) and not r.url.startswith(("data:", "blob:"))
                else None
            ),
        )
        await page.goto(server + "/docs")
        await page.get_by_text("Your active sessions, located, and your past ones").first.wait_for(
            timeout=15_000
        )
    finally:
        await ctx.close()
    assert outside == []
