"""What device a session's user agent describes, parsed with ua-parser's maintained uap-core rules.

Pure and cached: `parse_device` never raises, and looks at no more than the first
`MAX_USER_AGENT` characters (a 100 KB header costs what a 1 KB one does).

Fields: `browser` and `os` are ua-parser's family names ("Chrome", "Mobile Safari", "Mac OS X",
"Windows", ...) and None where ua-parser has none (its "Other"). `browser_version` and
`os_version` join major.minor.patch as far as they go ("131.0.0", "18.1"), None without a major.

`device_type`, first rule that applies:

1. "bot": ua-parser's device family is "Spider", or its browser family names a bot/crawler/spider
   (e.g. "Applebot"), or the agent carries a crawler's contact URL ("+http://...").
2. "unknown" for TVs and set-top boxes (SMART-TV, Android TV, Google TV, HbbTV, Chromecast, ...).
3. "tablet": iPad; Kindle/Silk; what ua-parser calls a tablet ("Generic Tablet", the brand
   "Generic_Android_Tablet", "BlackBerry Tablet OS"); Android whose agent lacks "Mobi" (browsers
   on Android phones say "Mobile", tablets don't).
4. "mobile": iPhone/iPod; Android with "Mobi"; Windows Phone/Mobile, BlackBerry, Symbian, KaiOS,
   Firefox OS and other phone systems; ua-parser's "Generic Smartphone"/"Generic Feature Phone".
5. "desktop": Windows, Mac OS X/macOS, Chrome OS, Linux and its distributions, the BSDs, Solaris.
6. "unknown": anything else, e.g. the empty string, junk, or "curl/8.0" (ua-parser names the
   browser "curl" but no OS and no device).

`is_mobile` is True for "mobile" and "tablet", False for "desktop", None for "bot" and "unknown".

Known limits of user-agent sniffing: an iPad in desktop mode (the iPadOS default) sends a Mac
user agent and so is "desktop"; Android apps' own HTTP clients (e.g. "Dalvik/2.1.0 (...Android
14; Pixel 8...)") never say "Mobile" and so are "tablet"; Windows 11 still sends "Windows NT
10.0", so its `os_version` is "10".
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Final, Literal

import ua_parser

from store.models import MAX_USER_AGENT

logger = logging.getLogger(__name__)

DeviceType = Literal["desktop", "mobile", "tablet", "bot", "unknown"]


CACHE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    device_type: DeviceType
    is_mobile: bool | None


UNKNOWN: Final = DeviceInfo(
    browser=None,
    browser_version=None,
    os=None,
    os_version=None,
    device_type="unknown",
    is_mobile=None,
)

# A browser family that is a crawler, e.g. "Applebot", "Slackbot-LinkExpanding", "Baiduspider".
# Only ua-parser's browser families are matched this way, never the raw agent, where phone names
# such as "CUBOT NOTE 7" would match.
_BOT_FAMILY = re.compile(r"(?:bot|crawler|spider|slurp)\b", re.IGNORECASE)
# Crawlers' convention of a contact URL: "(compatible; FooBot/1.0; +https://foo.example/bot)".
_BOT_CONTACT_URL = re.compile(r"\+https?://", re.IGNORECASE)
_TV = re.compile(
    r"smart-?tv|android ?tv|google ?tv|hbbtv|crkey|\bAFT[A-Z]|\bBRAVIA\b|\bTV Safari\b",
    re.IGNORECASE,
)
_KINDLE = re.compile(r"Kindle|\bSilk/|\bKF[A-Z]{2,4}\b")

_PHONE_OS: Final = frozenset(
    {
        "Windows Phone",
        "Windows Mobile",
        "BlackBerry OS",
        "Symbian OS",
        "Symbian^3",
        "Symbian^3 Anna",
        "Symbian^3 Belle",
        "KaiOS",
        "Firefox OS",
        "Nokia Series 40",
        "Nokia Series 30 Plus",
        "Brew MP",
        "Sailfish",
        "Ubuntu Touch",
    }
)
_PHONE_DEVICE: Final = frozenset({"Generic Smartphone", "Generic Feature Phone"})
_DESKTOP_OS: Final = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Mac OS",
        "macOS",
        "Chrome OS",
        "ChromeOS",
        "Linux",
        "Ubuntu",
        "Kubuntu",
        "Xubuntu",
        "Lubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "CentOS",
        "SUSE",
        "openSUSE",
        "Mint",
        "Linux Mint",
        "Arch Linux",
        "Gentoo",
        "Slackware",
        "Mandriva",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    }
)


def _family(family: str | None) -> str | None:
    """ua-parser's family, None for its placeholder "Other" (and for an empty one)."""
    if not family or family == "Other":
        return None
    return family


