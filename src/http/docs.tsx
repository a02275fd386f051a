/** @jsxImportSource hono/jsx */
import type { Handler } from 'hono';
import { raw } from 'hono/html';
import type { JsonSchema } from '@valibot/to-json-schema';
import { EXAMPLES, type Example } from './examples.ts';
import type { AppEnv } from './middleware.ts';
import { authOf, openApiDocument, openApiPath, operations, type Operation } from './openapi.ts';

/**
 * `GET /docs`: the API as a page a person reads, on a phone too: grouped by
 * what a bot author (then an operator, then an app's author) wants to do, a
 * table of contents, and for each route its parameters in words, an example
 * curl line and its answer, and what each status means. The schemas
 * themselves are in `/openapi.json`.
 */

const STYLE = `
  :root { color-scheme: light; }
  * { box-sizing: border-box; }
  body { font: 1rem/1.55 system-ui, sans-serif; margin: 0; color: #1d232b; background: #f6f7f9; }
  main { max-width: 52rem; margin: 0 auto; padding: 1rem; }
  h1 { font-size: 1.6rem; margin: .5rem 0 1rem; }
  h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; }
  h3 { font-size: 1.05rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
  h4 { font-size: .95rem; margin: 1rem 0 .25rem; }
  article { background: #fff; border: 1px solid #d5dae0; border-radius: .5rem; padding: 1rem; margin: 1rem 0; }
  .method { display: inline-block; font: 700 .85rem ui-monospace, monospace; padding: .1rem .4rem; border-radius: .25rem; margin-right: .35rem; color: #fff; }
  .get { background: #0b6b3a; } .post { background: #1a56b8; } .delete { background: #a4262c; } .put { background: #6b3fa0; } .patch { background: #8a4b00; }
  code, pre { font-family: ui-monospace, monospace; font-size: .875rem; }
  code { overflow-wrap: anywhere; }
  pre { background: #eef1f4; padding: .6rem .75rem; border-radius: .4rem; white-space: pre-wrap; overflow-wrap: anywhere; margin: .25rem 0; }
  dl { margin: .25rem 0; } dt { font-weight: 600; margin-top: .4rem; } dd { margin: 0 0 0 1rem; }
  ul { padding-left: 1.25rem; } li { margin: .15rem 0; }
  nav ol { padding-left: 1.25rem; } nav ul { margin: .1rem 0 .4rem; }
  a { color: #1a4fa8; }
  .muted { color: #4a5360; }
`;

interface Task {
  id: string;
  title: string;
  blurb: string;
  routes: string[];
}

