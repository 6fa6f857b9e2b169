"""What the service checks before and while it reads a request, against a real uvicorn server on
127.0.0.1 under the service's own configuration, with raw sockets that stall where an attacker would:
the token before any body byte, the body deadline, the header deadline, idle keep-alive, the
connection caps; and the blank-text rule shared with predict."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from socialens.core.types import is_blank_text
from socialens.serving.app import ServiceSettings

# the same cases as tests/test_predict.py::test_blank_texts_are_invalid_by_the_rule_the_service_shares
BLANK_TEXTS = ["", " ", "\t\n", "\u00a0", "\u3000 \u2003"]
HEAD = "POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(conn: socket.socket, within_s: float) -> tuple[bytes, bool, float]:
    """Everything the server sends until it closes the connection or ``within_s`` passes:
    (bytes, whether the server closed, seconds waited)."""
    start = time.monotonic()
    reply = b""
    while (left := within_s - (time.monotonic() - start)) > 0:
        conn.settimeout(left)
        try:
            data = conn.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return reply, True, time.monotonic() - start
        if not data:
            return reply, True, time.monotonic() - start
        reply += data
    return reply, False, time.monotonic() - start


def status_of(reply: bytes) -> int | None:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def body_of(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic s3cret"])
def test_a_missing_or_wrong_token_is_401_before_any_body_byte_is_read(serve, authorization):
    """Headers announcing a 15 MB body, then nothing: the 401 comes at once, unread, and the
    server closes the connection instead of waiting for the body."""
    url, log, _ = serve(ServiceSettings(token="s3cret", body_timeout_s=30))
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    with connect(url) as conn:
        conn.sendall((HEAD + auth + "Content-Length: 15000000\r\n\r\n").encode())
        reply, closed, waited = read_until_closed(conn, within_s=5)
    assert status_of(reply) == 401, reply[:200]
    assert body_of(reply)["error"].startswith("missing or wrong bearer token")
    assert b"www-authenticate: bearer" in reply.lower()
    assert closed and waited < 2
    assert [json.loads(line)["status"] for line in log] == [401]


def test_the_right_token_still_gets_the_body_read_and_classified(serve):
    url, _, _ = serve(ServiceSettings(token="s3cret"))
    body = json.dumps({"texts": ["This has been debunked by every fact-checker"]}).encode()
    with connect(url) as conn:
        head = HEAD + f"Authorization: Bearer s3cret\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)
        reply, _, _ = read_until_closed(conn, within_s=1)  # keep-alive: the server leaves it open
    assert status_of(reply) == 200
    assert body_of(reply)["results"][0]["label"] == "debunk"


def test_stalled_bodies_are_answered_within_the_deadline_and_a_normal_request_still_works(serve):
    """60 connections that never finish their body, half with the token and half without, and one
    that trickles a byte every 0.2 s: all are answered and closed within the bound, while a normal
    request is served meanwhile."""
    settings = ServiceSettings(token="s3cret", body_timeout_s=1.0, max_connections_per_client=0)
    url, log, _ = serve(settings)
    partial = b'{"texts": ["half a te'
    stalled = []
    for n in range(60):
        auth = "Authorization: Bearer s3cret\r\n" if n % 2 == 0 else ""
        conn = connect(url)
        conn.sendall((HEAD + auth + "Content-Length: 1000\r\n\r\n").encode() + partial)
        stalled.append((n % 2 == 0, conn))
    trickle = connect(url)
    trickle.sendall((HEAD + "Authorization: Bearer s3cret\r\nContent-Length: 1000\r\n\r\n").encode())
    stop = threading.Event()

    def drip():
        while not stop.wait(0.2):
            try:
                trickle.sendall(b" ")
            except OSError:
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        started = time.monotonic()
        normal = httpx.post(
            f"{url}/v1/classify",
            json={"texts": ["Finally exposes the lie they sold us"]},
            headers={"Authorization": "Bearer s3cret"},
            timeout=10,
        )
        assert normal.status_code == 200 and normal.json()["results"][0]["label"] == "belief"
        assert time.monotonic() - started < 1.0  # not held up behind the stalled ones

        for with_token, conn in stalled:
            reply, closed, _ = read_until_closed(conn, within_s=5)
            assert status_of(reply) == (408 if with_token else 401), reply[:200]
            assert closed
        assert time.monotonic() - started < 4
        reply, closed, _ = read_until_closed(trickle, within_s=5)
        assert status_of(reply) == 408 and closed  # progress does not extend the deadline
        assert body_of(reply)["error"] == "body: not received whole within 1 s (--body-timeout-s)"
    finally:
        stop.set()
        dripper.join(timeout=5)
        trickle.close()
        for _, conn in stalled:
            conn.close()
    statuses = [json.loads(line)["status"] for line in log]
    assert sorted(statuses) == sorted([200] + [408] * 31 + [401] * 30)


def test_a_stalled_body_on_a_route_that_does_not_read_it_closes_the_connection(serve):
    url, _, _ = serve(ServiceSettings(body_timeout_s=30))
    with connect(url) as conn:
        request = "GET /v1/model HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n"
        conn.sendall(request.encode() + b"x" * 10)
        reply, closed, waited = read_until_closed(conn, within_s=5)
    assert status_of(reply) == 200 and closed and waited < 2


def test_headers_that_never_finish_and_silent_connections_are_closed_within_the_header_timeout(serve):
    url, _, _ = serve(ServiceSettings(header_timeout_s=1.0, keep_alive_s=30))
    silent = connect(url)
    half = connect(url)
    half.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: test\r\n")
    dripping = connect(url)
    started = time.monotonic()
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: te":  # a byte every 0.1 s: never done in time
            try:
                dripping.sendall(bytes([byte]))
            except OSError:
                break
            if time.monotonic() - started > 2:
                break
            time.sleep(0.1)
        for conn in (silent, half, dripping):
            reply, closed, _ = read_until_closed(conn, within_s=3)
            assert closed
            if reply:
                assert status_of(reply) == 408
                assert body_of(reply)["error"].endswith("(--header-timeout-s)")
        assert time.monotonic() - started < 4
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        for conn in (silent, half, dripping):
            conn.close()


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_s(serve):
    url, _, _ = serve(ServiceSettings(keep_alive_s=1.0, header_timeout_s=30))
    with connect(url) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        reply, closed, waited = read_until_closed(conn, within_s=4)
    assert status_of(reply) == 200 and closed and 0.5 < waited < 3


def test_connections_per_client_are_capped_and_freed_when_closed(serve):
    url, _, _ = serve(ServiceSettings(max_connections_per_client=3, header_timeout_s=30))
    held = [connect(url) for _ in range(3)]
    try:
        with connect(url) as extra:
            reply, closed, waited = read_until_closed(extra, within_s=3)
        assert status_of(reply) == 429 and closed and waited < 1
        assert body_of(reply)["error"] == (
            "more than 3 open connections from 127.0.0.1 (--max-connections-per-client)"
        )
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:  # the server sees the close a moment later
            try:
                response = httpx.get(f"{url}/healthz", timeout=3)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                break
            assert time.monotonic() < deadline, "a freed connection slot was not reusable"
            time.sleep(0.05)
    finally:
        for conn in held:
            conn.close()


def test_connections_over_max_connections_get_503(serve):
    url, _, _ = serve(ServiceSettings(max_connections=3, max_connections_per_client=0, header_timeout_s=30))
    held = [connect(url) for _ in range(2)]
    try:
        time.sleep(0.2)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 503
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 3
    while httpx.get(f"{url}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_blank_texts_are_invalid_as_in_predict_and_never_reach_the_model(serve):
    assert all(is_blank_text(text) for text in BLANK_TEXTS)
    url, _, _ = serve()
    texts = [
        "This has been debunked by every fact-checker",
        *BLANK_TEXTS,
        "Finally exposes the lie they sold us",
    ]
    response = httpx.post(f"{url}/v1/classify", json={"texts": texts}, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["ok", *["invalid"] * len(BLANK_TEXTS), "ok"]
    assert [r["label"] for r in results] == ["debunk", *[None] * len(BLANK_TEXTS), "belief"]
    for index, result in enumerate(results[1:-1], start=1):
        assert result["error"] == f"texts[{index}]: empty text; expected non-empty text"
        assert result["probabilities"] is None
    only_blank = httpx.post(f"{url}/v1/classify", json={"texts": ["  "], "ids": ["b"]}, timeout=30).json()
    assert [(r["id"], r["status"]) for r in only_blank["results"]] == [("b", "invalid")]
    batching = httpx.get(f"{url}/v1/model").json()["batching"]
    assert batching["texts"] == 2  # the blank ones never went to the model
