"""A real HTTPS catalogue for tests: the kiosk REST API over an in-memory library.

`CatalogueServer` listens on 127.0.0.1 (ephemeral port) with a test CA made here,
answers in background threads and stops at fixture teardown. Every request and
every answer it makes itself is validated against kiosk/sync/catalogue_api.yaml
with openapi-core: an invalid request is answered 400 and recorded, and the
fixture fails the test at teardown if anything broke the contract. Faults
(statuses, slow answers, raw bodies, dropped connections, lost answers) are
queued per path and bypass validation, as a broken proxy would.

The library's rules are written here independently of kiosk/sync/local_catalogue.py,
so comparing the two (tests/test_rest_backend.py) checks the REST mapping.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import json
import socket
import ssl
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest

from kiosk.sync.rest_backend import API_SPEC, RestCatalogue

BASE_PATH = "/kiosk/v1"
TOKEN = "tok-Kiosk01.Zq8Rv3Lm5Xw"           # distinctive, so a leak is found by grep
LOAN_DAYS = 14

PATRON_OK = "2000000012345"
PATRON_PASSWORD = "pw-Sakura-81"
PATRON_BIRTH = date(1990, 4, 1)
PATRON_BLOCKED = "2000000099999"
PATRON_AT_LIMIT = "2000000055555"
PATRON_OTHER = "2000000077777"
ITEM_NEKO = "1230004567"
NEKO_TITLE = "吾輩は猫である"
ITEM_SNOW = "1230000001"
SNOW_TITLE = "雪国"
ITEM_HELD = "1230000002"                   # waiting on the hold shelf for PATRON_OTHER
ITEM_OUT = "1230000003"                    # on loan to PATRON_OTHER
ITEM_VIDEO = "1230000004"                  # DVD: counter only
ITEMS_FREE = tuple(f"12301{i:05d}" for i in range(120))   # plain books for batches
# Decomposed Unicode (NFD), as library systems send from MARC records: 7 code points for 5 characters.
GURI_TITLE = "ぐりとぐら"
ITEM_NFD = "1230000006"
PATRON_NFD = "2000000066666"
PATRON_NFD_NAME = "ぐり ぐら子"
GURI_NOTE = "ご返却は2週間後です"
CERT_A = hashlib.sha256(b"card A certificate").hexdigest()
CERT_B = hashlib.sha256(b"card B certificate").hexdigest()


def seed() -> dict:
    """Patrons and items in LocalCatalogue's seed format (so both can load the same data)."""
    return {
        "patrons": [
            {"id": PATRON_OK, "name": "図書 花子", "password": PATRON_PASSWORD, "limit": 200,
             "charged": 0, "blocked": [], "holds_ready": 1, "birth_date": PATRON_BIRTH.isoformat()},
            {"id": PATRON_BLOCKED, "name": "延滞 次郎", "password": "pw-2", "limit": 10, "charged": 3,
             "blocked": ["too_many_overdue"]},
            {"id": PATRON_AT_LIMIT, "name": "上限 三郎", "password": "pw-3", "limit": 3, "charged": 3,
             "blocked": []},
            {"id": PATRON_OTHER, "name": "Maria Silva", "password": "pw-4", "limit": 10, "charged": 0,
             "blocked": []},
            {"id": PATRON_NFD, "name": unicodedata.normalize("NFD", PATRON_NFD_NAME), "password": "pw-5",
             "limit": 10, "charged": 0, "blocked": []},
        ],
        "items": [
            {"id": ITEM_NEKO, "title": NEKO_TITLE, "media": "book"},
            {"id": ITEM_SNOW, "title": SNOW_TITLE, "media": "book"},
            {"id": ITEM_HELD, "title": "日本の野鳥図鑑", "media": "book", "on_hold_for": PATRON_OTHER},
            {"id": ITEM_OUT, "title": "坊っちゃん", "media": "book", "on_loan_to": PATRON_OTHER},
            {"id": ITEM_VIDEO, "title": "七人の侍 (DVD)", "media": "dvd", "counter_only": True},
            {"id": ITEM_NFD, "title": unicodedata.normalize("NFD", GURI_TITLE), "media": "book",
             "note": unicodedata.normalize("NFD", GURI_NOTE)},
            *({"id": i, "title": f"本 {n}", "media": "book"} for n, i in enumerate(ITEMS_FREE)),
        ],
    }


