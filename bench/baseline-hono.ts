/**
 * Baseline: a bare Hono app doing the status API's single indexed SELECT
 * through the same driver as the gateway (postgres-js, which prepares its
 * statements, or PGlite in DATA_DIR with the gateway's settings and
 * prepared statements, src/db/pglite.ts) and answering it as JSON, with
 * nothing else: no auth, no logging, no validation.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import postgres from 'postgres';
import { pgliteDriver } from '../src/db/orm.ts';
import { pgliteStartParams, preparedStatements } from '../src/db/pglite.ts';

type Row = Record<string, unknown>;
// The status API's query (links.status): the columns its answer shows (written out in the tagged query below too).
const COLUMNS = 'user_id, provider, external_id, external_name, status, scopes, linked_at, updated_at, expires_at';
let query: (userId: string) => Promise<Row | undefined>;
if (process.env.DATABASE_URL) {
  const sql = postgres(process.env.DATABASE_URL, { max: 10 });
  query = async (userId) => (await sql`select user_id, provider, external_id, external_name, status, scopes, linked_at, updated_at, expires_at from links where tenant = 'default' and user_id = ${userId} and provider = 'bench'`)[0];
} else {
  const db = preparedStatements(await pgliteDriver().PGlite.create(process.env.DATA_DIR!, { startParams: pgliteStartParams() }), process.env.DATA_DIR!);
  query = async (userId) => (await db.query<Row>(`select ${COLUMNS} from links where tenant = 'default' and user_id = $1 and provider = 'bench'`, [userId])).rows[0];
}
const app = new Hono();
app.get('/api/v1/users/:userId/links/:provider', async (c) => {
  const row = await query(c.req.param('userId'));
  return row ? c.json(row) : c.json({ error: { code: 'not_linked' } }, 404);
});
serve({ fetch: app.fetch, hostname: '127.0.0.1', port: Number(process.env.PORT) }, () => process.stdout.write('ready\n'));
// A normal exit on SIGTERM, so that `--cpu-prof` (BENCH_PROFILE) writes its profile.
process.on('SIGTERM', () => process.exit(0));
