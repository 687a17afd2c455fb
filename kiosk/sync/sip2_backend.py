"""The library catalogue over SIP2: kiosk.core.catalogue.Catalogue on top of Sip2Client.

Maps SIP2 flags and screen messages onto the kiosk's plain results, so that the
session core never sees protocol details. Checkout replays are recognised by the
ACS's "renewal ok" flag: the same patron already has the item, so the loan exists
and is acknowledged once, never lent twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Iterable

from kiosk.core.catalogue import (
    CHECKIN,
    AccountFine,
    AccountHold,
    AccountLoan,
    CatalogueCapabilities,
    CatalogueUnavailable,
    ItemInfo,
    LoanRequest,
    LoanResult,
    PatronAccount,
    PatronStatus,
    Refusal,
    RenewAllResult,
    catalogue_text,
    from_catalogue,
)
from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_client import Sip2Client, Sip2Config
from kiosk.sync.sip2_codec import SipMessage

if TYPE_CHECKING:
    from kiosk.config.settings import Sip2Settings

#: Patron-status flags that stop a checkout (renewal/hold/recall-only flags do not).
BORROWING_BLOCKS = frozenset({
    "charge_privileges_denied", "card_reported_lost", "too_many_items_charged",
    "too_many_items_overdue", "too_many_claims_of_items_returned", "too_many_items_lost",
    "excessive_outstanding_fines", "excessive_outstanding_fees", "recall_overdue",
    "too_many_items_billed",
})

#: Circulation statuses (18) for an item the patron may take from the shelf now.
AVAILABLE_STATUSES = frozenset({"03", "09"})

#: Media types (CK) that go to the counter: AV and multi-part sets.
DEFAULT_COUNTER_ONLY_MEDIA = frozenset({"004", "005", "006", "007", "008", "009", "010"})

#: Screen-message keywords per refusal, checked in this order (first match wins).
#: Koha, Evergreen and Japanese ILS wordings; AF is free text, so this is a best effort
#: and anything unmatched is OTHER with the text kept as secondary detail.
REFUSAL_KEYWORDS: tuple[tuple[Refusal, tuple[str, ...]], ...] = (
    (Refusal.ITEM_UNKNOWN, ("invalid item", "item not found", "unknown item", "item unknown",
                            "no such item", "資料が見つかりません", "該当資料なし", "未登録資料")),
    (Refusal.PATRON_UNKNOWN, ("invalid patron", "patron not found", "unknown patron",
                              "no such patron", "利用者が見つかりません", "未登録利用者")),
    (Refusal.ON_HOLD, ("hold", "reserve", "予約")),
    (Refusal.ALREADY_OUT, ("another patron", "issued to another", "charged to another",
                           "already checked out", "already out", "貸出中")),
    (Refusal.COUNTER_ONLY, ("not for loan", "notforloan", "not loanable", "reference only",
                            "rental", "fee acknowledg", "counter", "staff", "禁帯出", "カウンター")),
    (Refusal.PATRON_BLOCKED, ("blocked", "debarred", "restricted", "expired", "suspended",
                              "fines", "owes", "lost card", "card lost", "利用停止", "有効期限", "延滞")),
    (Refusal.LIMIT_REACHED, ("too many", "limit", "maximum", "上限", "冊数")),
)

#: Why a renewal (30 ok=0) was refused, checked in this order; AF is free text.
RENEW_KEYWORDS: tuple[tuple[Refusal, tuple[str, ...]], ...] = (
    (Refusal.RENEWAL_LIMIT, ("too many renewals", "renewal limit", "no more renewals", "maximum renewals",
                             "renewals exceeded", "renewal count", "too_many", "延長回数", "延長の上限",
                             "これ以上延長")),
    (Refusal.ON_HOLD, ("hold", "reserve", "on_reserve", "予約")),
    (Refusal.OVERDUE, ("overdue", "延滞")),
    (Refusal.NOT_ON_LOAN, ("not checked out", "not on loan", "not charged", "not issued",
                           "貸出されていません")),
    (Refusal.ITEM_UNKNOWN, ("invalid item", "item not found", "unknown item", "no such item",
                            "資料が見つかりません")),
    (Refusal.PATRON_BLOCKED, ("blocked", "debarred", "restricted", "expired", "suspended", "fines",
                              "owes", "card lost", "利用停止", "有効期限")),
)

#: Checkin alert types (Koha's CV extension) meaning "a patron is waiting for it".
HOLD_ALERTS = frozenset({"01", "02"})

#: Detail lists longer than this are read in pages of DETAIL_PAGE (BP/BQ).
DETAIL_PAGE = 50
DETAIL_MAX = 200

IDENTITY_UNSUPPORTED = "identity links need the REST backend or the local link service"

#: Why the outbox holds its queue (CheckoutGate.checkout_hold), as staff read it.
HOLD_OFFLINE = "ACS status: off-line"
HOLD_CHECKOUT_NOT_ALLOWED = "ACS status: checkout not allowed"


def classify_refusal(messages: Iterable[str], *, fee: bool = False) -> Refusal:
    """Refusal for a checkout with ok=0, from AF text and whether a fee was reported."""
    text = " ".join(messages).casefold()
    for refusal, words in REFUSAL_KEYWORDS:
        if any(word in text for word in words):
            return refusal
    return Refusal.COUNTER_ONLY if fee else Refusal.OTHER


def classify_renewal(messages: Iterable[str], flags: Iterable[str] = ()) -> Refusal:
    """Refusal for a renewal with ok=0: AF wording first, then the patron's own flags."""
    text = " ".join(messages).casefold()
    for refusal, words in RENEW_KEYWORDS:
        if any(word in text for word in words):
            return refusal
    flags = set(flags)
    if "too_many_renewals" in flags:
        return Refusal.RENEWAL_LIMIT
    if flags & (BORROWING_BLOCKS | {"renewal_privileges_denied"}):
        return Refusal.PATRON_BLOCKED
    return Refusal.OTHER


