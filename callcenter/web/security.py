"""What every request and response of the console goes through before any handler:

- only the host names of ``web.hosts`` are served (the Host header), which also stops DNS rebinding;
- a request that changes anything (any method but GET and HEAD) must come from the console's own
  origin: its ``Origin`` header, else its ``Sec-Fetch-Site: same-origin``, else it is refused.
  The session cookie is SameSite=Strict, but "same site" still includes another port or a sibling
  host name; this check does not;
- every response carries a strict Content-Security-Policy (the pages' scripts and styles are files
  of ours; no inline code runs), nosniff, no framing, and a same-origin Referrer-Policy;
- the client's address ("from where", for the audit log and the login throttle) is the peer's, or
  behind a proxy of ``web.trusted_proxies`` the one that proxy saw.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from callcenter.web.context import SETTINGS, json_response

SAFE_METHODS = frozenset({"GET", "HEAD"})
DEFAULT_PORTS = {"http": 80, "https": 443}
CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "media-src 'self'",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'",
))
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset)


def _refuse(request: web.Request, status: int, message: str) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        return json_response({"error": message}, status)
    return web.Response(status=status, text=message)


def host_name(host_header: str) -> str:
    """``Example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    name, colon, port = host.rpartition(":")
    return (name if colon and port.isdigit() and ":" not in name else host).rstrip(".")


def _trusted_peer(request: web.Request) -> bool:
    return (request.remote or "") in request.app[SETTINGS].web.trusted_proxies


def client_address(request: web.Request) -> str:
    """Who is asking: the peer's address, or behind a trusted proxy the last address in
    X-Forwarded-For that is not itself a trusted proxy (earlier ones the client could have written)."""
    remote = request.remote or ""
    if not _trusted_peer(request):
        return remote
    proxies = request.app[SETTINGS].web.trusted_proxies
    forwarded = [part.strip() for header in request.headers.getall("X-Forwarded-For", [])
                 for part in header.split(",") if part.strip()]
    for address in reversed(forwarded):
        if address not in proxies:
            return address[:64]
    return remote


def own_origin(request: web.Request) -> tuple[str, str, int]:
    """(scheme, host, port) of the console as this request reached it."""
    if _trusted_peer(request) and request.headers.get("X-Forwarded-Proto") in DEFAULT_PORTS:
        scheme = request.headers["X-Forwarded-Proto"]
    elif request.app[SETTINGS].web.cookie_secure:
        scheme = "https"  # served behind HTTPS, whatever the hop from the proxy is
    else:
        scheme = request.scheme
    host = request.host.strip().lower()
    url = URL.build(scheme=scheme, authority=host) if host else None
    port = url.explicit_port if url is not None and url.explicit_port else DEFAULT_PORTS.get(scheme, 0)
    return scheme, host_name(host), port


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            url = URL(origin)
            theirs = (url.scheme, (url.host or "").lower().rstrip("."), url.port or 0)
        except ValueError:
            return False
        return bool(url.host) and theirs == own_origin(request)
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


@web.middleware
async def guard_middleware(request: web.Request, handler):
    if host_name(request.host) not in request.app[ALLOWED_HOSTS]:
        return _refuse(request, 421, "此地址未被允许访问（web.hosts）")
    if request.method not in SAFE_METHODS and not same_origin(request):
        return _refuse(request, 403, "拒绝跨站请求：请从本系统的页面操作")
    return await handler(request)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the same protective headers on pages, API answers, files and errors."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.app[SETTINGS].web.cookie_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
