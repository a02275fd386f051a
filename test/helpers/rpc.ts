/**
 * Clients for the RPC surface that we did not write: @grpc/grpc-js with
 * @grpc/proto-loader reading proto/, gRPC-Web framed by hand over fetch
 * (messages encoded by protobufjs from the same files), and Connect JSON
 * over plain fetch. None of them uses the generated code in src/rpc/gen.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { ROOT } from './process.ts';

export const PROTO_DIR = join(ROOT, 'proto');
const LINKS_PROTO = 'linkgate/v1/links.proto';
const LOGIN_PROTO = 'linkgate/v1/login.proto';
export const SERVICE = 'linkgate.v1.LinkService';

// --- @grpc/grpc-js ---------------------------------------------------------------------------

/** A call's answer or its status, for assertions. */
export type GrpcOutcome<T> = { ok: true; value: T } | { ok: false; code: grpc.status; details: string; metadata: grpc.Metadata };

export interface GrpcClient {
  unary<T = Record<string, unknown>>(method: string, request: object, key?: string | null): Promise<GrpcOutcome<T>>;
  stream(method: string, request: object, key?: string | null): grpc.ClientReadableStream<Record<string, unknown>>;
  close(): void;
}

type Unary = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, value?: unknown) => void) => void;
type Streaming = (request: object, metadata: grpc.Metadata) => grpc.ClientReadableStream<Record<string, unknown>>;
type Method = { call(client: grpc.Client, request: object, metadata: grpc.Metadata, callback?: Parameters<Unary>[2]): unknown };

/** A grpc-js client of LinkService (or LoginService) at 127.0.0.1:`port` (plaintext HTTP/2), with `apiKey` as its default key. */
export function grpcClient(port: number, apiKey: string, extra: Record<string, string> = {}, service: 'LinkService' | 'LoginService' = 'LinkService'): GrpcClient {
  const definition = loadSync([LINKS_PROTO, LOGIN_PROTO], { includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { linkgate: { v1: Record<'LinkService' | 'LoginService', grpc.ServiceClientConstructor> } };
  const client = new loaded.linkgate.v1[service](`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const metadata = (key: string | null | undefined) => {
    const md = new grpc.Metadata();
    const presented = key === undefined ? apiKey : key;
    if (presented !== null) md.set('authorization', `Bearer ${presented}`);
    for (const [name, value] of Object.entries(extra)) md.set(name, value);
    return md;
  };
  const methods = client as unknown as Record<string, Method>;
  return {
    unary: (method, request, key) =>
      new Promise((resolve) => {
        methods[method]!.call(client, request, metadata(key), (error: grpc.ServiceError | null, value?: unknown) => {
          if (error) resolve({ ok: false, code: error.code, details: error.details, metadata: error.metadata });
          else resolve({ ok: true, value: value as never });
        });
      }),
    stream: (method, request, key) => methods[method]!.call(client, request, metadata(key)) as grpc.ClientReadableStream<Record<string, unknown>>,
    close: () => client.close(),
  };
}

// --- messages and error details, by protobufjs from proto/ ----------------------------------

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : join(PROTO_DIR, target));
root.loadSync([LINKS_PROTO, 'google/rpc/error_details.proto'], { keepCase: true });
// google/rpc/status.proto as googleapis has it (its Any by the same wire format, declared here).
protobuf.parse('syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; repeated AnyDetail details = 3; } message AnyDetail { string type_url = 1; bytes value = 2; }', root, { keepCase: true });
root.resolveAll();

export const messageType = (name: string) => root.lookupType(name);

export interface ErrorDetails {
  status: { code: number; message: string };
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
  retryInfo?: { retry_delay: { seconds: number; nanos?: number } };
  badRequest?: { field_violations: { field: string; description: string }[] };
}

/** `grpc-status-details-bin` (a google.rpc.Status) decoded, with the details Linkgate sends. */
export function decodeStatusDetails(bytes: Uint8Array): ErrorDetails {
  const status = messageType('google.rpc.Status').toObject(messageType('google.rpc.Status').decode(bytes), { longs: Number }) as {
    code: number;
    message: string;
    details?: { type_url: string; value: Uint8Array }[];
  };
  const out: ErrorDetails = { status: { code: status.code, message: status.message } };
  for (const detail of status.details ?? []) {
    const name = detail.type_url.replace(/^type\.googleapis\.com\//, '');
    const value = messageType(name).toObject(messageType(name).decode(detail.value), { longs: Number, defaults: true });
    if (name === 'google.rpc.ErrorInfo') out.errorInfo = value as ErrorDetails['errorInfo'];
    if (name === 'google.rpc.RetryInfo') out.retryInfo = value as ErrorDetails['retryInfo'];
    if (name === 'google.rpc.BadRequest') out.badRequest = value as ErrorDetails['badRequest'];
  }
  return out;
}

/** The details of a failed grpc-js call. */
export function grpcErrorDetails(metadata: grpc.Metadata): ErrorDetails {
  const [bin] = metadata.get('grpc-status-details-bin');
  if (!(bin instanceof Buffer)) throw new Error('no grpc-status-details-bin');
  return decodeStatusDetails(bin);
}

// --- gRPC-Web over fetch --------------------------------------------------------------------

export interface GrpcWebAnswer {
  httpStatus: number;
  grpcStatus: number;
  grpcMessage: string;
  messages: Record<string, unknown>[];
  details: ErrorDetails | undefined;
}

/**
 * One gRPC-Web call (binary), over HTTP/1.1 with fetch: length-prefixed
 * frames in, data and trailer frames out. `request` is the message, or the
 * raw bytes to send as one.
 */
export async function grpcWeb(base: string, method: string, request: object | Uint8Array, apiKey: string | null): Promise<GrpcWebAnswer> {
  const methodDesc = root.lookupService(SERVICE).methods[method]!;
  const input = root.lookupType(methodDesc.requestType);
  const output = root.lookupType(methodDesc.responseType);
  const payload = request instanceof Uint8Array ? request : input.encode(input.fromObject(request)).finish();
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  const response = await fetch(`${base}/${SERVICE}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: frame,
  });
  const body = Buffer.from(await response.arrayBuffer());
  const trailers = new Map<string, string>();
  // A trailers-only answer has its status in the headers.
  for (const [name, value] of response.headers) trailers.set(name, value);
  const messages: Record<string, unknown>[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at]!;
    const length = body.readUInt32BE(at + 1);
    const data = body.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if (flags & 0x80) {
      for (const line of data.toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    } else {
      messages.push(output.toObject(output.decode(data), { longs: Number, enums: String }) as Record<string, unknown>);
    }
  }
  const details = trailers.get('grpc-status-details-bin');
  return {
    httpStatus: response.status,
    grpcStatus: Number(trailers.get('grpc-status') ?? NaN),
    grpcMessage: decodeURIComponent(trailers.get('grpc-message') ?? ''),
    messages,
    details: details ? decodeStatusDetails(Buffer.from(details, 'base64')) : undefined,
  };
}

// --- Connect JSON over fetch ----------------------------------------------------------------

/** One Connect unary call with a JSON body: the HTTP status and the parsed JSON answer. */
export async function connectJson(base: string, method: string, body: unknown, apiKey: string | null): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${base}/${SERVICE}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}
