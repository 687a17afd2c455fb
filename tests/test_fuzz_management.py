"""Fuzz the management endpoint's request parsing, for real over TLS on 127.0.0.1.

Every request gets an HTTP answer with a JSON body, and nothing a neighbour sends
changes the configuration: a handler that raised would close the connection with no
answer (and a traceback on stderr), which is what a `Content-Length: ²` did.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kiosk_testing.fleet import https, make_bundle, raw_exchange
from kiosk_testing.fuzz import FUZZ

from kiosk.sync.management_server import content_length

LAYER = {"timeouts": {"scanning": 90}}
MAX_BODY = 65536
ANSWERS = (200, 400, 408, 403, 404, 405, 409, 411, 413, 414, 422, 429, 431, 501, 503)
# The live server costs a TLS handshake per example: 120 examples by default (about 3 s here),
# scaled with $KIOSK_FUZZ_EXAMPLES like the rest.
LIVE = settings(FUZZ, max_examples=max(1, FUZZ.max_examples * 120 // 500))


def status_of(answer: bytes) -> int:
    """The final status: an interim "100 Continue" (Expect: 100-continue) is skipped."""
    while answer.startswith(b"HTTP/1.1 100 "):
        answer = answer.split(b"\r\n\r\n", 1)[1]
    head = answer.split(b"\r\n", 1)[0]
    # aiohttp answers a request line it cannot parse as HTTP/1.0 (it cannot know the version)
    assert head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), answer[:200]
    return int(head.split()[1])


@pytest.mark.parametrize("values, length", [
    (["12"], 12), ([" 7 "], 7), (["007"], 7), (["0"], 0),
    (["\u00b2"], None),                 # superscript two: isdigit() but not a number on the wire
    (["\u0661\u0662"], None),           # Arabic-Indic "12": int() would even accept it
    (["-5"], None), (["+5"], None), (["0x10"], None), ([""], None), (None, None), ([], None),
    (["5", "5"], 5), (["5", "6"], None),                    # repeated headers must agree
    (["9" * 5000], 10 ** 15),           # int() would refuse 5000 digits; it is simply too large
])
def test_content_length_is_ascii_digits_only(values, length):
    assert content_length(values) == length


@pytest.mark.parametrize("request_bytes, status", [
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n", 400),     # was: traceback, no answer
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\nExpect: 100-continue\r\n\r\n", 400),
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),  # parser: overflow
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n", 400),                             # was: ValueError from urlsplit
    (b"PUT http://[::1/config HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400),
    (b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n", 404),       # http.server makes this "/[" first
    (b"GET /health\r\n\r\n", 400),            # HTTP/0.9: was a bare JSON body with no status line
    (b"GET  HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # no path: http.server reads it as HTTP/0.9 too
])
def test_malformed_requests_get_an_answer(fleet_kiosk, fleet_pki, request_bytes, status):
    kiosk = fleet_kiosk()
    answer = raw_exchange(kiosk.server.port, fleet_pki, request_bytes)
    assert status_of(answer) == status
    assert json.loads(answer.rsplit(b"\r\n\r\n", 1)[1])["code"]


methods = st.sampled_from(["GET", "PUT", "PUT", "PUT", "HEAD", "POST", "DELETE", "OPTIONS", "BREW", "get", ""])
paths = st.sampled_from(["/config", "/health", "/status", "/", "//[", "http://[", "http://[::1/config", "/%00", "*", "/config?x=[",
                         "http://x/config", "/" + "a" * 300]) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
latin1 = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n"))
length_values = st.sampled_from([b"\xb2", b"\xb9", b"\xb3", b"1\xb2", b" 12 ", b"-1", b"+1", b"0x10", b"",
                                 b"9" * 5000, b"99999999999999999999", b"0" * 40 + b"1"]) | latin1
header_names = st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Expect", b"Content-Type", b"Host",
                                b"X-Any", b"content-length"])


@LIVE
@given(method=methods, path=paths, lengths=st.lists(length_values, max_size=2),
       headers=st.lists(st.tuples(header_names, latin1 | st.just(b"100-continue")), max_size=3),
       body=st.binary(max_size=300))
@example(method="PUT", path="/config", lengths=[b"\xb2"], headers=[], body=b"")
@example(method="GET", path="http://[", lengths=[], headers=[], body=b"")
@example(method="GET", path="", lengths=[], headers=[], body=b"")
def test_every_request_gets_an_answer_and_changes_nothing(fleet_kiosk, fleet_pki, fleet_keys, method, path,
                                                          lengths, headers, body):
    kiosk = LIVE_KIOSK.get("k")
    if kiosk is None:
        kiosk = LIVE_KIOSK["k"] = fleet_kiosk(name="fuzz", rate=600, timeout=0.5, max_body=MAX_BODY)
        assert https(fleet_pki).put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, LAYER, 5)).ok
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: kiosk"]
    lines += [name + b": " + value for name, value in headers if name.lower() != b"content-length"]
    for value in lengths:
        lines.append(b"Content-Length: " + value)
        if value.strip().isdigit() and len(value.strip()) < 8 and int(value) <= MAX_BODY:
            body = body[:int(value)].ljust(int(value), b"x")     # the body it announces: no wait for more
    if not lengths:
        lines.append(b"Content-Length: %d" % len(body))
    answer = raw_exchange(kiosk.server.port, fleet_pki, b"\r\n".join(lines) + b"\r\n\r\n" + body, timeout=6)
    assert status_of(answer) in ANSWERS
    assert kiosk.applier.version == 5 and kiosk.applier.config["timeouts"]["scanning"] == 90


LIVE_KIOSK: dict = {}


@pytest.fixture(autouse=True)
def _forget_live_kiosk():
    yield
    LIVE_KIOSK.clear()