# --------------------------------------------------------------------------- the library


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


class RestLibrary:
    """Patrons, items, links and loans by idempotency key; records what really happened."""

    def __init__(self, data: dict, loan_days: int = LOAN_DAYS) -> None:
        self.lock = threading.RLock()
        self.loan_days = loan_days
        self.patrons = {p["id"]: {"blocked": [], "charged": 0, "limit": None, "holds_ready": 0, **p,
                                  "loans": []} for p in data["patrons"]}
        self.items = {i["id"]: {"on_loan_to": None, "on_hold_for": None, "counter_only": False,
                                "media": "book", **i} for i in data["items"]}
        self.links: dict[str, str] = {}
        self.loans: dict[str, tuple[tuple[str, str], dict]] = {}
        self.renewals: dict[str, tuple[tuple[str, str], dict]] = {}
        self.lent: list[tuple[str, str, str]] = []        # (key, patron, item): every loan made
        self.renewed: list[tuple[str, str, str]] = []
        self.returns: dict[str, tuple[str, dict]] = {}
        self.returned: list[tuple[str, str, bool]] = []   # (key, item, offline): every return made
        self.ended: list[str] = []

    @classmethod
    def seeded(cls) -> RestLibrary:
        return cls(seed())

    # -- operations: (status, body) ------------------------------------------

    def resolve(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            return 200, {"patron_id": self.links.get(body["cert_hash"])}

    def link(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            patron = self.patrons.get(body["patron_id"])
            if patron is None:
                return 404, _error("PATRON_NOT_FOUND", "no such library card")
            if "birth_date" in body and body["birth_date"] != patron.get("birth_date"):
                return 422, _error("BIRTH_DATE_MISMATCH", "birth date does not match")
            self.links[body["cert_hash"]] = body["patron_id"]
            return 204, None

    def unlink(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            self.links.pop(body["cert_hash"], None)
            return 204, None

    def patron_status(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            p = self.patrons.get(body["patron_id"])
            if p is None:
                return 404, _error("PATRON_NOT_FOUND", "no such library card")
            password_ok = None
            if "password" in body:
                password_ok = body["password"] == p.get("password")
                if not password_ok:
                    return 200, {"patron_id": p["id"], "valid": True, "password_ok": False}
            return 200, {
                "patron_id": p["id"], "valid": True, "password_ok": password_ok,
                "blocked": list(p["blocked"]), "limit": p["limit"],
                "charged": p["charged"] + len(p["loans"]), "holds_ready": p["holds_ready"],
                "overdue": len(p["blocked"]), "name": p.get("name"),
            }

    def item_info(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            i = self.items.get(body["item_id"])
            if i is None:
                return 404, _error("ITEM_NOT_FOUND", "no such item")
            return 200, {"item_id": i["id"], "title": i["title"],
                         "available": i["on_loan_to"] is None and i["on_hold_for"] is None,
                         "counter_only": i["counter_only"], "media_type": i["media"]}

    def loans_post(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            return 200, {"results": [self._lend(loan) for loan in body["loans"]]}

    def _lend(self, loan: dict) -> dict:
        key, pid, iid = loan["idempotency_key"], loan["patron_id"], loan["item_id"]
        if key in self.loans:
            fingerprint, result = self.loans[key]
            if fingerprint != (pid, iid):
                return {"idempotency_key": key, "item_id": iid, "ok": False, "refusal": "other",
                        "message": "idempotency key already used for another loan", "replayed": False}
            return {**result, "replayed": True}
        result = self._decide(loan)
        if result["ok"]:
            self.items[iid]["on_loan_to"] = pid
            self.items[iid]["due_date"] = result["due_date"]
            self.items[iid]["renewals"] = 0
            self.patrons[pid]["loans"].append(iid)
            self.lent.append((key, pid, iid))
        self.loans[key] = ((pid, iid), result)
        return {**result, "replayed": False}

    def _decide(self, loan: dict) -> dict:
        key, pid, iid, offline = loan["idempotency_key"], loan["patron_id"], loan["item_id"], loan["offline"]
        p, i = self.patrons.get(pid), self.items.get(iid)

        def refuse(why: str) -> dict:
            return {"idempotency_key": key, "item_id": iid, "ok": False, "refusal": why,
                    "title": i["title"] if i else "", "due_date": None, "message": ""}

        if p is None:
            return refuse("patron_unknown")
        if i is None:
            return refuse("item_unknown")
        if p["blocked"] and not offline:
            return refuse("patron_blocked")
        if i["counter_only"] and not offline:
            return refuse("counter_only")
        if i["on_loan_to"] == pid:
            return refuse("already_yours")
        if i["on_loan_to"] is not None:
            return refuse("already_out")
        if i["on_hold_for"] not in (None, pid):
            return refuse("on_hold")
        if p["limit"] is not None and not offline and p["charged"] + len(p["loans"]) >= p["limit"]:
            return refuse("limit_reached")
        if offline:
            due = loan["due_date"]
        else:
            due = (dt.datetime.fromisoformat(loan["created_at"]).date() + timedelta(days=self.loan_days)).isoformat()
        return {"idempotency_key": key, "item_id": iid, "ok": True, "refusal": None, "title": i["title"],
                "due_date": due, "message": i.get("note", "")}

    def renew(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            key, pid, iid = body["idempotency_key"], body["patron_id"], body["item_id"]
            if key in self.renewals:
                fingerprint, result = self.renewals[key]
                if fingerprint == (pid, iid):
                    return 200, {**result, "replayed": True}
                return 200, {"idempotency_key": key, "item_id": iid, "ok": False, "refusal": "other",
                             "message": "idempotency key already used", "replayed": False}
            i = self.items.get(iid)
            why = self._renew_one(pid, iid)
            if i is None:
                result = {"idempotency_key": key, "item_id": iid, "ok": False, "refusal": "item_unknown",
                          "renewal_refusal": "item_unknown"}
            elif why is not None:
                result = {"idempotency_key": key, "item_id": iid, "ok": False, "refusal": "other",
                          "renewal_refusal": why, "title": i["title"], "message": "not renewed"}
            else:
                result = {"idempotency_key": key, "item_id": iid, "ok": True, "title": i["title"],
                          "due_date": i["due_date"]}
                self.renewed.append((key, pid, iid))
            self.renewals[key] = ((pid, iid), result)
            return 200, {**result, "replayed": False}

    def _renewal_refusal(self, pid: str, i: dict | None) -> str | None:
        """The same rules as the SIP2 fake library, written again here (not shared code)."""
        if i is None:
            return "item_unknown"
        if i["on_loan_to"] != pid:
            return "not_on_loan"
        p = self.patrons[pid]
        if p["blocked"]:
            return "patron_blocked"
        if i["on_hold_for"] not in (None, pid):
            return "on_hold"
        if i.get("renewals", 0) >= i.get("max_renewals", 2):
            return "renewal_limit"
        if i.get("due_date") and i["due_date"] < date.today().isoformat():
            return "overdue"
        return None

    def _renew_one(self, pid: str, iid: str) -> str | None:
        i = self.items.get(iid)
        why = self._renewal_refusal(pid, i) if pid in self.patrons else "other"
        if why is None:
            i["renewals"] = i.get("renewals", 0) + 1
            i["due_date"] = (date.today() + timedelta(days=self.loan_days)).isoformat()
        return why

    def patron_account(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            p = self.patrons.get(body["patron_id"])
            if p is None:
                return 404, _error("PATRON_NOT_FOUND", "no such library card")
            today = date.today().isoformat()
            loans = [{"item_id": i["id"], "title": i["title"], "due_date": i.get("due_date"),
                      "overdue": bool(i.get("due_date")) and i["due_date"] < today}
                     for i in self.items.values() if i["on_loan_to"] == p["id"]]
            return 200, {"patron_id": p["id"], "valid": True, "name": p.get("name"),
                         "blocked": list(p["blocked"]), "loans": loans,
                         "holds": [{"item_id": None, **h} for h in p.get("holds", [])],
                         "fines": list(p.get("fines", [])), "fee_amount": p.get("fee_amount"),
                         "currency": p.get("currency")}

    def renew_all(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            key, pid = body["idempotency_key"], body["patron_id"]
            if key in self.renewals:
                fingerprint, result = self.renewals[key]
                if fingerprint == (pid, "*"):
                    return 200, {**result, "replayed": True}
                return 200, {"idempotency_key": key, "ok": False, "renewed": [], "unrenewed": [],
                             "message": "idempotency key already used", "replayed": False}
            renewed, unrenewed = [], []
            for i in list(self.items.values()):
                if i["on_loan_to"] == pid:
                    why = self._renew_one(pid, i["id"])
                    (unrenewed if why else renewed).append(i["id"])
                    if not why:
                        self.renewed.append((key, pid, i["id"]))
            result = {"idempotency_key": key, "ok": pid in self.patrons, "renewed": renewed,
                      "unrenewed": unrenewed}
            self.renewals[key] = ((pid, "*"), result)
            return 200, {**result, "replayed": False}

    def return_item(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            key, iid = body["idempotency_key"], body["item_id"]
            if key in self.returns:
                fingerprint, result = self.returns[key]
                if fingerprint == iid:
                    return 200, {**result, "replayed": True}
                return 200, {"idempotency_key": key, "item_id": iid, "ok": False, "outcome": "counter",
                             "refusal": "other", "message": "idempotency key already used", "replayed": False}
            i = self.items.get(iid)
            if i is None:
                result = {"idempotency_key": key, "item_id": iid, "ok": False, "outcome": "counter",
                          "refusal": "item_unknown", "title": ""}
            elif i["on_loan_to"] is None:
                result = {"idempotency_key": key, "item_id": iid, "ok": False, "outcome": "counter",
                          "refusal": "not_on_loan", "title": i["title"]}
            else:
                holder = i["on_loan_to"]
                i["on_loan_to"] = None
                i["renewals"] = 0
                if iid in self.patrons.get(holder, {}).get("loans", []):
                    self.patrons[holder]["loans"].remove(iid)
                self.returned.append((key, iid, body["offline"]))
                waiting = i["on_hold_for"] not in (None, holder)
                result = {"idempotency_key": key, "item_id": iid, "ok": True,
                          "outcome": "hold_shelf" if waiting else "returned", "refusal": None,
                          "title": i["title"]}
            self.returns[key] = (iid, result)
            return 200, {**result, "replayed": False}

    def end_session(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            self.ended.append(body["patron_id"])
            return 204, None

    def loans_of(self, patron_id: str) -> list[str]:
        with self.lock:
            return list(self.patrons[patron_id]["loans"])


ROUTES: dict[str, Callable[[RestLibrary, dict], tuple[int, Any]]] = {
    "/identities/resolve": RestLibrary.resolve,
    "/identities/link": RestLibrary.link,
    "/identities/unlink": RestLibrary.unlink,
    "/patrons/status": RestLibrary.patron_status,
    "/items/info": RestLibrary.item_info,
    "/loans": RestLibrary.loans_post,
    "/loans/renew": RestLibrary.renew,
    "/loans/renew-all": RestLibrary.renew_all,
    "/patrons/account": RestLibrary.patron_account,
    "/returns": RestLibrary.return_item,
    "/sessions/end": RestLibrary.end_session,
}


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """What the next matching request gets instead of (or after) a normal answer."""

    kind: str                      # status | raw | drop | delay | lost_answer | drop_after
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    path: str | None = None        # relative to BASE_PATH; None = any request


def status(code: int, *, retry_after: int | None = None, path: str | None = None) -> Fault:
    """An error answer (with a valid Error body) before the library sees the request."""
    codes = {429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 403: "FORBIDDEN"}
    body = json.dumps(_error(codes.get(code, "UNAVAILABLE"), "injected")).encode()
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return Fault("status", status=code, body=body, headers=headers, path=path)


def raw(code: int, body: bytes, content_type: str = "application/json", *, path: str | None = None,
        headers: tuple[tuple[str, str], ...] = ()) -> Fault:
    """Exactly these bytes, unvalidated (garbage, HTML, schema violations)."""
    return Fault("raw", status=code, body=body, content_type=content_type, headers=headers, path=path)


def drop(path: str | None = None) -> Fault:
    """Read the request, then close the connection without answering (nothing was done)."""
    return Fault("drop", path=path)


def drop_after(path: str | None = None) -> Fault:
    """Carry the request out, then close without answering (the answer is lost)."""
    return Fault("drop_after", path=path)


def delay(seconds: float, path: str | None = None) -> Fault:
    """Carry the request out, but answer only after `seconds`."""
    return Fault("delay", seconds=seconds, path=path)


def lost_answer(code: int = 504, path: str | None = None) -> Fault:
    """Carry the request out, then answer `code` as a proxy that timed out would."""
    return Fault("lost_answer", status=code,
                 body=json.dumps(_error("UNAVAILABLE", "injected")).encode(), path=path)


# --------------------------------------------------------------------------- HTTP


class _Unchecked:
    errors: tuple = ()


@functools.cache
def _openapi():
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(str(API_SPEC))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, as the kiosk's session expects
    timeout = 5                        # idle connections end by themselves

    def log_message(self, format: str, *args: Any) -> None:
        pass                           # nothing about requests goes anywhere but `server.requests`

    def do_POST(self) -> None:
        self.server.app.handle(self)   # type: ignore[attr-defined]

    do_GET = do_PUT = do_DELETE = do_POST


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, app: CatalogueServer, context: ssl.SSLContext | None) -> None:
        self.app = app
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        """TLS handshake here, in the connection's own thread, not in the accept loop."""
        self.app.note_connection()
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)    # no Nagle/delayed-ACK stalls
        if self.context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            request.settimeout(5)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.app.note_tls_failure(type(exc).__name__)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except OSError:
            pass
        finally:
            self.shutdown_request(tls)


class CatalogueServer:
    """The kiosk REST API on 127.0.0.1 over an in-memory RestLibrary."""

    def __init__(self, library: RestLibrary, *, context: ssl.SSLContext | None = None,
                 token: str = TOKEN, check_contract: bool = True) -> None:
        self.library = library
        self.token = token
        # Off only in bench/: openapi-core's checking costs milliseconds per request,
        # far more than any other part, and would hide what the client does.
        self.check_contract = check_contract
        self.api = _openapi()
        self.requests: list[str] = []              # paths (relative to BASE_PATH), in order
        self.connections = 0
        self.tls_failures: list[str] = []
        self.invalid_requests: list[str] = []
        self.invalid_responses: list[str] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = _HttpServer(self, context)
        self.port = self._http.server_address[1]
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}{BASE_PATH}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="rest-catalogue", daemon=True)
        self._thread.start()

    # -- test controls -------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    def contract_violations(self) -> list[str]:
        return self.invalid_requests + self.invalid_responses

    def stop(self) -> None:
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # -- bookkeeping from the HTTP threads -----------------------------------

    def note_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def note_tls_failure(self, name: str) -> None:
        with self._lock:
            self.tls_failures.append(name)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            self.requests.append(path)
            for fault in self._faults:
                if fault.path in (None, path):
                    self._faults.remove(fault)
                    return fault
            return None

    # -- one request ---------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        raw_body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        full_path = urlsplit(h.path).path
        path = full_path[len(BASE_PATH):] if full_path.startswith(BASE_PATH) else full_path
        fault = self._take_fault(path)
        kind = fault.kind if fault else ""
        if kind == "drop":
            h.close_connection = True
            return
        if kind in ("status", "raw"):
            assert fault is not None
            self._send(h, fault.status, fault.body, fault.content_type, fault.headers)
            return
        code, body, headers = self._answer(h, full_path, raw_body)
        if kind == "delay":
            assert fault is not None
            self._stopping.wait(fault.seconds)
        if kind == "drop_after":
            h.close_connection = True
            return
        if kind == "lost_answer":
            assert fault is not None
            self._send(h, fault.status, fault.body, fault.content_type)
            return
        self._send(h, code, body, "application/json", headers)

    def _answer(self, h: BaseHTTPRequestHandler, full_path: str,
                raw_body: bytes) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        from openapi_core.testing import MockRequest, MockResponse
        from openapi_core.validation.request.exceptions import SecurityValidationError

        request = MockRequest(f"https://127.0.0.1:{self.port}", h.command, full_path,
                              headers=dict(h.headers.items()), data=raw_body,
                              content_type=h.headers.get("Content-Type", ""))
        checked = self.api.unmarshal_request(request) if self.check_contract else _Unchecked()
        headers: tuple[tuple[str, str], ...] = ()
        route = ROUTES.get(full_path[len(BASE_PATH):]) if full_path.startswith(BASE_PATH) else None
        if checked.errors and all(isinstance(e, SecurityValidationError) for e in checked.errors):
            code, payload = 401, _error("UNAUTHORIZED", "bearer token required")
        elif checked.errors or route is None or h.command != "POST":
            reasons = "; ".join(f"{type(e).__name__}: {getattr(e, '__cause__', '') or e}" for e in checked.errors)
            with self._lock:
                self.invalid_requests.append(f"{h.command} {full_path}: {reasons or 'no such operation'}")
            code, payload = 400, _error("INVALID_REQUEST", "request does not match the API")
        elif h.headers.get("Authorization") != f"Bearer {self.token}":
            code, payload = 401, _error("UNAUTHORIZED", "unknown bearer token")
        else:
            code, payload = route(self.library, json.loads(raw_body))
        if code == 401:
            headers = (("WWW-Authenticate", "Bearer"),)
        data = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        if route is not None and self.check_contract:
            response = MockResponse(data, code, dict(headers), "application/json" if data else None)
            problems = self.api.unmarshal_response(request, response).errors
            if problems:
                with self._lock:
                    self.invalid_responses.append(f"{full_path} {code}: {problems}")
        return code, data, headers

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        try:
            h.send_response(code)
            if code != 204:
                h.send_header("Content-Type", content_type)
                h.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                h.send_header(name, value)
            if h.close_connection:
                h.send_header("Connection", "close")     # say so, or the client reuses a dead socket
            h.end_headers()
            if code != 204:
                h.wfile.write(body)
            h.wfile.flush()
        except OSError:
            h.close_connection = True        # the client gave up (read timeout): nothing to do


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class RestTls:
    ca: Path                       # signed the server and the client certificates
    server_cert: Path
    server_key: Path
    other_ca: Path                 # signed nothing the server shows
    wrong_name_cert: Path          # by `ca`, but for ils.example.org only
    wrong_name_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, wrong_name: bool = False, require_client: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if wrong_name:
            ctx.load_cert_chain(self.wrong_name_cert, self.wrong_name_key)
        else:
            ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.client_ca)
        return ctx


def make_tls_files(directory: Path) -> RestTls:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    pem = serialization.Encoding.PEM

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path: Path, cert, key=None) -> Path:
        path.write_bytes(cert.public_bytes(pem))
        if key is not None:
            path.with_suffix(".key").write_bytes(key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return path

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(cn: str, issuer, sans: list, usage):
        issuer_key, issuer_cert = issuer
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                               critical=False))
        if sans:
            cert = cert.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, cert.sign(issuer_key, hashes.SHA256())

    server_ca, other_ca, client_ca = ca("Test ILS CA"), ca("Unrelated CA"), ca("Test Kiosk Client CA")
    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_key, server_cert = leaf("ils.test", server_ca, local, ExtendedKeyUsageOID.SERVER_AUTH)
    wrong_key, wrong_cert = leaf("ils.example.org", server_ca, [x509.DNSName("ils.example.org")],
                                 ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client_cert = leaf("kiosk-01", client_ca, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    return RestTls(
        ca=write(directory / "ca.pem", server_ca[1]),
        server_cert=write(directory / "server.pem", server_cert, server_key),
        server_key=directory / "server.key",
        other_ca=write(directory / "other-ca.pem", other_ca[1]),
        wrong_name_cert=write(directory / "wrong-name.pem", wrong_cert, wrong_key),
        wrong_name_key=directory / "wrong-name.key",
        client_ca=write(directory / "client-ca.pem", client_ca[1]),
        client_cert=write(directory / "client.pem", client_cert, client_key),
        client_key=directory / "client.key",
    )


# --------------------------------------------------------------------------- fixtures


def fast_catalogue(server: CatalogueServer, tls: RestTls | None, **overrides: Any) -> RestCatalogue:
    """A client tuned for tests: 2 retries, 10 ms back-off, and 5 s timeouts (the server checks every
    request and each of up to 50 loans against the OpenAPI contract: slow on a busy CI machine).
    Tests of timeouts set their own."""
    settings: dict[str, Any] = dict(token=TOKEN, ca_bundle=tls.ca if tls else None, timeout=5.0,
                                    retries=2, backoff=0.01, backoff_max=0.05)
    settings.update(overrides)
    return RestCatalogue(server.url, **settings)


@pytest.fixture(scope="session")
def rest_tls(tmp_path_factory: pytest.TempPathFactory) -> RestTls:
    return make_tls_files(tmp_path_factory.mktemp("rest-tls"))


@pytest.fixture
def rest_library() -> RestLibrary:
    return RestLibrary.seeded()


@pytest.fixture
def make_rest_server(rest_tls: RestTls) -> Iterator[Callable[..., CatalogueServer]]:
    """Factory: `make_rest_server(library=None, tls=True, wrong_name=False, require_client=False)`.

    Every server stops at teardown, which fails if any request or answer broke the
    contract (set `server.invalid_requests.clear()` in a test that sends bad ones on purpose).
    """
    servers: list[CatalogueServer] = []

    def make(library: RestLibrary | None = None, *, tls: bool = True, wrong_name: bool = False,
             require_client: bool = False, token: str = TOKEN) -> CatalogueServer:
        context = rest_tls.server_context(wrong_name=wrong_name, require_client=require_client) if tls else None
        server = CatalogueServer(library or RestLibrary.seeded(), context=context, token=token)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    violations = [v for s in servers for v in s.contract_violations()]
    assert not violations, f"requests/answers that break catalogue_api.yaml: {violations}"


@pytest.fixture
def rest_server(make_rest_server, rest_library: RestLibrary) -> CatalogueServer:
    return make_rest_server(rest_library)


@pytest.fixture
def rest_catalogue(rest_server: CatalogueServer, rest_tls: RestTls) -> Iterator[RestCatalogue]:
    catalogue = fast_catalogue(rest_server, rest_tls)
    yield catalogue
    catalogue.close()