/** The routes by what a bot author is doing, in the order they meet them. */
const TASKS: Task[] = [
  {
    id: 'link',
    title: 'Send a user a link',
    blurb: 'Make a link URL for a user, send it to them, and wait until they have linked (or cancelled).',
    routes: ['post /api/v1/link-urls', 'get /api/v1/users/:userId/links/:provider/wait'],
  },
  {
    id: 'check',
    title: 'Check a link',
    blurb: 'Is this user linked, and with which account? A not-linked answer carries a fresh link URL. A link’s event log says what happened to it and how often its token was served.',
    routes: ['get /api/v1/users/:userId/links/:provider', 'get /api/v1/users/:userId/links', 'get /api/v1/users/:userId/links/:provider/events'],
  },
  {
    id: 'use',
    title: 'Act with a link',
    blurb: 'Get a fresh access token (refreshed for you when due), or have the gateway call the provider’s API for you (the calls the operator allows), or the user’s ATProto server.',
    routes: [
      'post /api/v1/users/:userId/links/:provider/token',
      ...['get', 'post', 'put', 'patch', 'delete'].map((method) => `${method} /api/v1/users/:userId/links/:provider/proxy/*`),
      'get /api/v1/users/:userId/links/:provider/xrpc/:nsid',
      'post /api/v1/users/:userId/links/:provider/xrpc/:nsid',
    ],
  },
  { id: 'unlink', title: 'Unlink', blurb: 'Delete a link, revoking its credentials at the provider where it can.', routes: ['delete /api/v1/users/:userId/links/:provider'] },
  { id: 'import', title: 'Bring links in', blurb: 'Import links made elsewhere (another service, an export of this one), each line answered on its own.', routes: ['post /api/v1/links:import'] },
  {
    id: 'webhooks',
    title: 'Webhooks',
    blurb: 'With LINKGATE_WEBHOOK_URL set, every link change is POSTed to it, signed; these routes show and resend deliveries.',
    routes: ['get /api/v1/webhooks/deliveries', 'post /api/v1/webhooks/deliveries/:id/retry'],
  },
  { id: 'gateway', title: 'The gateway', blurb: 'What can be linked here, and health checks for load balancers.', routes: ['get /api/v1/providers', 'get /healthz', 'get /readyz'] },
  {
    id: 'tenants',
    title: 'Operator: tenants',
    blurb: 'The operator API (Authorization: Bearer <one of LINKGATE_ADMIN_KEYS>; without them every route answers 404). A tenant is one bot or app, with its own keys, providers and users; default is the environment’s.',
    routes: ['post /api/admin/v1/tenants', 'get /api/admin/v1/tenants', 'get /api/admin/v1/tenants/:tenant', 'patch /api/admin/v1/tenants/:tenant', 'delete /api/admin/v1/tenants/:tenant'],
  },
  {
    id: 'tenant-keys',
    title: 'Operator: keys and secrets',
    blurb: 'A tenant’s bot API keys and the secrets its bots sign link contexts with; each is shown once, in the answer that creates it.',
    routes: ['post /api/admin/v1/tenants/:tenant/api-keys', 'get /api/admin/v1/tenants/:tenant/api-keys', 'delete /api/admin/v1/tenants/:tenant/api-keys/:id', 'post /api/admin/v1/tenants/:tenant/context-secrets', 'get /api/admin/v1/tenants/:tenant/context-secrets', 'delete /api/admin/v1/tenants/:tenant/context-secrets/:id'],
  },
  {
    id: 'tenant-providers',
    title: 'Operator: providers and webhook',
    blurb: 'A tenant’s own provider apps (the variables a single-tenant deployment reads from its environment) and where its link events go.',
    routes: ['get /api/admin/v1/tenants/:tenant/providers', 'put /api/admin/v1/tenants/:tenant/providers/:provider', 'delete /api/admin/v1/tenants/:tenant/providers/:provider', 'put /api/admin/v1/tenants/:tenant/webhook', 'delete /api/admin/v1/tenants/:tenant/webhook'],
  },
  {
    id: 'tenant-apps',
    title: 'Operator: sign-in apps and keys',
    blurb: 'The apps people sign in to through the tenant’s OpenID Provider (and the web-session API), and the keys its tokens are signed with.',
    routes: ['post /api/admin/v1/tenants/:tenant/apps', 'get /api/admin/v1/tenants/:tenant/apps', 'delete /api/admin/v1/tenants/:tenant/apps/:clientId', 'get /api/admin/v1/tenants/:tenant/signing-keys', 'post /api/admin/v1/tenants/:tenant/signing-keys'],
  },
  {
    id: 'tenant-links',
    title: 'Operator: links, and the audit trail',
    blurb: 'One user’s link deleted, a tenant’s links as JSON lines out and back in (sealed with a passphrase), and every change made through this API, the console and the command line.',
    routes: ['delete /api/admin/v1/tenants/:tenant/users/:userId/links/:provider', 'post /api/admin/v1/tenants/:tenant/links:import', 'get /api/admin/v1/tenants/:tenant/links:export', 'get /api/admin/v1/audit', 'get /api/admin/v1/audit.csv'],
  },
  {
    id: 'console-invites',
    title: 'Operator: invites to the admin console',
    blurb: 'One-time links that make their first user an owner of the admin console, as `linkgate admin invite` prints them; only while LINKGATE_ADMINS names someone.',
    routes: ['post /api/admin/v1/console/invites', 'get /api/admin/v1/console/invites', 'delete /api/admin/v1/console/invites/:id'],
  },
  {
    id: 'sign-in',
    title: 'Sign people in to a same-site app',
    blurb: 'The web-session API, for an app behind the same reverse proxy as the gateway: a sign-in with one of the tenant’s providers that ends in a cookie session (see also the OpenID Provider at /.well-known/openid-configuration).',
    routes: ['get /api/auth/:provider/start', 'get /api/auth/session', 'post /api/auth/logout'],
  },
];

