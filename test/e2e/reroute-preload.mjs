// Loaded with `node --import` into a real `npm start` by test/e2e/quickstart.test.ts:
// requests the gateway makes to a provider's real origins go to local fakes
// instead (LINKGATE_TEST_REROUTE = {"https://anilist.co": "http://127.0.0.1:…"}).
// The gateway's code is unchanged; only the network beneath it is the test's.
const map = JSON.parse(process.env.LINKGATE_TEST_REROUTE ?? '{}');
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const base = map[url.origin];
  if (!base) return realFetch(input, init);
  const target = new URL(base.replace(/\/$/, '') + (url.pathname === '/' ? '' : url.pathname) + url.search);
  return input instanceof Request ? realFetch(new Request(target, input), init) : realFetch(target, init);
};
