"""Why a catalogue call failed, as one of a few `Outage` codes staff can act on.

A pure function over the exception the backend raised (and its causes): the backends
raise CatalogueUnavailable, with `reason` set where only they know it (a SIP2 login
refused, an HTTP status) and the transport error chained as the cause otherwise. The
exception text never leaves this module's answer: it may quote a catalogue reply.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys

from kiosk.core.catalogue import CatalogueUnavailable, Outage
from kiosk.sync.sip2_codec import SipDecodeError


def _by_type() -> tuple[tuple[tuple[type[BaseException], ...], Outage], ...]:
    """Exception types and what they mean, checked in this order on each exception of the
    chain: a requests SSLError is also a ConnectionError, a ConnectTimeout both a Timeout
    and a ConnectionError. requests' types only once something imported it (the REST
    backend): a SIP2 kiosk never loads requests, and then no error can be one of them."""
    tls: tuple[type[BaseException], ...] = (ssl.SSLError, ssl.CertificateError)
    timeout: tuple[type[BaseException], ...] = (TimeoutError,)
    unreachable: tuple[type[BaseException], ...] = (ConnectionError, socket.gaierror, socket.herror)
    protocol: tuple[type[BaseException], ...] = (SipDecodeError,)
    rex = sys.modules.get("requests.exceptions")
    if rex is not None:
        tls += (rex.SSLError,)
        timeout += (rex.Timeout,)
        unreachable += (rex.ConnectionError,)
        protocol += (rex.JSONDecodeError,)
    return ((tls, Outage.TLS), (timeout, Outage.TIMEOUT), (unreachable, Outage.UNREACHABLE),
            (protocol, Outage.PROTOCOL))


_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}


def outage_of(exc: BaseException) -> Outage:
    """The reason a backend gave, else the innermost cause whose type tells (TLS, timeout, no
    connection, garbled answer), else a network errno on the way (no route, network down),
    else OTHER (e.g. a CA bundle file gone: not the network's fault)."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, CatalogueUnavailable) and link.reason is not None:
            return link.reason
    by_type = _by_type()
    for link in reversed(chain):             # the innermost cause is the most specific
        for types, outage in by_type:
            if isinstance(link, types):
                return outage
    if any(isinstance(link, OSError) and link.errno in _NO_ROUTE for link in chain):
        return Outage.UNREACHABLE
    return Outage.OTHER
