"""Logging people into a service's board: the login and logout pages, who a request comes from, the role a
page needs and the CSRF token every form carries.

A person logs in with an account of the accounts file (`accounts.py`), or is an admin by presenting a client
certificate the service names as an admin (the CLI's identity, in a browser that holds it). The session is
a signed cookie (`auth.SessionSigner`) named with the `__Host-` prefix, so the browser keeps it to this
origin, only over HTTPS (Secure), out of reach of script (HttpOnly) and off requests started by other sites
(SameSite=Strict). Every POST carries a CSRF token bound to the login as a second line, and failed logins
are limited per name so a password cannot be guessed at the speed of the network.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..net.https import PEER_KEY
from ..private_files import write_bytes_atomic
from .accounts import Accounts, Person
from .auth import SESSION_SECONDS, Role, Session, SessionSigner, hash_password, verify_password
from .render import page

COOKIE = "__Host-sharedml-board"
SECRET_BYTES = 32
FAILURES_ALLOWED, FAILURE_WINDOW_S = 5, 300.0  # failed logins per name within the window before a pause
MAX_TRACKED_NAMES = 10_000
CONCURRENT_LOGINS = 2  # password checks at once; more are answered 429 (each costs 16 MiB and ~50 ms)
_DUMMY_HASH = hash_password("not-a-password-of-anyone")  # unknown names cost a scrypt too: no timing oracle


class LoginRequired(Exception):
    """A page asked for by nobody logged in: answered with a redirect to the login page."""


class Busy(Exception):
    """Too many password checks at once: answered 429, try again in a moment."""


class Forbidden(Exception):
    """A person whose role does not allow what they asked: answered 403 with the role needed."""


def session_secret(path: Path) -> bytes:
    """The board's signing key: read from `path`, or made there (32 random bytes, a private file) once."""
    path = Path(path)
    if not path.exists():
        write_bytes_atomic(path, secrets.token_bytes(SECRET_BYTES))
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path}: the board's session key is shorter than {SECRET_BYTES} bytes; delete the file "
                         "and restart to make a new one (everyone is logged out)")
    return secret


