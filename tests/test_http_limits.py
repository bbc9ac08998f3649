"""The control APIs bound what a caller can make them read and hold: request bodies, job specs, and callers
that are not allowed at all (refused before their body is read)."""

from __future__ import annotations

import select
import socket
import ssl
import time

import httpx
import pytest
from fastapi import FastAPI, Request

from sharedml.deploy.config import CoordinatorConfig
from sharedml.deploy.coordinator import Coordinator
from sharedml.deploy.coordinator_api import create_app
from sharedml.jobs.spec import JobSpecError, parse_job
from sharedml.jobs.yaml_errors import MAX_YAML_BYTES
from sharedml.net.certs import init_federation
from sharedml.net.https import MAX_BODY_BYTES, MtlsClient, TlsFiles, serve_in_thread, server
from sharedml.net.loopback import free_port

HUGE = 200 << 20


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    init_federation(["coordinator", "bank", "shop"], folder)
    return folder


def _raw_post(address: str, tls: TlsFiles, server_name: str, path: str, length: int | None,
              body: int) -> tuple[str, int]:
    """POST `body` bytes (chunked if `length` is None, else declaring `length`) over a raw TLS socket, stopping
    as soon as the server answers; returns (the answer, the bytes sent until then)."""
    host, port = address.removeprefix("https://").split(":")
    framing = "transfer-encoding: chunked" if length is None else f"content-length: {length}"
    chunk = b"x" * (1 << 16)
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if length is None else chunk
    sent, answer = 0, b""
    with socket.create_connection((host, int(port))) as raw, \
            tls.client_context().wrap_socket(raw, server_hostname=server_name) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\n".encode())
        conn.setblocking(False)
        pending = memoryview(frame)
        while sent < body and not answer:
            try:
                answer = conn.recv(4096)  # the server answered: stop sending
            except ssl.SSLWantReadError:
                pass
            try:
                written = conn.send(pending)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([conn], [conn], [], 0.05)
                continue
            sent, pending = sent + written, pending[written:] or memoryview(frame)
        conn.settimeout(5)
        while not _complete(answer):
            answer += conn.recv(4096)
    return answer.decode(errors="replace"), sent


def _complete(answer: bytes) -> bool:
    """Whether `answer` holds a whole HTTP response: its head and as much body as its Content-Length says."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    return bool(sep) and bool(lengths) and len(body) >= lengths[0]


@pytest.fixture
def coordinator(certs, tmp_path):
    config = CoordinatorConfig(certs=str(certs), nodes={"bank": "https://127.0.0.1:1"}, base_dir=tmp_path)
    coord = Coordinator(config)
    listen = f"127.0.0.1:{free_port()}"
    srv = server(create_app(coord), listen, config.tls)
    serve_in_thread(srv)
    client = MtlsClient(f"https://{listen}", TlsFiles.in_dir(certs, "shop"), "coordinator", timeout=10)
    yield client, certs
    client.close()
    srv.should_exit = True


def test_a_200_mb_job_spec_is_refused_in_under_a_second_without_being_read(coordinator):
    client, certs = coordinator
    shop = TlsFiles.in_dir(certs, "shop")
    for declared in (HUGE, None):  # by its Content-Length, before a byte of body; chunked, at the bound
        start = time.perf_counter()
        answer, sent = _raw_post(client.base_url, shop, "coordinator", "/jobs", declared, HUGE)
        assert answer.startswith("HTTP/1.1 413") and "request body over" in answer
        assert time.perf_counter() - start < 1.0
        assert sent < MAX_BODY_BYTES + (16 << 20)  # the bound plus socket buffers in flight, not 200 MB


def test_a_job_spec_over_the_yaml_bound_is_refused_before_parsing(coordinator):
    tasks = "".join(f"  t{i}: {{component: secure_sum}}\n" for i in range(MAX_YAML_BYTES // 30))
    text = "job: big\nparties:\n  bank: {role: member}\ntasks:\n" + tasks
    start = time.perf_counter()
    answer = coordinator[0].request("POST", "/jobs", json={"spec": text})
    assert answer.status_code == 400 and f"at most {MAX_YAML_BYTES}" in answer.json()["detail"]
    assert time.perf_counter() - start < 0.5
    with pytest.raises(JobSpecError, match="characters of YAML"):
        parse_job(text)


def test_a_caller_that_may_not_call_is_refused_before_its_body_is_read(certs):
    reached = []
    app = FastAPI()

    @app.post("/work")
    async def work(request: Request) -> dict[str, int]:
        reached.append(True)
        return {"bytes": len(await request.body())}

    listen = f"127.0.0.1:{free_port()}"
    srv = server(app, listen, TlsFiles.in_dir(certs, "bank"), callers={"coordinator"})
    serve_in_thread(srv)
    try:
        allowed = MtlsClient(f"https://{listen}", TlsFiles.in_dir(certs, "coordinator"), "bank")
        assert allowed.request("POST", "/work", content=b"abc").json() == {"bytes": 3}
        chunked = allowed.request("POST", "/work", content=iter([b"ab", b"cd"]))
        assert chunked.json() == {"bytes": 4}
        for declared in (21 << 20, None):
            answer, sent = _raw_post(f"https://{listen}", TlsFiles.in_dir(certs, "shop"), "bank", "/work", declared,
                                     21 << 20)
            assert answer.startswith("HTTP/1.1 403") and "'shop' may not call" in answer and sent < 8 << 20
        assert reached == [True, True]  # the intruder's requests never reached the app
        allowed.close()
    finally:
        srv.should_exit = True


def browser_of(certs, listen: str) -> httpx.Client:
    """A client like a browser: it trusts the federation's CA and presents no certificate."""
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    anonymous.check_hostname = False
    return httpx.Client(verify=anonymous, base_url=f"https://{listen}")


