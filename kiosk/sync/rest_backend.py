"""The library catalogue over HTTPS: kiosk.core.catalogue.Catalogue on the kiosk REST API.

The contract is `catalogue_api.yaml` next to this file; every answer is checked
against it, so a proxy's HTML page, a truncated body or a changed server is
"catalogue unavailable" (the outbox keeps the loan and tries again), never a
guess. Every call is safe to repeat (identifiers in bodies, idempotency keys on
loans and renewals), which is what lets urllib3 retry POSTs after a connection
error or a 502/503/504 without lending twice. Nothing that names a patron, an
item or the token reaches a log line or an exception message.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from kiosk import __version__
from kiosk.core.catalogue import (
    CHECKIN,
    AccountFine,
    AccountHold,
    AccountLoan,
    CatalogueUnavailable,
    ItemInfo,
    LinkRefused,
    LoanRequest,
    LoanResult,
    Outage,
    PatronAccount,
    PatronStatus,
    Refusal,
    RenewAllResult,
    catalogue_text,
    from_catalogue,
)
from kiosk.logs import log_event
from kiosk.sync.outage import outage_of

if TYPE_CHECKING:
    from kiosk.config.settings import RestSettings

log = logging.getLogger("kiosk.catalogue.rest")

API_SPEC = Path(str(files("kiosk.sync").joinpath("catalogue_api.yaml")))
SPEC_URI = "urn:kiosk:catalogue-api"

#: Most loans in one POST /loans (LoanBatch.maxItems in the contract).
MAX_BATCH = 50
#: Statuses after which a repeat may succeed; safe to repeat because every call is idempotent.
RETRY_STATUSES = (502, 503, 504)
#: Longest single wait between attempts, also for a server's Retry-After (a patron is waiting).
BACKOFF_MAX = 2.0
#: A dead host is found out by the connect timeout, not the (longer) read timeout.
CONNECT_TIMEOUT_MAX = 3.05

# Mirrors of the contract's identifier schemas, checked before sending so that an
# unsendable barcode is refused locally instead of being sent and answered with a 400.
IDENTIFIER = re.compile(r"[!-~]{1,64}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CERT_HASH = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")       # RFC 6750 b64token
_PASSWORD_MAX = 128


class BearerToken(AuthBase):
    """`Authorization: Bearer` on every request; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        if not _TOKEN.fullmatch(token):
            raise ValueError("the bearer token has characters that are not allowed in a header")
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


class KioskRetry(Retry):
    """urllib3 Retry that does not repeat a read timeout.

    A catalogue too slow to answer once will be as slow the second time; waiting
    again would double the patron's wait. Dropped connections are still repeated.
    """

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, ReadTimeoutError):
            raise error.with_traceback(_stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def make_retry(retries: int, backoff: float = 0.25, backoff_max: float = BACKOFF_MAX) -> Retry:
    """Connect errors, dropped connections and 502/503/504 are repeated, boundedly; TLS errors never."""
    return KioskRetry(
        total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
        allowed_methods=frozenset({"GET", "POST"}), status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff, backoff_max=backoff_max, backoff_jitter=0.0,
        retry_after_max=max(0, int(backoff_max)), respect_retry_after_header=True,
        raise_on_status=False, raise_on_redirect=False,
    )


# --------------------------------------------------------------------------- the contract


class ContractViolation(ValueError):
    """An answer that does not match catalogue_api.yaml (the message names the schema only)."""


@functools.cache
def _contract():
    """Validators for the contract's schemas, built once from the YAML document.

    JSON Schema 2020-12 treats `format` as an annotation: a due date that is not
    ISO 8601 passes here and is kept as text (LoanResult.due_text), so a loan the
    catalogue made is acknowledged instead of being retried forever.
    """
    import yaml
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    document = yaml.safe_load(API_SPEC.read_text(encoding="utf-8"))
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(document))
    return document, registry, Draft202012Validator


@functools.cache
def _validator(schema: str):
    document, registry, validator_cls = _contract()
    if schema not in document["components"]["schemas"]:
        raise KeyError(schema)
    return validator_cls({"$ref": f"{SPEC_URI}#/components/schemas/{schema}"}, registry=registry)


def check_schema(schema: str, data: Any) -> Any:
    """`data` when it matches the named component schema, else ContractViolation."""
    if not _validator(schema).is_valid(data):
        raise ContractViolation(f"answer does not match schema {schema}")
    return data


# --------------------------------------------------------------------------- plain mappings