class Gate:
    """Who a request comes from and whether they may do what they ask."""

    def __init__(self, accounts: Accounts, secret: bytes, admins: set[str],
                 nav: tuple[tuple[str, str, str | None], ...] = (), cookie: str = COOKIE) -> None:
        self.accounts, self.signer, self.admins, self.nav = accounts, SessionSigner(secret), admins, nav
        self.cookie = cookie  # one name per board: two boards on one host (different ports) share cookies
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._hashing = threading.BoundedSemaphore(CONCURRENT_LOGINS)

    def person(self, request: Request) -> Person | None:
        peer = getattr(request.state, PEER_KEY, None)
        if peer is not None and peer in self.admins:
            return Person(peer, "admin", None)
        session = self.signer.verify(request.cookies.get(self.cookie))
        account = self.accounts.get(session.user) if session else None
        if session is None or account is None or session.generation != _generation(account.password):
            return None  # a removed account, or one whose password changed since, is logged out at once
        return Person(session.user, account.role, account.party)

    def need(self, request: Request, role: Role = "viewer") -> Person:
        person = self.person(request)
        if person is None:
            raise LoginRequired
        if not person.may(role):
            raise Forbidden(f"{person.name} is a {person.role}; this needs the {role} role or higher "
                            "(ask the coordinator's operator: `sharedml coordinator user add`)")
        return person

    def csrf(self, request: Request) -> str:
        """The token the page's forms carry (empty for nobody)."""
        session = self._session_for_csrf(request)
        return self.signer.csrf_token(session) if session else ""

    def check_csrf(self, request: Request, token: str | None) -> None:
        session = self._session_for_csrf(request)
        if session is None or not self.signer.check_csrf(session, token):
            raise Forbidden("the form's security token is missing or stale: reload the page and try again")

    async def form(self, request: Request, max_bytes: int, max_fields: int) -> FormData:
        """A posted form, read only if it declares a length within `max_bytes` (browsers always do), and
        accepted only with this login's CSRF token."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise HTTPException(411, "a board form needs a Content-Length")
        if int(length) > max_bytes:
            raise HTTPException(413, f"a form here takes at most {max_bytes} bytes")
        form = await request.form(max_files=0, max_fields=max_fields)
        self.check_csrf(request, str(form.get("csrf", "")))
        return form

    def _session_for_csrf(self, request: Request) -> Session | None:
        peer = getattr(request.state, PEER_KEY, None)
        if peer is not None and peer in self.admins:  # bound to the certificate's name, unforgeable without the key
            return Session(peer, "admin", 0.0, f"certificate:{peer}")
        return self.signer.verify(request.cookies.get(self.cookie))

    def try_login(self, name: str, password: str) -> str | None:
        """A session cookie for a right name and password, None otherwise: also while the name is paused
        (FAILURES_ALLOWED attempts that failed or are under way within the window) or while too many names
        are being tried at once. Raises Busy while CONCURRENT_LOGINS password checks already run."""
        name = name[:64]
        if not self._reserve(name):
            return None
        if not self._hashing.acquire(blocking=False):  # scrypt costs 16 MiB and ~50 ms: a few at a time
            self._release(name)
            raise Busy
        try:
            account = self.accounts.get(name)
            right = verify_password(account.password if account else _DUMMY_HASH, password) and account is not None
        finally:
            self._hashing.release()
        if not right:
            return None  # the reserved attempt stays counted as a failure
        self._release(name)
        return self.signer.issue(name, account.role, generation=_generation(account.password))

    def _reserve(self, name: str) -> bool:
        """Count an attempt for `name` before its password is checked, so parallel guesses count too."""
        with self._lock:
            now = time.monotonic()
            if name not in self._attempts and len(self._attempts) >= MAX_TRACKED_NAMES:
                for stale in [n for n, times in self._attempts.items() if now - times[-1] > FAILURE_WINDOW_S]:
                    del self._attempts[stale]
                if len(self._attempts) >= MAX_TRACKED_NAMES:  # every tracked name failed recently: wait
                    return False
            recent = self._attempts.setdefault(name, deque())
            while recent and now - recent[0] > FAILURE_WINDOW_S:
                recent.popleft()
            if len(recent) >= FAILURES_ALLOWED:
                return False
            recent.append(now)
            return True

    def _release(self, name: str) -> None:
        """The reserved attempt did not fail (a right password, or no check made): forget it."""
        with self._lock:
            recent = self._attempts.get(name)
            if recent:
                recent.pop()
            if recent is not None and not recent:
                del self._attempts[name]


def _same_site(request: Request) -> bool:
    """Whether a POST comes from a page of this board: by the browser's Sec-Fetch-Site where it sends one, and by
    Origin (which our no-referrer pages make "null" in some browsers, so only another site's origin refuses)."""
    site, origin = request.headers.get("sec-fetch-site"), request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        return False
    return origin in (None, "null") or origin == f"{request.url.scheme}://{request.url.netloc}"


def _generation(password_hash: str) -> str:
    """What a session carries of the account's password hash: a new password ends the old sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def add_login(app: FastAPI, gate: Gate) -> None:
    """The login and logout pages, and the answers to LoginRequired and Forbidden."""

    @app.exception_handler(LoginRequired)
    def _login_first(request: Request, _err: LoginRequired) -> Response:
        return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(Forbidden)
    def _forbidden(request: Request, err: Forbidden) -> Response:
        response = page("message.html", title="Not allowed", message=str(err), person=gate.person(request),
                        csrf=gate.csrf(request), nav=gate.nav)
        response.status_code = 403
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _refused(request: Request, err: StarletteHTTPException) -> Response:
        """A board page answers a person with a page; the API (and the pages' JSON) keep their JSON errors."""
        if not request.url.path.startswith("/ui/") or request.url.path.endswith(".json"):
            return await http_exception_handler(request, err)
        person = gate.person(request)
        response = page("message.html", title=f"{err.status_code}: not possible", message=str(err.detail),
                        person=person, csrf=gate.csrf(request) if person else "", nav=gate.nav)
        response.status_code = err.status_code
        return response

    @app.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(next: str = "/ui/jobs") -> HTMLResponse:  # noqa: A002 - the query parameter's name
        return page("login.html", next=_local(next), error=None, person=None, csrf="", nav=gate.nav)

    @app.post("/ui/login", include_in_schema=False)
    def login(request: Request, name: str = Form(max_length=200), password: str = Form(max_length=1000),
              next: str = Form("/ui/jobs", max_length=2000)) -> Response:  # noqa: A002
        if not _same_site(request):
            raise Forbidden("a login form posted from another site is refused")  # no logging in as someone else
        try:
            cookie = gate.try_login(name, password)
        except Busy:
            response = page("login.html", next=_local(next), person=None, csrf="", nav=gate.nav,
                            error="Too many logins at this moment: try again in a second.")
            response.status_code = 429
            return response
        if cookie is None:
            response = page("login.html", next=_local(next), person=None, csrf="", nav=gate.nav,
                            error="Wrong name or password (after 5 failures a name waits 5 minutes).")
            response.status_code = 401
            return response
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(gate.cookie, cookie, max_age=SESSION_SECONDS, path="/", secure=True, httponly=True,
                            samesite="strict")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form("", max_length=200)) -> Response:
        gate.check_csrf(request, csrf)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(gate.cookie, path="/", secure=True, httponly=True, samesite="strict")
        return response


def _local(target: str) -> str:
    """Only a board page as the place to go after logging in: never another site (an open redirect)."""
    return target if target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target \
        else "/ui/jobs"
