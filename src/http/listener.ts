/**
 * One cleartext port for HTTP/1.1 and HTTP/2 (prior knowledge, "h2c"): the
 * REST API and pages, and the RPC services over gRPC, gRPC-Web and Connect.
 *
 * `http2.createServer({ allowHTTP1: true })` cannot do this: it tells the two
 * apart by TLS ALPN, and without TLS it answers HTTP/1.1 with nothing. So the
 * listening server is a plain `node:http` server (its limits, connection
 * tracking and `close()` are what the process already relies on) whose
 * connections are sniffed first: one that opens with the HTTP/2 connection
 * preface (RFC 9113 §3.4, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) goes to a
 * `node:http2` server, every other one to the HTTP/1.1 server as usual.
 * Behind TLS the proxy in front terminates it, and speaks one or the other.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session, type Settings } from 'node:http2';
import type { Socket } from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type RequestHandler = (request: IncomingMessage | Http2ServerRequest, response: ServerResponse | Http2ServerResponse) => void;

export interface ListenerOptions {
  /** Answers every request, HTTP/1.1 and HTTP/2 alike. */
  handler: RequestHandler;
  /** The HTTP/1.1 server's limits (headersTimeout, requestTimeout, maxHeaderSize, …). */
  http1: ServerOptions;
  /** How long a new connection has to send its first bytes: the HTTP/1.1 `headersTimeout` then starts. */
  firstBytesTimeoutMs: number;
  /** HTTP/2 settings sent to clients (header list size, concurrent streams). */
  http2Settings: Settings;
  /** An HTTP/2 connection with no stream and no frame for this long is closed (GOAWAY). */
  http2IdleTimeoutMs: number;
}

export interface Listener {
  /** The listening server: `listen`, `close` and its errors as for any `node:http` server. */
  server: Server;
  /**
   * For shutdown: closes HTTP/1.1 connections between requests and those
   * that have sent nothing yet, and sends every HTTP/2 connection a GOAWAY
   * (no new streams; open ones finish, then it closes). Safe to repeat.
   */
  closeIdle(): void;
  /** Cuts every connection, requests and streams in flight included. */
  closeAll(): void;
  /** Open HTTP/2 connections. */
  http2Connections(): number;
}

/** Whether `head` (the first bytes of a connection) is, or may still become, the HTTP/2 preface. */
function prefaceSoFar(head: Buffer): 'yes' | 'no' | 'more' {
  const length = Math.min(head.length, PREFACE.length);
  if (head.subarray(0, length).compare(PREFACE, 0, length) !== 0) return 'no';
  return length === PREFACE.length ? 'yes' : 'more';
}

export function createListener(options: ListenerOptions): Listener {
  const http1 = createHttpServer(options.http1, options.handler);
  const http2 = createHttp2Server({ settings: options.http2Settings }, options.handler);
  const sessions = new Set<Http2Session>();
  /** Connections whose first bytes have not come yet. */
  const sniffing = new Set<Socket>();
  http2.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.setTimeout(options.http2IdleTimeoutMs, () => session.close());
  });
  // A malformed HTTP/2 stream or session is the client's problem: it is reset, the server goes on.
  http2.on('sessionError', () => {});

  // The HTTP/1.1 server's own connection handling (its parser, limits and connection list), run after the sniff.
  const [http1Connection] = http1.listeners('connection') as ((socket: Socket) => void)[];
  if (!http1Connection) throw new Error('node:http server without a connection listener');
  http1.removeAllListeners('connection');
  http1.on('connection', function sniff(socket: Socket) {
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), options.firstBytesTimeoutMs);
    sniffing.add(socket);
    const handOver = (to: 'http1' | 'http2') => {
      clearTimeout(timer);
      sniffing.delete(socket);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      // Back into the socket's buffer, for the server it goes to: the HTTP/2
      // session reads what is buffered on its next tick (nodejs/node#35475),
      // the HTTP/1.1 parser on its next 'data' event.
      socket.pause();
      socket.unshift(head);
      if (to === 'http2') {
        http2.emit('connection', socket);
      } else {
        http1Connection.call(http1, socket);
        socket.resume();
      }
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const preface = prefaceSoFar(head);
      if (preface !== 'more') handOver(preface === 'yes' ? 'http2' : 'http1');
    };
    const onError = () => socket.destroy();
    const onClose = () => {
      clearTimeout(timer);
      sniffing.delete(socket);
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });

  return {
    server: http1,
    closeIdle: () => {
      http1.closeIdleConnections();
      for (const socket of sniffing) socket.destroy();
      for (const session of sessions) session.close();
    },
    closeAll: () => {
      http1.closeAllConnections();
      for (const socket of sniffing) socket.destroy();
      for (const session of sessions) session.destroy();
    },
    http2Connections: () => sessions.size,
  };
}
