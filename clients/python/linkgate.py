"""A client for Linkgate's bot API, for bots and agents written in Python.

Standard library only (``urllib``), Python 3.9 or newer: copy this one file
into your project. It mirrors the TypeScript client (``@linkgate/client``):

    from linkgate import LinkgateClient, NotLinked, NeedsReauth

    linkgate = LinkgateClient("http://127.0.0.1:8000", api_key)
    try:
        link = linkgate.require_link(discord_user_id, "jellyfin")
    except (NotLinked, NeedsReauth) as missing:
        reply(f"Please link your Jellyfin account first: {missing.link_url}")

Every call has a timeout; every failure is a ``LinkgateError`` (or a
subclass) carrying the gateway's error ``code``.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Union

__all__ = [
    "LinkgateClient",
    "Link",
    "LinkUrl",
    "Provider",
    "LinkgateError",
    "NotLinked",
    "NeedsReauth",
    "ProviderUnconfigured",
    "LinkCancelled",
]


class LinkgateError(Exception):
    """Any failure. ``code`` is the gateway's error code, or ``network_error`` / ``timeout`` / ``bad_response``."""

    def __init__(self, message: str, code: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class NotLinked(LinkgateError):
    """The user has not linked the provider: send them ``link_url``."""

    def __init__(self, message: str, link_url: str) -> None:
        super().__init__(message, "not_linked", 404)
        self.link_url = link_url


class NeedsReauth(LinkgateError):
    """The link exists but no longer works (revoked, expired): send them ``link_url`` to link again."""

    def __init__(self, message: str, link_url: str) -> None:
        super().__init__(message, "needs_reauth", 409)
        self.link_url = link_url


class ProviderUnconfigured(LinkgateError):
    """Nobody can link this provider until the gateway's operator configures it (``message`` says what is missing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "provider_unconfigured", 503)


class LinkCancelled(LinkgateError):
    """The user gave up linking (Cancel on the gateway's page, or refused at the provider): stop waiting."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "link_cancelled", 409)


@dataclass(frozen=True)
class Link:
    user_id: str
    provider: str
    external_id: str
    external_name: Optional[str]
    status: str  # "active" or "needs_reauth"
    scopes: List[str]
    linked_at: str
    updated_at: str
    expires_at: Optional[str]

    @staticmethod
    def _from(body: Any) -> "Link":
        try:
            return Link(
                user_id=_text(body["userId"]),
                provider=_text(body["provider"]),
                external_id=_text(body["externalId"]),
                external_name=_optional_text(body.get("externalName")),
                status=_text(body["status"]),
                scopes=[_text(scope) for scope in body.get("scopes", [])],
                linked_at=_text(body["linkedAt"]),
                updated_at=_text(body["updatedAt"]),
                expires_at=_optional_text(body.get("expiresAt")),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise LinkgateError("Linkgate answered a link in an unexpected shape", "bad_response") from error


@dataclass(frozen=True)
class LinkUrl:
    url: str
    expires_at: str


@dataclass(frozen=True)
class Provider:
    id: str
    display_name: str
    configured: bool


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_text(value: Any) -> Optional[str]:
    return None if value is None else _text(value)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The API never redirects; a redirect is answered as it is, so the key is never sent elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's own signature)
        return None


class LinkgateClient:
    """The bot API at ``base_url`` (e.g. ``http://127.0.0.1:8000``) with one of the gateway's API keys."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        if not api_key:
            raise ValueError("LinkgateClient: api_key is required")
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    # ── the calls ──────────────────────────────────────────────────────────

    def list_providers(self) -> List[Provider]:
        body = self._json(self._call("GET", "/providers"))
        return [Provider(id=_text(p["id"]), display_name=_text(p["displayName"]), configured=bool(p["configured"])) for p in body["providers"]]

    def create_link_url(self, user_id: str, provider: str, return_to: Optional[str] = None, user_name: Optional[str] = None, scopes: Optional[List[str]] = None) -> LinkUrl:
        """A link URL signed by the gateway, for the user to open (valid once, for a few minutes); ``scopes`` on top of the provider's own."""
        payload: Dict[str, Any] = {"userId": user_id, "provider": provider}
        if scopes:
            payload["scopes"] = list(scopes)
        if return_to is not None:
            payload["returnTo"] = return_to
        if user_name is not None:
            payload["userName"] = user_name
        body = self._json(self._call("POST", "/link-urls", payload))
        return LinkUrl(url=_text(body["url"]), expires_at=_text(body["expiresAt"]))

    def get_link(self, user_id: str, provider: str, verify: bool = False) -> Optional[Link]:
        """The link, or ``None`` when the user has not linked (a link needing reauth comes back with its status)."""
        try:
            return Link._from(self._json(self._call("GET", self._link_path(user_id, provider) + ("?verify=true" if verify else ""))))
        except NotLinked:
            return None

    def require_link(self, user_id: str, provider: str) -> Link:
        """The active link, or ``NotLinked`` / ``NeedsReauth`` carrying the URL to send the user."""
        link = Link._from(self._json(self._call("GET", self._link_path(user_id, provider))))
        if link.status == "needs_reauth":
            raise NeedsReauth("the user must link this account again", self.create_link_url(user_id, provider).url)
        return link

    def get_token(self, user_id: str, provider: str) -> Dict[str, Any]:
        """Fresh credentials (refreshed by the gateway when due): ``accessToken``, ``tokenType``, ``expiresAt`` and the provider's own fields."""
        return self._json(self._call("POST", self._link_path(user_id, provider) + "/token"))

    def wait_for_link(self, user_id: str, provider: str, timeout_seconds: int = 30, since: Union[datetime, str, None] = None) -> Optional[Link]:
        """The link the moment the user has one, ``None`` on timeout; ``LinkCancelled`` the moment they cancel."""
        query = {"timeoutSeconds": str(timeout_seconds)}
        if since is not None:
            query["since"] = since if isinstance(since, str) else since.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        status, body = self._call("GET", self._link_path(user_id, provider) + "/wait?" + urllib.parse.urlencode(query), extra_timeout=timeout_seconds)
        return None if status == 204 else Link._from(self._json((status, body)))

    def unlink(self, user_id: str, provider: str) -> bool:
        """Revokes upstream where the provider can and deletes the link; ``False`` when there was nothing to unlink."""
        try:
            self._call("DELETE", self._link_path(user_id, provider))
            return True
        except LinkgateError as error:
            if error.code == "not_linked":
                return False
            raise

    def list_links(self, user_id: str) -> List[Link]:
        body = self._json(self._call("GET", f"/users/{_segment(user_id)}/links"))
        return [Link._from(link) for link in body["links"]]

    # ── HTTP ───────────────────────────────────────────────────────────────

    @staticmethod
    def _link_path(user_id: str, provider: str) -> str:
        return f"/users/{_segment(user_id)}/links/{_segment(provider)}"

    def _call(self, method: str, path: str, payload: Optional[Dict[str, Any]] = None, extra_timeout: float = 0) -> "tuple[int, bytes]":
        headers = {"authorization": f"Bearer {self._api_key}", "accept": "application/json"}
        data = None
        if payload is not None:
            headers["content-type"] = "application/json"
            data = json.dumps(payload).encode()
        request = urllib.request.Request(self._base + "/api/v1" + path, data=data, headers=headers, method=method)
        timeout = self._timeout + extra_timeout
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as answer:
            raise self._error(answer.code, answer.read()) from None
        except (socket.timeout, TimeoutError) as error:
            raise LinkgateError(f"Linkgate did not answer within {timeout:g} s", "timeout") from error
        except (urllib.error.URLError, OSError) as error:
            if isinstance(getattr(error, "reason", None), (socket.timeout, TimeoutError)):
                raise LinkgateError(f"Linkgate did not answer within {timeout:g} s", "timeout") from error
            raise LinkgateError("Linkgate could not be reached", "network_error") from error

    @staticmethod
    def _error(status: int, raw: bytes) -> LinkgateError:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else "bad_response"
        message = error.get("message") if isinstance(error, dict) and isinstance(error.get("message"), str) else f"Linkgate answered {status}"
        link_url = body.get("linkUrl") if isinstance(body, dict) else None
        # Unlinking someone who is not linked answers not_linked without a URL: that stays a plain LinkgateError.
        if isinstance(link_url, str):
            if code == "not_linked":
                return NotLinked(message, link_url)
            if code == "needs_reauth":
                return NeedsReauth(message, link_url)
        if code == "provider_unconfigured":
            return ProviderUnconfigured(message)
        if code == "link_cancelled":
            return LinkCancelled(message)
        return LinkgateError(message, code, status)

    @staticmethod
    def _json(answer: "tuple[int, bytes]") -> Any:
        status, raw = answer
        try:
            return json.loads(raw)
        except ValueError as error:
            raise LinkgateError("Linkgate answered with something that is not JSON", "bad_response", status) from error
