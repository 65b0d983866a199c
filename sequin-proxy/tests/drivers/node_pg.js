// Driver matrix scenario for node-postgres through the proxy.
// Usage: node node_pg.js <postgres-url>; exits non-zero on the first failure.
const assert = require('assert');
const { Client, Connection } = require('pg');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');

const url = process.argv[2];

async function main() {
  const c = new Client({ connectionString: url });
  await c.connect();
  await c.query('drop table if exists js_item');
  await c.query('create table js_item (id int primary key, name text not null)');
  for (let i = 0; i < 10; i++) {
    // Named queries are prepared once and reused.
    await c.query({ name: 'ins', text: 'insert into js_item values ($1, $2)', values: [i, `n${i}`] });
  }
  const r = await c.query('select name from js_item where id = $1', [3]);
  assert.deepStrictEqual(r.rows, [{ name: 'n3' }]);

  await c.query('begin');
  await c.query('insert into js_item values (100, $1)', ['rolled back']);
  await c.query('rollback');
  assert.strictEqual((await c.query('select count(*)::int as n from js_item where id = 100')).rows[0].n, 0);

  await assert.rejects(c.query('insert into js_item values (1, $1)', ['dup']), (e) => {
    assert.strictEqual(e.code, '23505');
    assert.match(e.message, /duplicate key/);
    assert.strictEqual(e.table, 'js_item');
    return true;
  });

  const rows = [];
  for (let i = 1000; i < 6000; i++) rows.push(`${i}\tc${i}\n`);
  await pipeline(Readable.from(rows), c.query(copyFrom('copy js_item (id, name) from stdin')));
  let out = '';
  await pipeline(
    c.query(copyTo('copy (select id from js_item where id >= 1000 order by id) to stdout')),
    new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } }),
  );
  assert.strictEqual(out.trim().split('\n').length, 5000);

  const got = new Promise((resolve) => c.on('notification', resolve));
  await c.query('listen js_chan');
  const other = new Client({ connectionString: url });
  await other.connect();
  await other.query("notify js_chan, 'hello from node'");
  const n = await got;
  assert.strictEqual(n.channel, 'js_chan');
  assert.strictEqual(n.payload, 'hello from node');

  // Cancel pg_sleep with a CancelRequest carrying this client's key.
  const started = Date.now();
  const sleeping = c.query('select pg_sleep(60)');
  await new Promise((res) => setTimeout(res, 500));
  const con = new Connection();
  const u = new URL(url);
  con.connect(Number(u.port), u.hostname);
  con.on('connect', () => con.cancel(c.processID, c.secretKey));
  await assert.rejects(sleeping, (e) => {
    assert.strictEqual(e.code, '57014');
    return true;
  });
  assert.ok(Date.now() - started < 30000);
  assert.strictEqual((await c.query('select 1 as one')).rows[0].one, 1);
  await other.end();
  await c.end();
  console.log('node-postgres ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