class Sip2Catalogue:
    """Catalogue backed by a SIP2 ACS. Every call may raise CatalogueUnavailable."""

    def __init__(
        self,
        client: Sip2Client,
        institution: str,
        terminal_password: str = "",
        *,
        language: str = "014",
        patron_request: str = "63",
        counter_only_media: Iterable[str] = DEFAULT_COUNTER_ONLY_MEDIA,
        clock: Callable[[], datetime] = datetime.now,
        tz: tzinfo | None = None,
        location: str = "",
    ) -> None:
        if patron_request not in ("63", "23"):
            raise ValueError("patron_request must be '63' (patron information) or '23' (patron status)")
        self.client = client
        self.institution = institution
        self.terminal_password = terminal_password
        self.language = language
        self.patron_request = patron_request
        self.counter_only_media = frozenset(counter_only_media)
        self._clock = clock
        self._tz = tz
        self.location = location            # AP of a checkin: where the book was handed back

    # ------------------------------------------------------------------ Catalogue

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus:
        if not self._sendable(patron_id):
            return PatronStatus(patron_id=patron_id, valid=False)
        if self.patron_request == "63":
            # Summary position 0 asks for the available-hold items (AS) so they can be counted.
            request = codec.patron_information(self.institution, patron_id, self._now(),
                                               terminal_password=self.terminal_password, patron_password=password,
                                               language=self.language, summary="Y" + " " * 9)
        else:
            request = codec.patron_status(self.institution, patron_id, self._now(),
                                          terminal_password=self.terminal_password, patron_password=password,
                                          language=self.language)
        reply = self.client.request(request)
        flags = codec.patron_flags(reply.flag("patron_status"))
        return from_catalogue(PatronStatus(
            patron_id=patron_id,
            valid=reply.get("BL") != "N",
            password_ok=None if password is None else {"Y": True, "N": False}.get(reply.get("CQ") or ""),
            blocked=tuple(f for f in flags if f in BORROWING_BLOCKS),
            limit=codec.parse_count(reply.get("CB")),
            charged=_count(reply, "charged_items_count", "AU"),
            holds_ready=len(reply.getall("AS")) or (codec.parse_count(reply.flag("hold_items_count")) or 0),
            overdue=_count(reply, "overdue_items_count", "AT"),
            name=reply.get("AE") or None,
        ))

    def item_info(self, item_id: str) -> ItemInfo:
        if not self._sendable(item_id):
            return ItemInfo(item_id=item_id, title="", available=False)
        reply = self.client.request(codec.item_information(
            self.institution, item_id, self._now(), terminal_password=self.terminal_password))
        status = reply.flag("circulation_status")
        title = reply.get("AJ") or ""
        media = reply.get("CK") or ""
        if status == "01" and not title:          # how Koha and pysip2 answer for an unknown barcode
            return ItemInfo(item_id=item_id, title="", available=False)
        return from_catalogue(ItemInfo(
            item_id=item_id,
            title=title,
            available=status in AVAILABLE_STATUSES,
            counter_only=media in self.counter_only_media,
            media_type=codec.MEDIA_TYPES.get(media, "book" if not media else "other"),
        ))

    def checkout(self, loan: LoanRequest) -> LoanResult:
        """11 with renewal policy N; offline loans go with no-block Y and their own due date."""
        checks = ((loan.patron_id, Refusal.PATRON_UNKNOWN), (loan.item_id, Refusal.ITEM_UNKNOWN))
        for value, refusal in checks:
            if not self._sendable(value):
                return LoanResult(txn_id=loan.txn_id, ok=False, item_id=loan.item_id, refusal=refusal)
        when = codec.format_datetime(loan.created_at, tz=self._tz)
        if loan.offline:
            if loan.due_date is None:
                raise ValueError("an offline loan must carry the due date given to the patron")
            nb_due = codec.format_datetime(codec.combine_due(loan.due_date))
        else:
            nb_due = when                         # strict ACSs reject blanks; Koha's emulator sends this
        reply = self.client.request(codec.checkout(
            self.institution, loan.patron_id, loan.item_id, when, nb_due,
            terminal_password=self.terminal_password, no_block=loan.offline,
            renewal_policy=False, fee_acknowledged=False,
        ))
        if reply.flag("renewal_ok") == "Y":
            # Already on this patron's card: the loan exists (e.g. replay after a crash).
            return loan_result(loan.txn_id, loan.item_id, reply, ok=True, replayed=True)
        return loan_result(loan.txn_id, loan.item_id, reply, ok=reply.flag("ok") == "1")

    def renew(self, patron_id: str, item_id: str, key: str | None = None) -> LoanResult:
        """29, sent once: a reconnect never repeats it (SIP2 has no idempotency key; `key`
        is for REST). Lost on the wire, it is CatalogueUnavailable and the patron may tap again."""
        if not (self._sendable(patron_id) and self._sendable(item_id)):
            return LoanResult(txn_id=key or "", ok=False, item_id=item_id, refusal=Refusal.ITEM_UNKNOWN)
        when = self._now()
        reply = self.client.request(codec.renew(
            self.institution, patron_id, item_id, when, when, terminal_password=self.terminal_password),
            once=True)
        ok = reply.flag("ok") == "1"
        result = loan_result(key or "", item_id, reply, ok=ok)
        if not ok:
            flags = codec.patron_flags(reply.flag("patron_status"))
            result = replace(result, refusal=classify_renewal(reply.getall("AF"), flags))
        return result

    def renew_all(self, patron_id: str, key: str | None = None) -> RenewAllResult:
        """65, sent once like a single renewal."""
        if not self._sendable(patron_id):
            return RenewAllResult(ok=False)
        reply = self.client.request(codec.renew_all(
            self.institution, patron_id, self._now(), terminal_password=self.terminal_password), once=True)
        messages = [m.strip() for m in reply.getall("AF") if m.strip()]
        return RenewAllResult(
            ok=reply.flag("ok") == "1",
            renewed=tuple(reply.getall("BM")),
            unrenewed=tuple(reply.getall("BN")),
            message=" ".join(catalogue_text(m) for m in messages),
        )

    def patron_account(self, patron_id: str) -> PatronAccount:
        """63 once per detail list (the summary asks for one list at a time), paged with
        BP/BQ, then 17 per loan for its title and due date (detail lists carry only ids)."""
        if not self._sendable(patron_id):
            return PatronAccount(patron_id=patron_id, valid=False)
        lists: dict[str, list[str]] = {}
        first: SipMessage | None = None
        for detail in ("AU", "AT", "AS", "CD", "AV"):
            values: list[str] = []
            start = 1
            while start <= DETAIL_MAX:
                reply = self._patron_info(patron_id, detail, start, start + DETAIL_PAGE - 1)
                first = first or reply
                if reply.get("BL") == "N":
                    return PatronAccount(patron_id=patron_id, valid=False)
                page = reply.getall(detail)
                values.extend(page)
                if len(page) < DETAIL_PAGE:
                    break
                start += DETAIL_PAGE
            lists[detail] = values
        assert first is not None
        overdue_ids = set(lists["AT"])
        today = self._clock().date()
        loans = []
        for item_id in dict.fromkeys(lists["AU"] + lists["AT"]):     # an overdue item is charged too
            loans.append(self._account_loan(item_id, item_id in overdue_ids, today))
        holds = [from_catalogue(AccountHold(item_id=h, title=h, ready=True)) for h in lists["AS"]]
        holds += [from_catalogue(AccountHold(item_id=h, title=h, ready=False)) for h in lists["CD"]]
        fines = [from_catalogue(AccountFine(description=f.strip(), amount=_leading_amount(f)))
                 for f in lists["AV"] if f.strip()]
        return PatronAccount(
            patron_id=patron_id,
            valid=True,
            loans=tuple(loans),
            holds=tuple(holds),
            fines=tuple(fines),
            fee_amount=codec.parse_amount(first.get("BV")),
            currency=(first.get("BH") or "").strip()[:3],
            blocked=codec.patron_flags(first.flag("patron_status")),
            name=catalogue_text(first.get("AE") or "") or None,
        )

    def checkin(self, request: LoanRequest) -> LoanResult:
        """09, sent once per attempt (the outbox decides about repeats, knowing it may have
        been received). An offline return goes with no-block Y and the time of the scan."""
        if request.kind != CHECKIN:
            raise ValueError("checkin needs a CHECKIN request")
        if not self._sendable(request.item_id):
            return LoanResult(txn_id=request.txn_id, ok=False, item_id=request.item_id,
                              refusal=Refusal.ITEM_UNKNOWN, kind=CHECKIN)
        returned = codec.format_datetime(request.created_at, tz=self._tz)
        reply = self.client.request(codec.checkin(
            self.institution, request.item_id, self._now(), returned, location=self.location,
            terminal_password=self.terminal_password, no_block=request.offline), once=True)
        return checkin_result(request.txn_id, request.item_id, reply)

    def end_session(self, patron_id: str) -> None:
        if self._sendable(patron_id):
            self.client.request(codec.end_session(
                self.institution, patron_id, self._now(), terminal_password=self.terminal_password))

    def resolve_identity(self, cert_hash: str) -> str | None:
        """SIP2 has no message for card-identity links; see IDENTITY_UNSUPPORTED."""
        raise CatalogueUnavailable(IDENTITY_UNSUPPORTED)

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None:
        raise CatalogueUnavailable(IDENTITY_UNSUPPORTED)

    def unlink_identity(self, cert_hash: str) -> None:
        raise CatalogueUnavailable(IDENTITY_UNSUPPORTED)

    # ------------------------------------------------------------------ extras

    def capabilities(self) -> CatalogueCapabilities:
        """What the ACS announced in 98 (asks now if the connection has not done so yet)."""
        status = self.client.acs_status or self.client.status()
        return CatalogueCapabilities(
            online=status.online,
            offline_ok=status.offline_ok,
            checkout=status.checkout_ok and status.supported.get("checkout", False),
            renew=status.supported.get("renew", False),
            messages=dict(status.supported),
        )

    def checkout_hold(self) -> str | None:
        """Asks the ACS now (99 -> 98): None when it takes checkouts, else why not.

        Checkouts sent while the ACS says "checkout not allowed" would be refused and the
        refusals purged as if the patron could not borrow: the loans must wait instead.
        An ACS that keeps reporting off-line on connect (so every attempt fails) holds too.
        """
        try:
            status = self.client.status()
        except CatalogueUnavailable:
            last = self.client.acs_status
            if last is not None and not last.online:
                return HOLD_OFFLINE
            raise
        if not status.online:
            return HOLD_OFFLINE
        if not status.checkout_ok:
            return HOLD_CHECKOUT_NOT_ALLOWED
        return None

    def reset(self) -> None:
        self.client.close()             # the next message logs in on a new connection

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ helpers

    def _patron_info(self, patron_id: str, detail: str, start: int, end: int) -> SipMessage:
        return self.client.request(codec.patron_information(
            self.institution, patron_id, self._now(), terminal_password=self.terminal_password,
            language=self.language, summary=codec.summary(detail), start=start, end=end))

    def _account_loan(self, item_id: str, overdue: bool, today: date) -> AccountLoan:
        if not self._sendable(item_id):
            return AccountLoan(item_id=item_id, title=item_id, overdue=overdue)
        reply = self.client.request(codec.item_information(
            self.institution, item_id, self._now(), terminal_password=self.terminal_password))
        due = codec.parse_due_date(reply.get("AH"))
        late = overdue or (due.date is not None and due.date < today)
        return from_catalogue(AccountLoan(
            item_id=item_id, title=reply.get("AJ") or item_id, due_date=due.date,
            due_text="" if due.when else due.raw.strip(), overdue=late))

    def _now(self) -> str:
        return codec.format_datetime(self._clock(), tz=self._tz)

    def _sendable(self, identifier: str) -> bool:
        """An id we can send unchanged: non-empty, encodable, within 255 bytes.

        Truncating an identifier would silently name a different patron or item.
        """
        try:
            data = codec.clean_value(identifier).encode(self.client.config.charset)
        except UnicodeEncodeError:
            return False
        return bool(identifier.strip()) and len(data) <= codec.MAX_FIELD_BYTES

