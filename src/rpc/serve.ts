/**
 * The port's request handler: the RPC procedures (`/linkgate.v1.<Service>/<Method>`)
 * go to the Connect adapter of src/rpc/routes.ts, everything else straight to
 * the Hono app. The adapter, its services and the libraries under them
 * (Connect, protobuf: about 25 MB resident) are loaded by the first RPC
 * request, so a gateway that only ever serves REST and pages never carries them.
 */
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { RequestHandler } from '../http/listener.ts';
import type { RpcDeps } from './routes.ts';

/** Every procedure's path starts so (the proto package); no REST route or page does. */
const RPC_PREFIX = '/linkgate.v1.';

export function serveRpc(deps: RpcDeps, fallback: RequestHandler): RequestHandler {
  let connect: Promise<RequestHandler> | undefined;
  const headers = Object.entries(deps.answerHeaders ?? {});
  return (request, response) => {
    if (!request.url?.startsWith(RPC_PREFIX)) return fallback(request, response);
    // The REST answers' headers (no-store: GetToken answers hold access tokens); Connect writes its own beside them.
    for (const [name, value] of headers) (response as ServerResponse).setHeader(name, value);
    connect ??= import('./routes.ts').then(({ createRpc, rpcRequestHandler }) => rpcRequestHandler(createRpc(deps), fallback));
    connect.then(
      (handle) => handle(request, response),
      (error: unknown) => {
        // Tried again by the next RPC request; this one gets gRPC's "unavailable" as plain HTTP.
        connect = undefined;
        deps.logger.error({ cause: error instanceof Error ? { name: error.name, message: error.message } : String(error) }, 'the RPC services could not be loaded');
        unavailable(response);
      },
    );
  };
}

function unavailable(response: ServerResponse | Http2ServerResponse): void {
  // Both kinds of response answer these calls alike; their unions of overloads do not type-check as one.
  const plain = response as ServerResponse;
  if (!plain.headersSent) plain.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  plain.end('the RPC services are not available right now\n');
}
