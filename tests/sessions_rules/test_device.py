"""sessions_rules.device on real user agents: what ua-parser (uap-core rules) reports, and the
device_type / is_mobile rules layered on it. Pure: no database, no server."""

from __future__ import annotations

import time

import pytest

from sessions_rules.device import (
    DeviceInfo,
    DeviceType,
    cache_info,
    parse_device,
)
from store.models import MAX_USER_AGENT

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_OS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
CHROME_PIXEL_9 = (
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1"
)
CHROME_GALAXY_TAB = (
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Safari/537.36"
)
FIREFOX_ANDROID_TABLET = "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0"
KINDLE_FIRE_SILK = (
    "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Silk/3.68 like Chrome/39.0.2171.93 Safari/537.36"
)
WINDOWS_PHONE = (
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; "
    "Touch; NOKIA; Lumia 920)"
)
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT NOTE 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
# "Applebot" sits past ua-parser's 100-character window for its generic crawler rule, so whether
# ua-parser itself calls the device "Spider" depends on its matcher (the Rust one does, the
# pure-Python one says "Mac"); the browser family "Applebot" makes it a bot either way.
APPLEBOT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
)
SMART_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36"
)


def _info(
    browser: str | None,
    browser_version: str | None,
    os: str | None,
    os_version: str | None,
    device_type: DeviceType,
) -> DeviceInfo:
    is_mobile = {"desktop": False, "mobile": True, "tablet": True}.get(device_type)
    return DeviceInfo(browser, browser_version, os, os_version, device_type, is_mobile)


CASES: list[tuple[str, str, DeviceInfo]] = [
    # Chrome's reduced user agent: the version is always N.0.0.0, and macOS is frozen at 10_15_7.
    ("chrome-macos", CHROME_MAC, _info("Chrome", "131.0.0", "Mac OS X", "10.15.7", "desktop")),
    ("firefox-windows", FIREFOX_WINDOWS, _info("Firefox", "133.0", "Windows", "10", "desktop")),
    ("firefox-linux", FIREFOX_LINUX, _info("Firefox", "133.0", "Linux", None, "desktop")),
    ("firefox-ubuntu", FIREFOX_UBUNTU, _info("Firefox", "133.0", "Ubuntu", None, "desktop")),
    ("chrome-os", CHROME_OS, _info("Chrome", "131.0.0", "Chrome OS", "14541.0.0", "desktop")),
    ("safari-iphone", SAFARI_IPHONE, _info("Mobile Safari", "18.1", "iOS", "18.1", "mobile")),
    (
        "chrome-pixel-9",
        CHROME_PIXEL_9,
        _info("Chrome Mobile", "131.0.6778", "Android", "15", "mobile"),
    ),
    ("cubot-phone", CUBOT_PHONE, _info("Chrome Mobile", "131.0.0", "Android", "10", "mobile")),
    ("windows-phone", WINDOWS_PHONE, _info("IE Mobile", "10.0", "Windows Phone", "8.0", "mobile")),
    ("safari-ipad", SAFARI_IPAD, _info("Mobile Safari", "17.6", "iOS", "17.6", "tablet")),
    (
        "android-tablet",
        CHROME_GALAXY_TAB,
        _info("Chrome", "131.0.6778", "Android", "14", "tablet"),
    ),
    (
        "firefox-android-tablet",
        FIREFOX_ANDROID_TABLET,
        _info("Firefox Mobile", "133.0", "Android", "14", "tablet"),
    ),
    ("kindle-silk", KINDLE_FIRE_SILK, _info("Amazon Silk", "3.68", "Android", "4.0.3", "tablet")),
    ("googlebot", GOOGLEBOT, _info("Googlebot", "2.1", None, None, "bot")),
    (
        "googlebot-smartphone",
        GOOGLEBOT_SMARTPHONE,
        _info("Googlebot", "2.1", "Android", "6.0.1", "bot"),
    ),
    ("bingbot", BINGBOT, _info("bingbot", "2.0", None, None, "bot")),
    ("applebot", APPLEBOT, _info("Applebot", "0.1", "Mac OS X", "10.15.5", "bot")),
    # ua-parser knows curl as a "browser" but finds no OS and no device in it: "unknown".
    ("curl", "curl/8.0", _info("curl", "8.0", None, None, "unknown")),
    ("smart-tv", SMART_TV, _info("Samsung Internet", "4.0", "Tizen", "6.0", "unknown")),
    ("empty", "", _info(None, None, None, None, "unknown")),
    ("whitespace", "   ", _info(None, None, None, None, "unknown")),
    ("junk", "asdf qwer !!! ¯\\_(ツ)_/¯", _info(None, None, None, None, "unknown")),
    ("lone-surrogate", "\ud800\udfff junk", _info(None, None, None, None, "unknown")),
]


@pytest.mark.parametrize(
    ("user_agent", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_parse_device(user_agent: str, expected: DeviceInfo) -> None:
    assert parse_device(user_agent) == expected


def test_repeated_agents_hit_the_cache() -> None:
    parse_device(CHROME_MAC)
    hits = cache_info().hits
    assert parse_device(CHROME_MAC) is parse_device(CHROME_MAC)
    assert cache_info().hits == hits + 2


def test_huge_agent_is_cut_short_and_fast() -> None:
    junk = "Mozilla/5.0 (" + "x(;" * 35_000  # about 100 KB
    started = time.perf_counter()
    info = parse_device(junk)
    assert time.perf_counter() - started < 1.0
    assert info.device_type == "unknown"
    # Only the first MAX_USER_AGENT characters count: a real agent padded is still read.
    padded = CHROME_PIXEL_9 + " " + "z" * 100_000
    assert len(padded) > MAX_USER_AGENT
    assert parse_device(padded) == parse_device(CHROME_PIXEL_9)