/** Where a parameter goes, in words. */
const WHERE = { path: 'in the path', query: 'in the query', header: 'a request header' } as const;

/** Who may call, in words, after each route's description. */
const NEEDS = { bot: '', operator: 'Needs an operator key.', session: 'Needs the session cookie.', public: 'No API key needed.' } as const;

const keyOf = (op: Operation) => `${op.method} ${op.path}`;
const anchorOf = (op: Operation) => `${op.method}-${op.path.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '')}`;

/** A parameter in words: whether it is needed, what it takes, its default. */
function parameterText(required: boolean, schema: JsonSchema & { description?: string; enum?: unknown[]; default?: unknown; pattern?: string }): string {
  const parts = [required ? 'required' : 'optional'];
  if (schema.description) parts.push(schema.description);
  else if (schema.enum) parts.push(`one of ${schema.enum.map((value) => String(value)).join(', ')}`);
  if (schema.default !== undefined) parts.push(`default ${String(schema.default)}`);
  return parts.join('; ');
}

/** How each kind of caller shows who it is, as a curl option. */
const CREDENTIALS = {
  bot: ' -H "Authorization: Bearer $LINKGATE_API_KEY"',
  operator: ' -H "Authorization: Bearer $LINKGATE_ADMIN_KEY"',
  session: ' -b "linkgate_session=$SESSION"',
  public: '',
} as const;

/** Text for inside a single-quoted shell word: a quote closes it, is escaped, and reopens it. */
const shellQuoted = (text: string) => text.replaceAll("'", "'\\''");

function curlOf(op: Operation, example: Example, base: string): string {
  const lines = [`curl${op.method === 'get' ? '' : ` -X ${op.method.toUpperCase()}`}${CREDENTIALS[authOf(op)]}`];
  for (const [name, value] of Object.entries(example.requestHeaders ?? {})) lines.push(`-H '${name}: ${shellQuoted(value)}'`);
  if (example.body !== undefined) {
    lines.push(`-H 'content-type: ${op.bodyType ?? 'application/json'}' -d '${shellQuoted(JSON.stringify(example.body))}'`);
  }
  lines.push(`'${base}${example.path}'`);
  return lines.join(' \\\n  ');
}

function OperationArticle(props: { op: Operation; doc: ReturnType<typeof openApiDocument>; base: string }) {
  const { op } = props;
  const described = (props.doc.paths[openApiPath(op.path)] as Record<string, { parameters: Array<{ name: string; in: string; required: boolean; schema: JsonSchema }> }>)[op.method]!;
  const example = EXAMPLES[keyOf(op)];
  return (
    <article id={anchorOf(op)}>
      <h3>
        <span class={`method ${op.method}`}>{op.method.toUpperCase()}</span>
        <code>{op.path}</code>
      </h3>
      <p>
        <strong>{op.summary}.</strong> {op.description ?? ''} {NEEDS[authOf(op)]}
      </p>
      {described.parameters.length > 0 ? (
        <>
          <h4>Parameters</h4>
          <dl>
            {described.parameters.map((p) => (
              <>
                <dt>
                  <code>{p.name}</code> <span class="muted">({WHERE[p.in as keyof typeof WHERE]})</span>
                </dt>
                <dd>{parameterText(p.required, p.schema)}</dd>
              </>
            ))}
          </dl>
        </>
      ) : null}
      {example ? (
        <>
          <h4>Example</h4>
          <pre>
            <code>{curlOf(op, example, props.base)}</code>
          </pre>
          <p class="muted">
            Answers {example.status}
            {example.headers ? `, with ${Object.entries(example.headers).map(([name, value]) => `${name}: ${value}`).join(', ')}` : ''}
            {example.answer === undefined ? ' and no body.' : ':'}
          </p>
          {example.answer === undefined ? null : (
            <pre>
              <code>{typeof example.answer === 'string' ? example.answer : JSON.stringify(example.answer, null, 2)}</code>
            </pre>
          )}
        </>
      ) : null}
      <h4>Answers</h4>
      <ul>
        {Object.entries(op.responses).map(([status, response]) => (
          <li>
            <strong>{status}</strong>: {response.description}
          </li>
        ))}
      </ul>
    </article>
  );
}