def loan_result(txn_id: str, item_id: str, reply: SipMessage, *, ok: bool,
                replayed: bool = False) -> LoanResult:
    """A 12/30 response as a LoanResult (text in NFC); an unreadable due date is kept as text."""
    due = codec.parse_due_date(reply.get("AH"))
    messages = reply.getall("AF")
    refusal = None
    if not ok:
        fee = bool((reply.get("BV") or "").strip().strip("0.")) or bool(reply.get("BT"))
        refusal = classify_refusal(messages, fee=fee)
    return from_catalogue(LoanResult(
        txn_id=txn_id,
        ok=ok,
        item_id=item_id,
        title=reply.get("AJ") or "",
        due_date=due.date if ok else None,
        due_text="" if due.when or not ok else due.raw.strip(),
        refusal=refusal,
        message=" ".join(m.strip() for m in messages if m.strip()),
        replayed=replayed,
    ))


def checkin_result(txn_id: str, item_id: str, reply: SipMessage) -> LoanResult:
    """A 10 as a LoanResult of kind CHECKIN. Alert + a hold (Koha's CV 01/02, a sort bin
    naming holds, or AF wording) means "put it on the hold shelf"; any other alert means
    "take it to the counter"."""
    ok = reply.flag("ok") == "1"
    alert = reply.flag("alert") == "Y"
    messages = [m.strip() for m in reply.getall("AF") if m.strip()]
    text = " ".join(messages).casefold()
    bin_ = (reply.get("CL") or "").casefold()
    hold = alert and (reply.get("CV") in HOLD_ALERTS or "hold" in bin_ or "予約" in bin_
                      or any(w in text for w in ("hold", "reserve", "予約")))
    refusal = None
    if not ok:
        refusal = classify_renewal(messages)
        if refusal not in (Refusal.NOT_ON_LOAN, Refusal.ITEM_UNKNOWN):
            refusal = Refusal.OTHER
        if not reply.get("AJ") and refusal == Refusal.OTHER and "unknown" in text:
            refusal = Refusal.ITEM_UNKNOWN
    return from_catalogue(LoanResult(
        txn_id=txn_id, ok=ok, item_id=item_id, title=reply.get("AJ") or "", refusal=refusal,
        message=" ".join(messages), kind=CHECKIN, hold_shelf=hold, alert=alert))