def test_a_server_open_to_browsers_lets_them_reach_its_pages_only(certs):
    """`browsers_under="/ui"`: no client certificate reaches /ui and nothing else; a certificate from another CA
    is still refused in the handshake; a federation certificate reaches everything."""
    reached = []
    app = FastAPI()

    @app.get("/ui/page")
    async def page() -> dict[str, str]:
        reached.append("page")
        return {"page": "ok"}

    @app.get("/jobs")
    async def jobs() -> dict[str, str]:
        reached.append("api")
        return {"api": "ok"}

    listen = f"127.0.0.1:{free_port()}"
    srv = server(app, listen, TlsFiles.in_dir(certs, "coordinator"), browsers_under="/ui")
    serve_in_thread(srv)
    try:
        with browser_of(certs, listen) as browser:
            assert browser.get("/ui/page").json() == {"page": "ok"}
            refused = browser.get("/jobs")
            assert refused.status_code == 401 and "only /ui is open" in refused.json()["detail"]
            assert browser.get("/uix").status_code == 401 and browser.get("/docs").status_code == 401
        member = MtlsClient(f"https://{listen}", TlsFiles.in_dir(certs, "shop"), "coordinator")
        assert member.request("GET", "/jobs").json() == {"api": "ok"}
        member.close()
        stranger_dir = certs.parent / "stranger"
        init_federation(["shop"], stranger_dir)  # another CA: its certificate is refused in the handshake
        stranger = MtlsClient(f"https://{listen}", TlsFiles(stranger_dir / "shop.crt", stranger_dir / "shop.key",
                                                            certs / "ca.crt"), "coordinator")
        with pytest.raises(httpx.HTTPError):
            stranger.request("GET", "/ui/page")
        stranger.close()
        assert reached == ["page", "api"]
    finally:
        srv.should_exit = True


def test_browsers_get_a_bounded_share_of_the_server(certs, monkeypatch):
    from sharedml.net import https

    app = FastAPI()

    @app.get("/ui/page")
    async def page() -> dict[str, str]:
        return {"page": "ok"}

    monkeypatch.setattr(https, "MAX_BROWSER_REQUESTS", 0)  # as if the board's share were in use
    listen = f"127.0.0.1:{free_port()}"
    srv = server(app, listen, TlsFiles.in_dir(certs, "coordinator"), browsers_under="/ui")
    serve_in_thread(srv)
    try:
        with browser_of(certs, listen) as browser:
            busy = browser.get("/ui/page")
            assert busy.status_code == 503 and "busy" in busy.json()["detail"]
        member = MtlsClient(f"https://{listen}", TlsFiles.in_dir(certs, "shop"), "coordinator")
        assert member.request("GET", "/ui/page").json() == {"page": "ok"}  # the federation's share is untouched
        member.close()
    finally:
        srv.should_exit = True