def patron_status_from(data: Mapping[str, Any], patron_id: str, password_sent: bool) -> PatronStatus:
    """A checked PatronStatus body as kiosk data; a password check the server skipped fails closed."""
    password_ok = data.get("password_ok")
    if password_sent and password_ok is None:
        password_ok = False
    elif not password_sent:
        password_ok = None
    return from_catalogue(PatronStatus(
        patron_id=patron_id,
        valid=data["valid"],
        password_ok=password_ok,
        blocked=tuple(data.get("blocked") or ()),
        limit=data.get("limit"),
        charged=data.get("charged", 0),
        holds_ready=data.get("holds_ready", 0),
        overdue=data.get("overdue", 0),
        name=data.get("name") or None,
    ))


def item_info_from(data: Mapping[str, Any]) -> ItemInfo:
    return from_catalogue(ItemInfo(
        item_id=data["item_id"],
        title=data["title"],
        available=data["available"],
        counter_only=data.get("counter_only", False),
        media_type=data.get("media_type") or "book",
    ))


def loan_json(loan: LoanRequest) -> dict[str, Any]:
    """One Loan of the contract. A naive created_at is taken as the kiosk's local time."""
    if not IDEMPOTENCY_KEY.fullmatch(loan.txn_id):
        raise ValueError("txn_id cannot be used as an idempotency key")
    if loan.offline and loan.due_date is None:
        raise ValueError("an offline loan must carry the due date given to the patron")
    created = loan.created_at if loan.created_at.tzinfo else loan.created_at.astimezone()
    body: dict[str, Any] = {
        "idempotency_key": loan.txn_id,
        "patron_id": loan.patron_id,
        "item_id": loan.item_id,
        "created_at": created.isoformat(timespec="seconds"),
        "offline": loan.offline,
    }
    if loan.due_date is not None:
        body["due_date"] = loan.due_date.isoformat()
    return body


def loan_result_from(data: Mapping[str, Any], txn_id: str) -> LoanResult:
    """A checked LoanResult body as kiosk data (text in NFC); an unreadable due date is kept as text."""
    ok = data["ok"]
    due_raw = data.get("due_date") or ""
    try:
        due = date.fromisoformat(due_raw) if due_raw else None
    except ValueError:
        due = None
    refusal = None
    if not ok:
        refusal = Refusal(data["refusal"]) if data.get("refusal") else Refusal.OTHER
    return from_catalogue(LoanResult(
        txn_id=txn_id,
        ok=ok,
        item_id=data["item_id"],
        title=data.get("title", ""),
        due_date=due if ok else None,
        due_text=due_raw if ok and due is None else "",
        refusal=refusal,
        message=data.get("message", ""),
        replayed=data["replayed"],
    ))


def sendable(identifier: str) -> bool:
    """A patron or item id the contract accepts unchanged (never trimmed: that would name someone else)."""
    return bool(IDENTIFIER.fullmatch(identifier))


def _is_json(response: requests.Response) -> bool:
    mime = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


# --------------------------------------------------------------------------- the backend


