/**
 * Reads what a function's closure holds through the V8 inspector (the
 * `[[Scopes]]` the debugger shows), for tests about state a module keeps
 * private: the API key check's digests, postgres.js's pool queues.
 */
import { Session } from 'node:inspector/promises';

export interface RemoteValue {
  type: string;
  subtype?: string;
  value?: unknown;
  objectId?: string;
  description?: string;
}

export interface Property {
  name: string;
  value?: RemoteValue;
}

export interface ClosureInspector {
  /** The properties of a remote object, internal ones (`[[Scopes]]`, …) included. */
  properties(objectId: string): Promise<{ result: Property[]; internalProperties?: Property[] }>;
  /** Runs `functionDeclaration` with the remote object as `this` and returns its result by value. */
  call(objectId: string, functionDeclaration: string): Promise<unknown>;
  /** The scopes of `fn`'s closure, the global one left out: each an object whose properties are its variables. */
  scopes(fn: unknown): Promise<RemoteValue[]>;
  /** The same for a function already in the inspector's hands (a property of something it read). */
  remoteScopes(functionObjectId: string): Promise<RemoteValue[]>;
  /** A variable of `fn`'s closure, by name, from the innermost scope that has it. */
  variable(scopes: RemoteValue[], name: string): Promise<RemoteValue | undefined>;
  close(): void;
}

export function openClosureInspector(): ClosureInspector {
  const session = new Session();
  session.connect();
  const properties: ClosureInspector['properties'] = async (objectId) => (await session.post('Runtime.getProperties', { objectId, ownProperties: true })) as never;
  async function remoteScopes(functionObjectId: string): Promise<RemoteValue[]> {
    const scopes = (await properties(functionObjectId)).internalProperties!.find((p) => p.name === '[[Scopes]]')!;
    const list = (await properties(scopes.value!.objectId!)).result;
    return list.filter((scope) => scope.value?.description !== 'Global').flatMap((scope) => (scope.value ? [scope.value] : []));
  }
  return {
    properties,
    async call(objectId, functionDeclaration) {
      const { result } = (await session.post('Runtime.callFunctionOn', { objectId, functionDeclaration, returnByValue: true })) as { result: RemoteValue };
      return result.value;
    },
    async scopes(fn) {
      // The inspector reaches objects through expressions: the function is parked on a global for one evaluation.
      const holder = globalThis as { __linkgateInspect?: unknown };
      holder.__linkgateInspect = fn;
      try {
        const { result } = (await session.post('Runtime.evaluate', { expression: 'globalThis.__linkgateInspect' })) as { result: RemoteValue };
        return await remoteScopes(result.objectId!);
      } finally {
        delete holder.__linkgateInspect;
      }
    },
    remoteScopes,
    async variable(scopes, name) {
      for (const scope of scopes) {
        const found = (await properties(scope.objectId!)).result.find((p) => p.name === name);
        if (found) return found.value;
      }
      return undefined;
    },
    close: () => session.disconnect(),
  };
}
