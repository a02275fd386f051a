/**
 * A browser for `app.request()`: it keeps cookies (name=value, as a browser
 * sends them back) and lets a test follow or inspect redirects by hand.
 */
export class TestBrowser {
  readonly cookies = new Map<string, string>();

  constructor(private readonly request: (path: string, init?: RequestInit) => Response | Promise<Response>) {}

  async get(url: string | URL): Promise<Response> {
    return this.send(url, { method: 'GET' });
  }

  async post(url: string | URL, form: Record<string, string>): Promise<Response> {
    return this.send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  private async send(url: string | URL, init: RequestInit): Promise<Response> {
    const target = new URL(url, 'http://127.0.0.1:8000');
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const response = await this.request(target.pathname + target.search, { ...init, headers });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      this.cookies.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
    }
    return response;
  }
}
