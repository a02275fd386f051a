/** @jsxImportSource hono/jsx */
import { Hono } from 'hono';
import { raw } from 'hono/html';
import type { AppEnv } from './middleware.ts';
import { openApiDocument, operations, type Operation } from './openapi.ts';

const STYLE = `
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d232b; background: #fafafa; }
  main { max-width: 60rem; margin: 0 auto; padding: 1.5rem; }
  section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
  h2 { font-size: 1.05rem; margin: 0 0 .25rem; font-family: ui-monospace, monospace; }
  .method { display: inline-block; min-width: 4.2rem; font-weight: 700; }
  .get { color: #0b6b3a; } .post { color: #1a56b8; } .delete { color: #a4262c; }
  table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
  td, th { text-align: left; padding: .25rem .5rem; border-top: 1px solid #eef0f2; vertical-align: top; }
  pre { background: #f3f5f7; padding: .5rem .75rem; border-radius: 6px; overflow-x: auto; font-size: 13px; }
  details summary { cursor: pointer; color: #4a5360; }
`;

function OperationSection(props: { op: Operation; doc: ReturnType<typeof openApiDocument> }) {
  const { op } = props;
  const openApiPath = op.path.replace(/:([A-Za-z]+)/g, '{$1}');
  const described = (props.doc.paths[openApiPath] as Record<string, { parameters: Array<{ name: string; in: string; required: boolean; schema: unknown }>; requestBody?: { content: Record<string, { schema: unknown }> }; responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }> }>)[op.method]!;
  return (
    <section id={`${op.method}-${op.path}`}>
      <h2>
        <span class={`method ${op.method}`}>{op.method.toUpperCase()}</span> {op.path}
      </h2>
      <p>
        <strong>{op.summary}.</strong> {op.description ?? ''} {op.public ? '(No API key needed.)' : ''}
      </p>
      {described.parameters.length > 0 ? (
        <table>
          <tr>
            <th>parameter</th>
            <th>in</th>
            <th>schema</th>
          </tr>
          {described.parameters.map((p) => (
            <tr>
              <td>
                <code>{p.name}</code>
                {p.required ? '' : ' (optional)'}
              </td>
              <td>{p.in}</td>
              <td>
                <code>{JSON.stringify(p.schema)}</code>
              </td>
            </tr>
          ))}
        </table>
      ) : null}
      {described.requestBody ? (
        <details>
          <summary>JSON body</summary>
          <pre>{JSON.stringify(described.requestBody.content['application/json']!.schema, null, 2)}</pre>
        </details>
      ) : null}
      <table>
        <tr>
          <th>status</th>
          <th>answer</th>
        </tr>
        {Object.entries(described.responses).map(([status, response]) => (
          <tr>
            <td>{status}</td>
            <td>
              {response.description}
              {response.content ? (
                <details>
                  <summary>schema</summary>
                  <pre>{JSON.stringify(response.content['application/json']!.schema, null, 2)}</pre>
                </details>
              ) : null}
            </td>
          </tr>
        ))}
      </table>
    </section>
  );
}

/** `GET /openapi.json` and `GET /docs`: the API described, from the schemas the routes use. */
export function docsRoutes(publicBaseUrl: URL) {
  const app = new Hono<AppEnv>();
  const document = openApiDocument(publicBaseUrl.href.replace(/\/$/, ''));
  app.get('/openapi.json', (c) => c.json(document));
  app.get('/docs', (c) => {
    const nonce = c.get('secureHeadersNonce') ?? '';
    return c.html(
      '<!doctype html>' +
        (
          <html lang="en">
            <head>
              <meta charset="utf-8" />
              <meta name="viewport" content="width=device-width, initial-scale=1" />
              <title>Linkgate API reference</title>
              <style nonce={nonce}>{raw(STYLE)}</style>
            </head>
            <body>
              <main>
                <h1>Linkgate API reference</h1>
                <p>
                  Every <code>/api/v1</code> route needs <code>Authorization: Bearer &lt;one of LINKGATE_API_KEYS&gt;</code>. Errors are{' '}
                  <code>{'{ "error": { "code", "message" } }'}</code>. The same description as OpenAPI 3.1: <a href="/openapi.json">/openapi.json</a>.
                </p>
                {operations.map((op) => (
                  <OperationSection op={op} doc={document} />
                ))}
              </main>
            </body>
          </html>
        ).toString(),
    );
  });
  return app;
}
