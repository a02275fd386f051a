"""The Python client against a real running gateway.

test/clients/python.test.ts starts the gateway (with the `pin` test
provider), links LINKGATE_TEST_LINKED for it, and runs these with
LINKGATE_URL and LINKGATE_API_KEY set. Run by hand the same way:

    LINKGATE_URL=http://127.0.0.1:8000 LINKGATE_API_KEY=… LINKGATE_TEST_LINKED=… LINKGATE_TEST_UNLINK=… LINKGATE_TEST_REAUTH_URL=… LINKGATE_TEST_REAUTH=… python3 -m unittest test_linkgate

LINKGATE_TEST_REAUTH_URL is a gateway with the `token` test provider
(test/fixtures/api-providers) where LINKGATE_TEST_REAUTH's link needs the
user again.
"""

import os
import sys
import unittest
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from linkgate import LinkgateClient, LinkgateError, NeedsReauth, NotLinked  # noqa: E402
from examples.jellyfin_gate import login, requires_link  # noqa: E402

URL = os.environ["LINKGATE_URL"]
KEY = os.environ["LINKGATE_API_KEY"]
LINKED = os.environ["LINKGATE_TEST_LINKED"]
# Where link URLs point: the gateway's PUBLIC_BASE_URL (the test gateway's differs from where it listens).
PUBLIC_URL = os.environ.get("LINKGATE_PUBLIC_URL", URL)
PROVIDER = "pin"


class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.linkgate = LinkgateClient(URL, KEY, timeout=5)

    def test_lists_providers(self) -> None:
        providers = {p.id: p for p in self.linkgate.list_providers()}
        self.assertTrue(providers[PROVIDER].configured)
        self.assertEqual(providers[PROVIDER].display_name, "Pin")

    def test_reads_a_link(self) -> None:
        link = self.linkgate.get_link(LINKED, PROVIDER)
        self.assertIsNotNone(link)
        self.assertEqual(link.user_id, LINKED)
        self.assertEqual(link.external_id, LINKED)
        self.assertEqual(link.status, "active")
        self.assertEqual(self.linkgate.require_link(LINKED, PROVIDER), link)
        self.assertEqual([l.provider for l in self.linkgate.list_links(LINKED)], [PROVIDER])

    def test_not_linked_carries_the_link_url(self) -> None:
        self.assertIsNone(self.linkgate.get_link("py-nobody", PROVIDER))
        with self.assertRaises(NotLinked) as raised:
            self.linkgate.require_link("py-nobody", PROVIDER)
        url = urlparse(raised.exception.link_url)
        self.assertEqual(url.path, f"/oauth/{PROVIDER}/start")
        self.assertIn("context", parse_qs(url.query))
        self.assertEqual(raised.exception.code, "not_linked")
        self.assertEqual(raised.exception.status, 404)

    def test_needs_reauth_carries_the_link_url(self) -> None:
        # A gateway where LINKGATE_TEST_REAUTH's `token` link needs the user again (revoked at the provider).
        reauth = LinkgateClient(os.environ["LINKGATE_TEST_REAUTH_URL"], KEY, timeout=5)
        user = os.environ["LINKGATE_TEST_REAUTH"]
        self.assertEqual(reauth.get_link(user, "token").status, "needs_reauth")
        # From the link's status, and from the gateway's 409 when asked for a token: the same error, with a link URL.
        for call in (reauth.require_link, reauth.get_token):
            with self.assertRaises(NeedsReauth) as raised:
                call(user, "token")
            self.assertIsInstance(raised.exception, LinkgateError)
            self.assertEqual((raised.exception.code, raised.exception.status), ("needs_reauth", 409))
            url = urlparse(raised.exception.link_url)
            self.assertEqual(url.path, "/oauth/token/start")
            self.assertIn("context", parse_qs(url.query))

    def test_creates_a_link_url(self) -> None:
        made = self.linkgate.create_link_url("py-new", PROVIDER, user_name="Ada")
        self.assertTrue(made.url.startswith(PUBLIC_URL + f"/oauth/{PROVIDER}/start?context="), made.url)
        self.assertRegex(made.expires_at, r"^\d{4}-\d\d-\d\dT")

    def test_gets_a_token(self) -> None:
        token = self.linkgate.get_token(LINKED, PROVIDER)
        self.assertEqual(token["accessToken"], "pin-access-token")
        self.assertNotIn("refreshToken", token)

    def test_wait_answers_at_once_when_linked_and_none_on_timeout(self) -> None:
        self.assertEqual(self.linkgate.wait_for_link(LINKED, PROVIDER, timeout_seconds=5).user_id, LINKED)
        self.assertIsNone(self.linkgate.wait_for_link("py-waiting", PROVIDER, timeout_seconds=1))

    def test_refuses_bad_input_and_keys_with_the_gateways_codes(self) -> None:
        with self.assertRaises(LinkgateError) as bad:
            self.linkgate.get_link("not/a user", PROVIDER)
        self.assertEqual((bad.exception.code, bad.exception.status), ("bad_request", 400))
        with self.assertRaises(LinkgateError) as unknown:
            self.linkgate.get_link(LINKED, "nope")
        self.assertEqual(unknown.exception.code, "unknown_provider")
        with self.assertRaises(LinkgateError) as refused:
            LinkgateClient(URL, "wrong-key-0123456789abcdefghijklmnopqrstuvwxyz").list_providers()
        self.assertEqual((refused.exception.code, refused.exception.status), ("unauthorized", 401))
        with self.assertRaises(LinkgateError) as unreachable:
            LinkgateClient("http://127.0.0.1:9", KEY, timeout=2).list_providers()
        self.assertEqual(unreachable.exception.code, "network_error")

    def test_gate_runs_the_tool_for_a_linked_user_and_answers_the_link_url_otherwise(self) -> None:
        @requires_link(self.linkgate, PROVIDER)
        def whoami(user_id, link):
            return f"{user_id} is {link.external_name}"

        self.assertEqual(whoami(LINKED), f"{LINKED} is {LINKED}")
        answer = whoami("py-stranger")
        self.assertTrue(answer.startswith(f"Please link your {PROVIDER} account first: {PUBLIC_URL}/oauth/{PROVIDER}/start?context="), answer)
        self.assertTrue(login(self.linkgate, "py-stranger", PROVIDER).startswith("Open this link"))
        self.assertEqual(login(self.linkgate, LINKED, PROVIDER).user_id, LINKED)

    def test_unlinks_last(self) -> None:
        # Its own user: the other tests keep theirs.
        self.assertTrue(self.linkgate.unlink(os.environ["LINKGATE_TEST_UNLINK"], PROVIDER))
        self.assertFalse(self.linkgate.unlink(os.environ["LINKGATE_TEST_UNLINK"], PROVIDER))


if __name__ == "__main__":
    unittest.main()