class RestCatalogue:
    """Catalogue backed by the kiosk REST API. Every call may raise CatalogueUnavailable.

    One keep-alive `requests.Session` is shared by the UI and the outbox worker (the
    urllib3 pool is thread-safe). Worst case per call: (retries + 1) connect timeouts
    plus capped back-offs for a dead host; one read timeout for a slow catalogue.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        ca_bundle: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must be an http(s) URL")
        if client_key and not client_cert:
            raise ValueError("a client key needs its client certificate")
        self.base_url = base_url.rstrip("/")
        # Never False: an unverified catalogue would receive the token and reading records.
        self._verify: str | bool = str(ca_bundle) if ca_bundle else True
        self._cert: str | tuple[str, str] | None = None
        if client_cert:
            self._cert = (str(client_cert), str(client_key)) if client_key else str(client_cert)
        connect = min(timeout, CONNECT_TIMEOUT_MAX) if connect_timeout is None else connect_timeout
        self._timeout = (connect, timeout)
        self._session = requests.Session()
        self._session.auth = BearerToken(token) if token else None
        self._session.headers.update({"Accept": "application/json",
                                      "User-Agent": f"library-kiosk/{__version__}"})
        adapter = HTTPAdapter(max_retries=make_retry(retries, backoff, backoff_max),
                              pool_connections=1, pool_maxsize=4)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"RestCatalogue({self.base_url!r})"

    def reset(self) -> None:
        self._session.close()           # the pool opens new connections on the next request

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ Catalogue

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus:
        if not sendable(patron_id):
            return PatronStatus(patron_id=patron_id, valid=False)
        body: dict[str, Any] = {"patron_id": patron_id}
        checkable = password is not None and 0 < len(password) <= _PASSWORD_MAX
        if checkable:
            body["password"] = password
        status, data = self._post("patron_status", "/patrons/status", body, "PatronStatus",
                                  known={404: "PATRON_NOT_FOUND"})
        if status == 404:
            return PatronStatus(patron_id=patron_id, valid=False)
        self._same("patron_status", data["patron_id"], patron_id)
        result = patron_status_from(data, patron_id, password_sent=checkable)
        if password is not None and not checkable:
            # Empty or over-long: it cannot match, and is not worth sending.
            result = PatronStatus(patron_id=patron_id, valid=result.valid, password_ok=False)
        return result

    def item_info(self, item_id: str) -> ItemInfo:
        if not sendable(item_id):
            return ItemInfo(item_id=item_id, title="", available=False)
        status, data = self._post("item_info", "/items/info", {"item_id": item_id}, "ItemInfo",
                                  known={404: "ITEM_NOT_FOUND"})
        if status == 404:
            return ItemInfo(item_id=item_id, title="", available=False)
        self._same("item_info", data["item_id"], item_id)
        return item_info_from(data)

    checkout_batch_size = MAX_BATCH      # the outbox worker sends its backlog this many per POST

    def checkout(self, loan: LoanRequest) -> LoanResult:
        return self.checkout_many([loan])[0]

    def checkout_many(self, loans: Sequence[LoanRequest]) -> list[LoanResult]:
        """Loans in POSTs of up to MAX_BATCH, results in the order given.

        A loan with an id the contract cannot carry is refused here without being
        sent. Any failure of a batch raises CatalogueUnavailable; batches already
        answered are safe to send again (their keys replay).
        """
        results: list[LoanResult | None] = [None] * len(loans)
        bodies = [loan_json(loan) for loan in loans]    # ValueError for a kiosk bug, before anything is sent
        to_send: list[int] = []
        for index, (loan, body) in enumerate(zip(loans, bodies)):
            for value, refusal in ((body["patron_id"], Refusal.PATRON_UNKNOWN),
                                   (body["item_id"], Refusal.ITEM_UNKNOWN)):
                if results[index] is None and not sendable(value):
                    results[index] = LoanResult(txn_id=loan.txn_id, ok=False, item_id=loan.item_id,
                                                refusal=refusal)
            if results[index] is None:
                to_send.append(index)
        for start in range(0, len(to_send), MAX_BATCH):
            chunk = to_send[start:start + MAX_BATCH]
            _, data = self._post("checkout", "/loans", {"loans": [bodies[i] for i in chunk]}, "LoanResults")
            answers = data["results"]
            if len(answers) != len(chunk):
                raise self._unavailable("checkout", "wrong number of results", reason=Outage.PROTOCOL)
            for index, answer in zip(chunk, answers):
                loan = loans[index]
                self._same("checkout", answer["idempotency_key"], loan.txn_id)
                self._same("checkout", answer["item_id"], loan.item_id)
                results[index] = loan_result_from(answer, loan.txn_id)
        return [r for r in results if r is not None]

    def renew(self, patron_id: str, item_id: str, key: str | None = None) -> LoanResult:
        """One renewal. `key` is the tap's own idempotency key (a fresh one when None), so
        urllib3's repeats and a second send of the same tap renew once."""
        if not sendable(patron_id):
            return LoanResult(txn_id=key or "", ok=False, item_id=item_id, refusal=Refusal.PATRON_UNKNOWN)
        if not sendable(item_id):
            return LoanResult(txn_id=key or "", ok=False, item_id=item_id, refusal=Refusal.ITEM_UNKNOWN)
        body = {"idempotency_key": _key(key), "patron_id": patron_id, "item_id": item_id}
        _, data = self._post("renew", "/loans/renew", body, "LoanResult")
        self._same("renew", data["idempotency_key"], body["idempotency_key"])
        self._same("renew", data["item_id"], item_id)
        result = loan_result_from(data, key or "")
        why = data.get("renewal_refusal")
        if not result.ok and why:
            result = replace(result, refusal=Refusal(why))
        return result

    def renew_all(self, patron_id: str, key: str | None = None) -> RenewAllResult:
        """Every renewable item; `key` (one per tap) makes urllib3's repeats and a second
        send of the same tap harmless."""
        if not sendable(patron_id):
            return RenewAllResult(ok=False)
        body = {"idempotency_key": _key(key), "patron_id": patron_id}
        _, data = self._post("renew_all", "/loans/renew-all", body, "RenewAllResult")
        self._same("renew_all", data["idempotency_key"], body["idempotency_key"])
        return RenewAllResult(ok=data["ok"], renewed=tuple(data["renewed"]), unrenewed=tuple(data["unrenewed"]),
                              message=catalogue_text(data.get("message", "")))

    def patron_account(self, patron_id: str) -> PatronAccount:
        if not sendable(patron_id):
            return PatronAccount(patron_id=patron_id, valid=False)
        status, data = self._post("patron_account", "/patrons/account", {"patron_id": patron_id},
                                  "PatronAccount", known={404: "PATRON_NOT_FOUND"})
        if status == 404:
            return PatronAccount(patron_id=patron_id, valid=False)
        self._same("patron_account", data["patron_id"], patron_id)
        return patron_account_from(data)

    def checkin(self, request: LoanRequest) -> LoanResult:
        """One return by its transaction id as idempotency key: a replay checks nothing in twice."""
        if request.kind != CHECKIN:
            raise ValueError("checkin needs a CHECKIN request")
        if not IDEMPOTENCY_KEY.fullmatch(request.txn_id):
            raise ValueError("txn_id cannot be used as an idempotency key")
        if not sendable(request.item_id):
            return LoanResult(txn_id=request.txn_id, ok=False, item_id=request.item_id,
                              refusal=Refusal.ITEM_UNKNOWN, kind=CHECKIN)
        when = request.created_at if request.created_at.tzinfo else request.created_at.astimezone()
        body = {"idempotency_key": request.txn_id, "item_id": request.item_id,
                "returned_at": when.isoformat(timespec="seconds"), "offline": request.offline}
        _, data = self._post("checkin", "/returns", body, "ReturnResult")
        self._same("checkin", data["idempotency_key"], request.txn_id)
        self._same("checkin", data["item_id"], request.item_id)
        outcome = data["outcome"]
        return from_catalogue(LoanResult(
            txn_id=request.txn_id, ok=data["ok"], item_id=request.item_id, title=data.get("title", ""),
            refusal=Refusal(data["refusal"]) if data.get("refusal") else None,
            message=data.get("message", ""), replayed=data["replayed"], kind=CHECKIN,
            hold_shelf=outcome == "hold_shelf", alert=outcome != "returned"))

    def end_session(self, patron_id: str) -> None:
        if sendable(patron_id):
            self._post("end_session", "/sessions/end", {"patron_id": patron_id}, None)

    def resolve_identity(self, cert_hash: str) -> str | None:
        _, data = self._post("resolve_identity", "/identities/resolve",
                             {"cert_hash": _cert_hash(cert_hash)}, "IdentityLink")
        return data["patron_id"]

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None:
        """Raises LinkRefused when the catalogue knows no such patron or the birth date differs."""
        if not sendable(patron_id):
            raise LinkRefused(Refusal.PATRON_UNKNOWN)
        body: dict[str, Any] = {"cert_hash": _cert_hash(cert_hash), "patron_id": patron_id}
        if birth_date is not None:
            body["birth_date"] = birth_date.isoformat()
        status, _ = self._post("link_identity", "/identities/link", body, None,
                               known={404: "PATRON_NOT_FOUND", 422: "BIRTH_DATE_MISMATCH"})
        if status == 404:
            raise LinkRefused(Refusal.PATRON_UNKNOWN)
        if status == 422:
            raise LinkRefused(Refusal.WRONG_PASSWORD)

    def unlink_identity(self, cert_hash: str) -> None:
        self._post("unlink_identity", "/identities/unlink", {"cert_hash": _cert_hash(cert_hash)}, None)

    # ------------------------------------------------------------------ HTTP

    def _post(self, operation: str, path: str, body: dict[str, Any], schema: str | None, *,
              known: Mapping[int, str] | None = None) -> tuple[int, Any]:
        """(status, checked body) for the success status or a documented error `known[status]`.

        `schema` None means the success answer is 204 No Content.
        """
        try:
            response = self._session.post(self.base_url + path, json=body, timeout=self._timeout,
                                          verify=self._verify, cert=self._cert, allow_redirects=False)
        except requests.RequestException as exc:
            raise self._unavailable(operation, type(exc).__name__, reason=outage_of(exc)) from exc
        except OSError as exc:                      # e.g. the CA bundle file vanished
            raise self._unavailable(operation, type(exc).__name__, reason=outage_of(exc)) from exc
        status = response.status_code
        with response:
            try:
                if schema is None and status == 204:
                    return status, None
                if schema is not None and status == 200:
                    return status, check_schema(schema, self._json(response))
                if known and status in known:
                    error = check_schema("Error", self._json(response))
                    if error["code"] == known[status]:
                        return status, error
            except (ValueError, ContractViolation) as exc:
                raise self._unavailable(operation, type(exc).__name__, status, reason=Outage.PROTOCOL) from None
            code = self._error_code(response)
        raise self._unavailable(operation, code or "unexpected status", status)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if not _is_json(response):
            raise ContractViolation("answer is not JSON")
        return response.json()          # ValueError (JSONDecodeError) when the body is not JSON

    @staticmethod
    def _error_code(response: requests.Response) -> str:
        """The contract's error code when the body carries one (it is an enum, never patron data)."""
        try:
            if _is_json(response):
                return check_schema("Error", response.json())["code"]
        except (ValueError, ContractViolation):
            pass
        return ""

    def _same(self, operation: str, answered: str, asked: str) -> None:
        if answered != asked:
            raise self._unavailable(operation, "answer names another record", reason=Outage.PROTOCOL)

    @staticmethod
    def _unavailable(operation: str, error: str, status: int | None = None, *,
                     reason: Outage | None = None) -> CatalogueUnavailable:
        """`reason` defaults by the HTTP status: 401/403 the kiosk's credentials, any other a
        well-formed refusal from the server."""
        if reason is None:
            reason = Outage.LOGIN_REFUSED if status in (401, 403) else Outage.REFUSED_BY_SERVER
        log_event(log, "catalogue.rest.unavailable", logging.WARNING,
                  operation=operation, status=status, error=error)
        return CatalogueUnavailable(f"{operation}: {error}" + (f" (HTTP {status})" if status else ""),
                                    reason=reason)


