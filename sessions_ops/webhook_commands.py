"""`sessions-api webhooks …`: register, list, remove, test and replay endpoints, and run the
event workers (the expiry sweep and the dispatcher) on their own."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import signal
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson

from sessions_config.settings import Settings
from sessions_events.dispatcher import signed_headers
from sessions_events.ssrf import refusal, url_problem
from sessions_ops.output import say
from store import webhooks
from store.models import format_timestamp, utcnow

EVENT_TYPES = ("session.created", "session.ended", "session.revoked", "session.expired")


def event_types(text: str) -> list[str]:
    """`session.created,session.revoked`: the types an endpoint wants (empty: all)."""
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown event type {unknown[0]!r}; the types are {', '.join(EVENT_TYPES)}"
        )
    return list(dict.fromkeys(wanted))


def endpoint_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an endpoint id") from None


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def masked(secret: str) -> str:
    return f"whsec_…{secret[-4:]}"


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, separators=(",", ":")), flush=True)


def _described(endpoint: webhooks.Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.event_types or list(EVENT_TYPES),
        "secret": masked(endpoint.secret),
        "created_at": format_timestamp(endpoint.created_at),
        "disabled": endpoint.disabled_reason,
    }


async def add(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    problem = url_problem(args.url) or await refusal(
        args.url, allow_private=settings.webhook_allow_private
    )
    if problem is not None:
        say(f"{args.url[:200]!r} cannot be an endpoint: {problem}")
        return 2
    async with open_resources(settings, geo=False) as res:
        endpoint = await webhooks.add_endpoint(
            res.store.pool, url=args.url, event_types=args.events, secret=new_secret()
        )
    _print(
        {
            "id": endpoint.id,
            "url": endpoint.url,
            "events": endpoint.event_types or list(EVENT_TYPES),
            "secret": endpoint.secret,
        }
    )
    return 0


async def list_all(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        for endpoint in await webhooks.endpoints(res.store.pool):
            _print(_described(endpoint))
    return 0


async def remove(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        removed = await webhooks.remove_endpoint(res.store.pool, endpoint_id=args.id)
    if not removed:
        say(f"no endpoint {args.id}")
        return 1
    _print({"removed": args.id})
    return 0


async def _endpoint(settings: Settings, wanted: str) -> webhooks.Endpoint | None:
    from sessions_config.resources import open_resources

    async with open_resources(settings, geo=False) as res:
        found = [e for e in await webhooks.endpoints(res.store.pool) if e.id == wanted]
    if not found:
        say(f"no endpoint {wanted}")
        return None
    return found[0]


async def test(args: argparse.Namespace, settings: Settings) -> int:
    """Sends one `webhook.test` event now, signed like every other; exit 0 on a 2xx answer."""
    endpoint = await _endpoint(settings, args.id)
    if endpoint is None:
        return 1
    problem = await refusal(endpoint.url, allow_private=settings.webhook_allow_private)
    if problem is not None:
        say(f"refused: {problem}")
        return 1
    body = orjson.dumps(
        {"type": "webhook.test", "timestamp": format_timestamp(utcnow()), "data": {}}
    )
    headers = signed_headers(f"test_{uuid.uuid4()}", endpoint.secret, body)
    try:
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False
        ) as client:
            answer = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        say(f"no answer: {type(exc).__name__}: {exc}")
        return 1
    _print({"status": answer.status_code})
    return 0 if 200 <= answer.status_code < 300 else 1


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    since: datetime = args.since
    async with open_resources(settings, geo=False) as res:
        if not any(e.id == args.id for e in await webhooks.endpoints(res.store.pool)):
            say(f"no endpoint {args.id}")
            return 1
        queued = await webhooks.replay(res.store.pool, endpoint_id=args.id, since=since)
    _print({"queued": queued, "since": format_timestamp(since)})
    return 0


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """The event workers, until Ctrl-C or SIGTERM."""
    from sessions_config.resources import open_resources
    from sessions_events.workers import event_workers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings) as res, event_workers(res):
        say("event workers running (Ctrl-C stops)")
        await stop.wait()
    return 0


def add_commands(sub: Any, timestamp: Any) -> None:
    """The `webhooks` actions, on the `webhooks` command's subparsers."""
    cmd = sub.add_parser("add", help="register an endpoint; prints its id and secret")
    cmd.add_argument("url", help="an http:// or https:// URL on a public address")
    cmd.add_argument(
        "--events",
        type=event_types,
        default=[],
        help=f"comma-separated types (default: all of {', '.join(EVENT_TYPES)})",
    )
    cmd.set_defaults(func=add)
    sub.add_parser("list", help="the endpoints, secrets masked").set_defaults(func=list_all)
    cmd = sub.add_parser("remove", help="remove an endpoint and its pending deliveries")
    cmd.add_argument("id", type=endpoint_id, help="the endpoint's id (webhooks list shows it)")
    cmd.set_defaults(func=remove)
    cmd = sub.add_parser("test", help="send a signed webhook.test event now")
    cmd.add_argument("id", type=endpoint_id, help="the endpoint's id (webhooks list shows it)")
    cmd.set_defaults(func=test)
    cmd = sub.add_parser("replay", help="send again the events since a time")
    cmd.add_argument("id", type=endpoint_id, help="the endpoint's id (webhooks list shows it)")
    cmd.add_argument(
        "--since", type=timestamp, required=True, help="ISO 8601, e.g. 2026-03-01T10:00:00Z"
    )
    cmd.set_defaults(func=replay)
    sub.add_parser(
        "run", help="run the expiry sweep and the webhook dispatcher (as serve does)"
    ).set_defaults(func=run)