def _leading_amount(text: str) -> Decimal | None:
    """The amount a fine line starts with ('300 延滞料', '12.50 Overdue'), else None."""
    head = text.strip().split(" ", 1)[0] if text.strip() else ""
    return codec.parse_amount(head.lstrip("¥$€£"))


def build_sip2_catalogue(settings: Sip2Settings) -> Sip2Catalogue:
    """The backend from its settings ([catalogue] and [catalogue.sip2]).

    Secrets come from their files here and stay in memory only. The connection is
    opened lazily by the first request, so a down ILS does not stop the kiosk starting.
    """
    from kiosk.config.load import read_secret

    s = settings
    client = Sip2Client(Sip2Config(
        host=s.host, port=s.port, tls=s.tls, ca_file=s.ca_file, client_cert=s.client_cert,
        client_key=s.client_key, login_user=s.login_user, login_password=read_secret(s.password_file),
        location=s.location, charset=s.charset, terminator=s.terminator, retries=s.retries, timeout=s.timeout,
    ))
    return Sip2Catalogue(client, institution=s.institution,
                         terminal_password=read_secret(s.terminal_password_file), location=s.location or "")


def _count(reply: SipMessage, fixed_name: str, detail_id: str) -> int:
    count = codec.parse_count(reply.flag(fixed_name))
    return count if count is not None else len(reply.getall(detail_id))


__all__ = [
    "Sip2Catalogue", "build_sip2_catalogue", "classify_refusal", "classify_renewal", "loan_result",
    "checkin_result", "RENEW_KEYWORDS",
    "BORROWING_BLOCKS", "AVAILABLE_STATUSES",
    "DEFAULT_COUNTER_ONLY_MEDIA", "REFUSAL_KEYWORDS", "IDENTITY_UNSUPPORTED",
    "HOLD_OFFLINE", "HOLD_CHECKOUT_NOT_ALLOWED",
]