def _key(key: str | None) -> str:
    if key is None:
        return uuid.uuid4().hex
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ValueError("not a usable idempotency key")
    return key


def patron_account_from(data: Mapping[str, Any]) -> PatronAccount:
    """A checked PatronAccount body as kiosk data (text in NFC, amounts as Decimal)."""
    def due(text: str | None) -> tuple[date | None, str]:
        try:
            return (date.fromisoformat(text), "") if text else (None, "")
        except ValueError:
            return None, text or ""

    loans = []
    for loan in data["loans"]:
        day, raw = due(loan.get("due_date"))
        loans.append(from_catalogue(AccountLoan(item_id=loan["item_id"], title=loan["title"], due_date=day,
                                                due_text=raw, overdue=loan["overdue"])))
    return PatronAccount(
        patron_id=data["patron_id"], valid=data["valid"], loans=tuple(loans),
        holds=tuple(from_catalogue(AccountHold(item_id=h.get("item_id") or "", title=h["title"], ready=h["ready"]))
                    for h in data["holds"]),
        fines=tuple(from_catalogue(AccountFine(description=f["description"], amount=_amount(f.get("amount"))))
                    for f in data["fines"]),
        fee_amount=_amount(data.get("fee_amount")), currency=data.get("currency") or "",
        blocked=tuple(data.get("blocked") or ()),
        name=catalogue_text(data["name"]) if data.get("name") else None)


