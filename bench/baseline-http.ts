/** Baseline: bare node:http answering a constant JSON. */
import { createServer } from 'node:http';

const body = JSON.stringify({ userId: 'u1', provider: 'bench', status: 'active' });
createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
