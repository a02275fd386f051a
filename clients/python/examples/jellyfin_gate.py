"""Gate an agent's tools on a linked account, as a Jellyfin registry's agent does.

``@requires_link(linkgate, "jellyfin")`` runs the tool only for a chat user
who has linked the provider, handing it the link; anyone else gets the
message to send, with their link URL. ``login`` is the ``/login jellyfin``
command: it hands out a link URL and, if asked, waits for the user to finish.

    linkgate = LinkgateClient(os.environ["LINKGATE_URL"], os.environ["LINKGATE_API_KEY"])

    @requires_link(linkgate, "jellyfin")
    def recently_watched(discord_id, link):
        token = linkgate.get_token(discord_id, "jellyfin")
        ...  # call the user's Jellyfin server (token["serverUrl"]) with token["accessToken"]
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Optional, TypeVar, Union

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from linkgate import Link, LinkCancelled, LinkgateClient, NeedsReauth, NotLinked  # noqa: E402

T = TypeVar("T")


def requires_link(linkgate: LinkgateClient, provider: str) -> Callable[[Callable[..., T]], Callable[..., Union[T, str]]]:
    """Runs the tool with ``link=`` for a linked user; otherwise answers the sentence to send them."""

    def decorate(tool: Callable[..., T]) -> Callable[..., Union[T, str]]:
        @functools.wraps(tool)
        def gated(user_id: str, *args: Any, **kwargs: Any) -> Union[T, str]:
            try:
                link = linkgate.require_link(user_id, provider)
            except NotLinked as missing:
                return f"Please link your {provider} account first: {missing.link_url}"
            except NeedsReauth as stale:
                return f"Your {provider} link stopped working; please link it again: {stale.link_url}"
            return tool(user_id, *args, link=link, **kwargs)

        return gated

    return decorate


def login(linkgate: LinkgateClient, user_id: str, provider: str, wait_seconds: int = 0) -> Union[str, Link]:
    """``/login <provider>``: the link URL to send, or, when waiting, the link once made (or what happened instead)."""
    existing: Optional[Link] = linkgate.get_link(user_id, provider)
    if existing is not None and existing.status == "active":
        return existing
    url = linkgate.create_link_url(user_id, provider).url
    if wait_seconds <= 0:
        return f"Open this link to connect your {provider} account: {url}"
    try:
        made = linkgate.wait_for_link(user_id, provider, timeout_seconds=wait_seconds)
    except LinkCancelled:
        return "Linking was cancelled."
    return made if made is not None else f"Still waiting; the link works for a few minutes: {url}"
