/**
 * The RPC surface: its services and the gate in front of them, served by the
 * Connect node adapter on the gateway's own port (src/http/listener.ts), so
 * gRPC, gRPC-Web and Connect reach it over HTTP/1.1 and HTTP/2 alike, and
 * every other request goes on to the Hono app.
 * LinkService and LoginService share the gate: the same key check, rate
 * limits, log line and metrics.
 */
import { createContextValues, type ConnectRouter, type Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter, type ConnectNodeAdapterOptions } from '@connectrpc/connect-node';
import type { RequestHandler } from '../http/listener.ts';
import { peerKey, rpcGate, type GateDeps } from './gate.ts';
import { LinkService } from './gen/linkgate/v1/links_pb.ts';
import { LoginService } from './gen/linkgate/v1/login_pb.ts';
import { linkService, type LinkServiceDeps } from './link-service.ts';
import { loginService, type LoginServiceDeps } from './login-service.ts';

type NodeHandlerFn = NonNullable<ConnectNodeAdapterOptions['fallback']>;

/** A request message may be as large as a REST API body. */
const READ_MAX_BYTES = 64 * 1024;

export interface Rpc {
  routes: (router: ConnectRouter) => void;
  gate: Interceptor;
}

/** What the services and their gate are made from (src/app.tsx assembles it; nothing here is loaded until the first RPC request). */
export type RpcDeps = LinkServiceDeps &
  GateDeps & {
    login: Omit<LoginServiceDeps, 'now' | 'stopping' | 'heartbeatMs' | 'providers'>;
    /** On every RPC answer, as on every REST one (`answerHeaders`): no-store, nosniff, HSTS over https. */
    answerHeaders?: Readonly<Record<string, string>>;
  };

export function createRpc(deps: RpcDeps): Rpc {
  return {
    routes: (router) => {
      router.service(LinkService, linkService(deps));
      router.service(LoginService, loginService({ ...deps.login, providers: deps.providers, now: deps.now, stopping: deps.stopping, ...(deps.heartbeatMs ? { heartbeatMs: deps.heartbeatMs } : {}) }));
    },
    gate: rpcGate(deps),
  };
}

/**
 * A request listener for `node:http` and `node:http2` alike: the RPC
 * procedures (`POST /linkgate.v1.LinkService/GetLink`, `/linkgate.v1.LoginService/…`), and `fallback`
 * (the Hono app's listener) for everything else.
 */
export function rpcRequestHandler(rpc: Rpc, fallback: RequestHandler): RequestHandler {
  return connectNodeAdapter({
    routes: rpc.routes,
    interceptors: [rpc.gate],
    // The same Node request and response objects; Connect's type only narrows `write`'s callback.
    fallback: fallback as NodeHandlerFn,
    readMaxBytes: READ_MAX_BYTES,
    contextValues: (request) => createContextValues().set(peerKey, request.socket?.remoteAddress),
  });
}
