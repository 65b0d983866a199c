// Write-through scenario for node-postgres through the Sequin proxy, on
// salesforce.contact: named prepared statements with parameters (text
// format). Usage: node node_pg_writes.js <postgres-url>. Exits non-zero on
// the first failed check; prints `RESULT <json>` with the ids it wrote,
// which write_drivers.rs checks against the Salesforce simulator.
const assert = require('assert');
const { Client } = require('pg');

const url = process.argv[2];
const MISSING_ACCOUNT = '001Dn0000009999';
const isContactId = (id) => typeof id === 'string' && /^003[A-Za-z0-9]{15}$/.test(id);

async function main() {
  const c = new Client({ connectionString: url });
  await c.connect();
  const result = {};

  // One named statement, prepared once and executed with several parameter sets.
  const ins = {
    name: 'ins_contact',
    text: 'insert into salesforce.contact (first_name, last_name, email) values ($1, $2, $3) returning id, name',
  };
  const a = await c.query({ ...ins, values: ['Andrea', 'Js-Palladio', 'andrea@js.example'] });
  assert.strictEqual(a.rowCount, 1);
  assert.ok(isContactId(a.rows[0].id), a.rows[0].id);
  assert.strictEqual(a.rows[0].name, 'Andrea Js-Palladio');
  const b = await c.query({ ...ins, values: ['Vincenzo', 'Js-Scamozzi', null] });
  assert.ok(isContactId(b.rows[0].id), b.rows[0].id);
  assert.notStrictEqual(a.rows[0].id, b.rows[0].id);
  result.inserted = [a.rows[0].id, b.rows[0].id];

  // Multi-row insert with parameters.
  const many = await c.query({
    name: 'ins_many',
    text: 'insert into salesforce.contact (last_name) values ($1), ($2), ($3) returning id, last_name',
    values: ['Js-Longhena', 'Js-Sansovino', 'Js-Tirali'],
  });
  assert.strictEqual(many.rowCount, 3);
  for (const r of many.rows) assert.ok(isContactId(r.id), r.id);
  result.many = many.rows.map((r) => r.id);

  // Update by an arbitrary WHERE.
  const upd = await c.query({
    name: 'upd',
    text: 'update salesforce.contact set title = $1 where last_name like $2 and last_name <> $3',
    values: ['Architect', 'Js-%', 'Js-Sansovino'],
  });
  assert.strictEqual(upd.rowCount, 4);

  // Delete.
  const del = await c.query({
    name: 'del',
    text: 'delete from salesforce.contact where last_name = $1',
    values: ['Js-Sansovino'],
  });
  assert.strictEqual(del.rowCount, 1);
  result.deleted = many.rows.find((r) => r.last_name === 'Js-Sansovino').id;

  // Rejected locally (format: email), through the same prepared statement.
  await assert.rejects(c.query({ ...ins, values: ['Andrea', 'Js-Invalid', 'andrea__invalid'] }), (e) => {
    assert.strictEqual(e.code, '22023');
    assert.ok(e.message.startsWith('[Salesforce]: '), e.message);
    assert.ok(e.message.includes('`email`') && e.message.includes('invalid'), e.message);
    assert.strictEqual(e.schema, 'salesforce');
    assert.strictEqual(e.table, 'contact');
    assert.strictEqual(e.column, 'email');
    return true;
  });
  // Rejected by Salesforce (the account does not exist).
  await assert.rejects(
    c.query({
      name: 'ins_orphan',
      text: 'insert into salesforce.contact (last_name, account_id) values ($1, $2) returning id',
      values: ['Js-Orphan', MISSING_ACCOUNT],
    }),
    (e) => {
      assert.strictEqual(e.code, '23514');
      assert.ok(e.message.startsWith('[Salesforce]: '), e.message);
      assert.strictEqual(e.column, 'account_id');
      return true;
    },
  );

  // In an explicit transaction a rejected write aborts it.
  await c.query('begin');
  await assert.rejects(
    c.query({ name: 'ins_orphan', text: 'insert into salesforce.contact (last_name, account_id) values ($1, $2) returning id', values: ['Js-Orphan', MISSING_ACCOUNT] }),
    (e) => e.code === '23514',
  );
  await assert.rejects(c.query('select 1'), (e) => e.code === '25P02');
  await c.query('rollback');
  const left = await c.query(
    "select count(*)::int as n from salesforce.contact where last_name in ('Js-Invalid', 'Js-Orphan')",
  );
  assert.strictEqual(left.rows[0].n, 0);

  await c.end();
  console.log('RESULT ' + JSON.stringify(result));
  console.log('node-postgres writes ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