/** `GET /openapi.json` and `GET /docs`: the API described, from the schemas the routes use. */
/** `/openapi.json` and `/docs`, as handlers of the app's own routes (src/app.tsx loads this module on their first request). */
export function docsHandlers(publicBaseUrl: URL): { openapi: Handler<AppEnv>; docs: Handler<AppEnv> } {
  const base = publicBaseUrl.href.replace(/\/$/, '');
  const document = openApiDocument(base);
  const byKey = new Map(operations.map((op) => [keyOf(op), op]));
  const openapi: Handler<AppEnv> = (c) => c.json(document);
  const docs: Handler<AppEnv> = (c) => {
    const nonce = c.get('secureHeadersNonce') ?? '';
    return c.html(
      '<!doctype html>' +
        (
          <html lang="en">
            <head>
              <meta charset="utf-8" />
              <meta name="viewport" content="width=device-width, initial-scale=1" />
              <title>Linkgate API reference</title>
              <link rel="icon" href="/favicon.svg" />
              <style nonce={nonce}>{raw(STYLE)}</style>
            </head>
            <body>
              <main>
                <h1>Linkgate API reference</h1>
                <p>
                  Every <code>/api/v1</code> route needs <code>Authorization: Bearer &lt;one of LINKGATE_API_KEYS&gt;</code> (or a key the operator made for a tenant);
                  every <code>/api/admin/v1</code> route an operator key, <code>Authorization: Bearer &lt;one of LINKGATE_ADMIN_KEYS&gt;</code>; the{' '}
                  <code>/api/auth</code> routes are called by browsers, with the session cookie. Errors are <code>{'{ "error": { "code", "message" } }'}</code> with a
                  stable <code>code</code>. The same API as OpenAPI 3.1, with every schema: <a href="/openapi.json">/openapi.json</a>.
                </p>
                <nav aria-label="Contents">
                  <h2>Contents</h2>
                  <ol>
                    {TASKS.map((task) => (
                      <li>
                        <a href={`#${task.id}`}>{task.title}</a>
                        <ul>
                          {task.routes.map((key) => {
                            const op = byKey.get(key)!;
                            return (
                              <li>
                                <a href={`#${anchorOf(op)}`}>
                                  {op.summary} <span class="muted">({op.method.toUpperCase()})</span>
                                </a>
                              </li>
                            );
                          })}
                        </ul>
                      </li>
                    ))}
                  </ol>
                </nav>
                {TASKS.map((task) => (
                  <section id={task.id} aria-labelledby={`${task.id}-title`}>
                    <h2 id={`${task.id}-title`}>{task.title}</h2>
                    <p>{task.blurb}</p>
                    {task.routes.map((key) => (
                      <OperationArticle op={byKey.get(key)!} doc={document} base={base} />
                    ))}
                  </section>
                ))}
              </main>
            </body>
          </html>
        ).toString(),
    );
  };
  return { openapi, docs };
}

/** Every route `/docs` shows, to check none is missing from its groups. */
export const DOCUMENTED_ROUTES = TASKS.flatMap((task) => task.routes);