def _amount(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


def _cert_hash(value: str) -> str:
    normalised = value.lower()
    if not CERT_HASH.fullmatch(normalised):
        raise ValueError("cert_hash must be a SHA-256 hex digest")
    return normalised


def build_rest_catalogue(settings: RestSettings) -> RestCatalogue:
    """The backend from its settings ([catalogue] and [catalogue.rest]).

    The token is read from its file here and stays in memory only. Nothing is
    connected yet, so a catalogue that is down does not stop the kiosk starting.
    """
    from kiosk.config.load import ConfigError, read_secret

    for key in ("ca_bundle", "client_cert", "client_key"):
        value = getattr(settings, key)
        if value and not Path(value).is_file():
            raise ConfigError("configuration", f"catalogue.rest.{key}", "file not found")
    token = read_secret(settings.token_file)
    try:
        return RestCatalogue(
            settings.base_url,
            token=token,
            ca_bundle=settings.ca_bundle,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
            timeout=settings.timeout,
            retries=settings.retries,
        )
    except ValueError as exc:
        key = "token_file" if "token" in str(exc) else "base_url"
        raise ConfigError("configuration", f"catalogue.rest.{key}", str(exc)) from None


__all__ = [
    "RestCatalogue", "build_rest_catalogue", "BearerToken", "KioskRetry", "make_retry",
    "check_schema", "ContractViolation", "sendable", "loan_json", "loan_result_from",
    "patron_status_from", "item_info_from", "API_SPEC", "MAX_BATCH", "RETRY_STATUSES",
]