def _version(major: str | None, minor: str | None, patch: str | None) -> str | None:
    """major.minor.patch, as far as the parts go without a gap; None without a major."""
    parts: list[str] = []
    for part in (major, minor, patch):
        if not part:
            break
        parts.append(part)
    return ".".join(parts) or None


def _device_type(
    ua: str, browser: str | None, os: str | None, device: ua_parser.Device | None
) -> DeviceType:
    device_family = device.family if device is not None else None
    brand = device.brand if device is not None else None

    if (
        device_family == "Spider"
        or (browser is not None and _BOT_FAMILY.search(browser))
        or _BOT_CONTACT_URL.search(ua)
    ):
        return "bot"
    if _TV.search(ua) or os in {"tvOS", "ATV OS X"} or (os or "").startswith("Chromecast"):
        return "unknown"
    if (
        (device_family or "").startswith("iPad")
        or device_family == "Generic Tablet"
        or brand == "Generic_Android_Tablet"
        or os == "BlackBerry Tablet OS"
        or _KINDLE.search(ua)
        or (os == "Android" and "Mobi" not in ua)
    ):
        return "tablet"
    if (
        (device_family or "").startswith(("iPhone", "iPod"))
        or device_family in _PHONE_DEVICE
        or os == "iOS"
        or os == "Android"
        or os in _PHONE_OS
    ):
        return "mobile"
    if os in _DESKTOP_OS:
        return "desktop"
    return "unknown"


_IS_MOBILE: Final[dict[DeviceType, bool | None]] = {
    "desktop": False,
    "mobile": True,
    "tablet": True,
    "bot": None,
    "unknown": None,
}


def parse_device(user_agent: str) -> DeviceInfo:
    """The browser, OS and kind of device a User-Agent header describes; never raises."""
    # Cut before the cache, so the cache never holds more than MAX_USER_AGENT per entry.
    return _parse(user_agent[:MAX_USER_AGENT])


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parse(user_agent: str) -> DeviceInfo:
    ua = user_agent.strip()
    if not ua:
        return UNKNOWN
    if not ua.isascii():
        # The Rust matcher takes UTF-8: a lone surrogate would raise UnicodeEncodeError.
        ua = ua.encode("utf-8", "replace").decode("utf-8")
    try:
        result = ua_parser.parse(ua)
    except Exception:
        logger.warning("ua-parser failed on a user agent of %d characters", len(ua), exc_info=True)
        return UNKNOWN

    agent, os_result, device = result.user_agent, result.os, result.device
    browser = _family(agent.family) if agent is not None else None
    os = _family(os_result.family) if os_result is not None else None
    device_type = _device_type(ua, browser, os, device)
    return DeviceInfo(
        browser=browser,
        browser_version=(
            _version(agent.major, agent.minor, agent.patch)
            if agent is not None and browser is not None
            else None
        ),
        os=os,
        os_version=(
            _version(os_result.major, os_result.minor, os_result.patch)
            if os_result is not None and os is not None
            else None
        ),
        device_type=device_type,
        is_mobile=_IS_MOBILE[device_type],
    )


def cache_info() -> functools._CacheInfo:
    return _parse.cache_info()


def warm_up() -> None:
    """Compiles the rules now (about 0.2 s) rather than on the first request."""
    _parse("Mozilla/5.0 (X11; Linux x86_64)")
    _parse.cache_clear()
