#!/usr/bin/env node
// bench/pouch.js: the replication workload of bench/run.sh (issue 7): seed a pouchdb-server
// database with N small documents, then time one CouchDB replication of it to an empty
// database, directly or through a proxy pair.  Uses node's built-in fetch only.
//
//   seed      --url U --db D --count N
//             create D and write N documents (about 600 B of JSON each) with _bulk_docs.
//   replicate --url U --source SRC --target TGT --count N [--timeout SEC]
//             POST U/_replicate {source: SRC, target: TGT} (the replicator of U pushes SRC to
//             TGT), then check that TGT holds exactly N documents.  Prints one JSON line:
//             {"ok":true,"ms":...,"docs_written":N,"docs_per_s":...}.
//   delete    --url U --db D
//             delete D (404 is fine).
//
// Exit status: 0 on success, 1 on a failed check, 2 on a usage error.
'use strict';

// parseArgs: "--key value" pairs and bare words.
function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      if (i + 1 >= argv.length) usage(`option ${argv[i]} needs a value`);
      out[argv[i].slice(2)] = argv[++i];
    } else {
      out._.push(argv[i]);
    }
  }
  return out;
}

// usage: say what is wrong and exit 2.
function usage(msg) {
  process.stderr.write(`pouch.js: ${msg}\n`);
  process.exit(2);
}

// need: the value of a required option.
function need(args, key) {
  if (args[key] === undefined) usage(`missing --${key}`);
  return args[key];
}

// http: one JSON request; returns {status, json}; throws on a network error.
async function http(method, url, json, timeoutMs = 600000) {
  const headers = { Accept: 'application/json' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    parsed = { raw: text.slice(0, 300) };
  }
  return { status: res.status, json: parsed };
}

// doc: document i of the data set, deterministic, about 600 bytes of JSON.
function doc(i) {
  const n = String(i).padStart(6, '0');
  return {
    _id: `doc-${n}`,
    type: 'order',
    i,
    customer: { name: `customer ${i % 997}`, city: ['Lyon', 'Osaka', 'Recife', 'Tromsø'][i % 4] },
    items: Array.from({ length: 1 + (i % 5) }, (_, k) => ({ sku: `sku-${(i * 7 + k) % 1000}`, qty: k + 1,
      price: ((i * 31 + k * 17) % 10000) / 100 })),
    note: 'x'.repeat(120 + (i % 200)),
    created: new Date(1700000000000 + i * 60000).toISOString(),
  };
}

// seed: create the database and bulk-write --count documents.
async function cmdSeed(args) {
  const base = need(args, 'url').replace(/\/+$/, '');
  const db = need(args, 'db');
  const count = Number(need(args, 'count'));
  const t0 = Date.now();
  const r = await http('PUT', `${base}/${db}`);
  if (r.status !== 201 && r.status !== 412) throw new Error(`PUT ${db}: HTTP ${r.status}`);
  for (let start = 0; start < count; start += 500) {
    const docs = [];
    for (let i = start; i < Math.min(count, start + 500); i++) docs.push(doc(i));
    const b = await http('POST', `${base}/${db}/_bulk_docs`, { docs });
    if (b.status !== 201 && b.status !== 200) throw new Error(`_bulk_docs: HTTP ${b.status}`);
    const bad = b.json.filter((x) => !x.ok);
    if (bad.length) throw new Error(`_bulk_docs: ${JSON.stringify(bad[0])}`);
  }
  const info = await http('GET', `${base}/${db}`);
  if (info.json.doc_count !== count) throw new Error(`doc_count ${info.json.doc_count}, want ${count}`);
  console.log(JSON.stringify({ ok: true, seeded: count, ms: Date.now() - t0 }));
}

// replicate: time one replication and check its result and the target's document count.
async function cmdReplicate(args) {
  const base = need(args, 'url').replace(/\/+$/, '');
  const source = need(args, 'source');
  const target = need(args, 'target');
  const count = Number(need(args, 'count'));
  const timeoutMs = Number(args.timeout || 600) * 1000;
  const t0 = process.hrtime.bigint();
  const r = await http('POST', `${base}/_replicate`, { source, target }, timeoutMs);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const j = r.json || {};
  const written = j.docs_written;
  const fail = (m) => {
    console.log(JSON.stringify({ ok: false, ms, error: m }));
    process.exit(1);
  };
  if (r.status !== 200 || !j.ok) fail(`HTTP ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
  if (j.doc_write_failures) fail(`doc_write_failures ${j.doc_write_failures}`);
  if (written !== count) fail(`docs_written ${written}, want ${count}`);
  // The target is read back the way the replicator wrote it: through the same URL.
  const info = await http('GET', target);
  if (info.status !== 200 || info.json.doc_count !== count) {
    fail(`target doc_count ${info.json.doc_count} (HTTP ${info.status}), want ${count}`);
  }
  console.log(JSON.stringify({ ok: true, ms, docs_written: written, docs_per_s: count / (ms / 1000) }));
}

// delete: drop a database.
async function cmdDelete(args) {
  const base = need(args, 'url').replace(/\/+$/, '');
  const r = await http('DELETE', `${base}/${need(args, 'db')}`);
  if (r.status !== 200 && r.status !== 404) throw new Error(`DELETE: HTTP ${r.status}`);
}

const commands = { seed: cmdSeed, replicate: cmdReplicate, delete: cmdDelete };
const args = parseArgs(process.argv.slice(2));
const cmd = commands[args._[0]];
if (!cmd) usage(`command must be one of: ${Object.keys(commands).join(', ')}`);
cmd(args).catch((e) => {
  console.log(JSON.stringify({ ok: false, error: `${args._[0]}: ${e.cause ? e.cause.message || e.cause.code : e.message}` }));
  process.exit(1);
});
