#!/usr/bin/env node
// replicate.js — node side of ferry's end-to-end replication test
// (tests/integration/60-replication.sh).  Talks plain HTTP to CouchDB-compatible
// servers (pouchdb-server in the test) with node's built-in fetch.
//
// The data set is a pure function of (side, count, seed): `seed` writes it and
// `verify` regenerates it, so a node is checked against what was written, not
// only against the other node.  Commands (all print one summary line, exit 0 on
// success, 1 on a failed check, 2 on a usage error):
//
//   seed      --url U --db D --side S --count N [--seed X] [--profile std|bulk]
//             create D if needed and write the set: docs with unicode text, nested
//             JSON, binary attachments; some docs updated twice, some deleted.
//   replicate --url U --source SRC --target TGT [--timeout SEC] [--expect-written N]
//             POST U/_replicate {source, target}; succeed only on ok:true with
//             no doc_write_failures (and, if given, exactly N docs written).
//   verify    --url U [--url U2 ...] --db D --set S:N[:X[:PROFILE]] [--set ...]
//             every node holds exactly the union of the sets: same doc count, every
//             body equal to the generated one, no _conflicts, the expected rev
//             generation, every attachment's stub (type, length, md5 digest) and
//             raw bytes equal; deleted docs are tombstones ("deleted", not
//             "missing"); revs identical across nodes.
//             --skip-prefix P: docs whose id starts with P are left to verify-conflicts
//             (not "unexpected"; doc_count may exceed the sets by that many).
//   replicate ... --continuous yes: start a continuous replication (answers at once).
//   conflicts --url U --db D --side S --count N [--seed X]
//             write docs x-00000..x-<N-1> (the same ids on every side, different bodies and
//             attachments per side, every 10th with a 1.25 MiB attachment; on side "a" every
//             3rd doc is edited once more): run on two nodes before replicating, they conflict.
//   verify-conflicts --url U --url U2 --db D --count N --sides a,b [--seed X]
//             every x- doc has exactly one leaf per side (bodies, attachment digests and
//             bytes as written), the same winning rev and the same _conflicts on every node.
//   wait-sync --url U --url U2 --db D --live N --conflicts N [--timeout SEC]
//             poll until every node has doc_count N and N conflicted x- docs; print seconds.
//   count     --url U --db D         print doc_count
//   wait-count --url U --db D --min N [--timeout SEC]
//             poll until doc_count >= N; print it
//   tamper    --url U --db D --id ID [--attachment NAME | --conflict yes]
//             change one doc body (or one bit of one attachment, or add a
//             conflicting sibling revision), to prove that `verify` notices.
'use strict';

const crypto = require('node:crypto');
const util = require('node:util');

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const key = a.slice(2);
      const val = argv[i + 1];
      if (val === undefined || val.startsWith('--')) usage(`option --${key} needs a value`);
      i++;
      if (out[key] === undefined) out[key] = val;
      else out[key] = [].concat(out[key], val);
    } else {
      out._.push(a);
    }
  }
  return out;
}
function usage(msg) {
  process.stderr.write(`replicate.js: ${msg}\n`);
  process.exit(2);
}
function need(args, key) {
  if (args[key] === undefined) usage(`missing --${key}`);
  if (Array.isArray(args[key])) usage(`--${key} given more than once`);
  return args[key];
}
function list(args, key) {
  const v = args[key];
  return v === undefined ? [] : [].concat(v);
}
const trimSlash = (u) => u.replace(/\/+$/, '');

// ---------------------------------------------------------------- HTTP
async function http(method, url, { json, raw, timeoutMs = 120000, expect } = {}) {
  const headers = { Accept: 'application/json' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new Error(`${method} ${url}: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
  }
  const buf = Buffer.from(await res.arrayBuffer());
  let parsed;
  if (!raw) {
    try {
      parsed = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      parsed = undefined;
    }
  }
  if (expect && !expect.includes(res.status)) {
    throw new Error(`${method} ${url}: HTTP ${res.status} ${buf.toString('utf8').trim().slice(0, 300)}`);
  }
  return { status: res.status, json: parsed, body: buf, headers: res.headers };
}
const enc = encodeURIComponent;
const docUrl = (base, db, id) => `${base}/${enc(db)}/${enc(id)}`;
const attUrl = (base, db, id, name) => `${docUrl(base, db, id)}/${name.split('/').map(enc).join('/')}`;

// ---------------------------------------------------------------- data set
function hash32(s) {
  const h = crypto.createHash('sha256').update(s).digest();
  return h.readUInt32LE(0);
}
function prng(seedStr) {
  // mulberry32
  let a = hash32(seedStr);
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function bytes(seedStr, size) {
  // Deterministic pseudo-random bytes: AES-128-CTR keystream.
  const key = crypto.createHash('sha256').update(seedStr).digest().subarray(0, 16);
  const c = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

const UNICODE = [
  '漢字かなカナ交じり文：東京都千代田区丸の内',
  '中文测试：数据库双向复制与相互认证',
  '한국어 텍스트: 데이터베이스 복제',
  '😀🚀🔐📦 👩‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇧🇷 👍🏽 🧑🏿‍🚒',
  'עברית: שלום עולם, בדיקת שכפול',
  'العربية: مرحبا بالعالم \u200f(نص من اليمين)\u200f',
  'ف\u0651\u064eا\u064b mixed RTL אבג 123 LTR def \u202bembedded\u202c',
  'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O',
  'decomposed: e\u0301 a\u0308 n\u0303 \u1100\u1161\u11a8 / precomposed: é ä ñ 각',
  'symbols: Ω≈ç√∫˜µ≤≥÷ 𝄞 𝕳𝖊𝖑𝖑𝖔 \u2028line\u2029para \ufeffbom',
  'escapes: "double" \'single\' back\\slash /solidus tab\t nl\n cr\r nul\u0000 del\u007f \u001b[0m',
  'ÅÄÖ åäö ß Ǆǅǆ ﬁﬂ İı ΑΒΓ абв ঋ ஔ ไทย ᚠᛇᚻ',
];

const CONTENT_TYPES = ['application/octet-stream', 'image/png', 'application/pdf', 'text/plain; charset=utf-8'];

function docId(side, i) {
  const n = String(i).padStart(5, '0');
  switch (i % 20) {
    case 3: return `${side}-${n}-ü東🚀`;
    case 13: return `${side}-${n}-שלום é`; // RTL + combining + space
    case 17: return `${side}-${n}-a+b&c=d;e%20f`;
    default: return `${side}-${n}`;
  }
}

function pick(r, arr) {
  return arr[Math.floor(r() * arr.length)];
}
function deep(r, depth) {
  if (depth === 0) return { leaf: pick(r, UNICODE), n: Math.floor(r() * 1e6) };
  return { level: depth, child: deep(r, depth - 1), sibling: [depth, null, depth % 2 === 0] };
}

// Which documents get updates / deletions / big attachments.
const isUpdated = (i) => i % 50 === 11 || i % 100 === 42;   // written 3 times (rev 3-)
const changesAttachmentOnUpdate = (i) => i % 100 === 11;
const isDeleted = (i) => i % 97 === 5;

// Attachments of doc i at a given version: [{name, content_type, size}].
function attachmentSpecs(profile, side, i, version, seed) {
  const r = prng(`${seed}:${side}:${i}:att`);
  const v = changesAttachmentOnUpdate(i) ? version : 1; // only some updates change bytes
  const specs = [];
  if (profile === 'bulk') {
    // crash-test profile: every doc has one 24..96 KiB attachment.
    specs.push({ name: 'blob.bin', content_type: 'application/octet-stream',
      size: 24576 + Math.floor(r() * 73728) });
  } else {
    if (i % 3 === 0) {
      const size = i % 100 === 0 ? 0 : Math.floor(r() * 16384); // some empty ones
      specs.push({ name: 'small.bin', content_type: pick(r, CONTENT_TYPES), size });
    }
    if (i % 10 === 1) {
      specs.push({ name: 'medium.bin', content_type: 'application/octet-stream',
        size: 65536 + 1 + Math.floor(r() * 140000) }); // > 64 KiB
    }
    if (i % 200 === 7) {
      specs.push({ name: 'large.bin', content_type: 'application/octet-stream',
        size: 1048576 - 4096 + Math.floor(r() * 8192) }); // ~1 MiB
    }
    if (i % 25 === 0) {
      specs.push({ name: 'photo 写真 🖼.png', content_type: 'image/png', size: 1 + Math.floor(r() * 3000) });
      specs.push({ name: 'notes/readme.txt', content_type: 'text/plain', size: 17 });
    }
  }
  return specs.map((s) => ({ ...s, seed: `${seed}:${side}:${i}:${s.name}:v${v}` }));
}

function attachmentBytes(spec) {
  if (spec.content_type === 'text/plain') return Buffer.from('hello, ferry ✓\n', 'utf8').subarray(0, spec.size);
  return bytes(spec.seed, spec.size);
}

function docBody(profile, side, i, version, seed) {
  const r = prng(`${seed}:${side}:${i}:body:v${version}`);
  const body = {
    type: profile,
    side,
    i,
    version,
    title: pick(r, UNICODE),
    text: [pick(r, UNICODE), pick(r, UNICODE), pick(r, UNICODE)].join(' | '),
  };
  if (profile === 'bulk') return body;
  body.numbers = [0, -1, 1, 2 ** 53 - 1, -(2 ** 53) + 1, 0.1, 3.141592653589793, 1.5e-300, 6.02e23,
    Math.floor(r() * 1e9), r()];
  body.flags = { yes: true, no: false, nothing: null, maybe: r() < 0.5 };
  body.items = Array.from({ length: 1 + Math.floor(r() * 8) }, (_, k) => ({
    k, name: pick(r, UNICODE), qty: Math.floor(r() * 1000), price: Math.round(r() * 1e6) / 100,
    active: r() < 0.5, note: r() < 0.3 ? null : pick(r, UNICODE), tags: [pick(r, UNICODE).slice(0, 4), k],
  }));
  body.deep = deep(r, 12);
  body.empty = { obj: {}, arr: [], str: '' };
  body['ключ with ünïcödé 🔑'] = { 'nested "quoted" key': [[], [[]], [{}]] };
  if (i % 7 === 0) body.padding = 'x'.repeat(Math.floor(r() * 20000)); // bigger JSON bodies
  return body;
}

// The final expected state of doc i: {id, deleted, gen, body, atts}
function expected(profile, side, i, seed) {
  const id = docId(side, i);
  if (isDeleted(i)) return { id, deleted: true, gen: 2 };
  const version = isUpdated(i) ? 3 : 1;
  return {
    id, deleted: false, gen: version,
    body: docBody(profile, side, i, version, seed),
    atts: attachmentSpecs(profile, side, i, version, seed),
  };
}

function inlineAttachments(specs) {
  const o = {};
  for (const s of specs) o[s.name] = { content_type: s.content_type, data: attachmentBytes(s).toString('base64') };
  return o;
}
const md5digest = (buf) => 'md5-' + crypto.createHash('md5').update(buf).digest('base64');

// ---------------------------------------------------------------- seed
async function bulkDocs(base, db, docs) {
  const { json } = await http('POST', `${base}/${enc(db)}/_bulk_docs`, { json: { docs }, expect: [201, 200] });
  const revs = new Map();
  for (const [k, r] of json.entries()) {
    if (!r.ok && !r.rev) throw new Error(`_bulk_docs ${docs[k]._id}: ${JSON.stringify(r)}`);
    revs.set(r.id, r.rev);
  }
  return revs;
}

async function cmdSeed(args) {
  const base = trimSlash(need(args, 'url'));
  const db = need(args, 'db');
  const side = need(args, 'side');
  const count = Number(need(args, 'count'));
  const seed = args.seed || 'ferry';
  const profile = args.profile || 'std';
  if (!['std', 'bulk'].includes(profile)) usage('--profile is std or bulk');
  const t0 = Date.now();
  const r = await http('PUT', `${base}/${enc(db)}`, { expect: [201, 412] });
  void r;
  const revs = new Map();
  let batch = [];
  let batchBytes = 0;
  let totalAttBytes = 0;
  const flush = async () => {
    if (!batch.length) return;
    for (const [id, rev] of await bulkDocs(base, db, batch)) revs.set(id, rev);
    batch = [];
    batchBytes = 0;
  };
  // version 1 of every doc
  for (let i = 0; i < count; i++) {
    const specs = attachmentSpecs(profile, side, i, 1, seed);
    const doc = { _id: docId(side, i), ...docBody(profile, side, i, 1, seed) };
    if (specs.length) doc._attachments = inlineAttachments(specs);
    const n = specs.reduce((s, x) => s + x.size, 0);
    totalAttBytes += n;
    batch.push(doc);
    batchBytes += n;
    if (batch.length >= 100 || batchBytes > 4 << 20) await flush();
  }
  await flush();
  // versions 2 and 3 of the updated docs; tombstones for the deleted ones
  for (const version of [2, 3]) {
    for (let i = 0; i < count; i++) {
      if (!isUpdated(i) || isDeleted(i)) continue;
      const id = docId(side, i);
      const specs = attachmentSpecs(profile, side, i, version, seed);
      const doc = { _id: id, _rev: revs.get(id), ...docBody(profile, side, i, version, seed) };
      if (specs.length) {
        doc._attachments = changesAttachmentOnUpdate(i)
          ? inlineAttachments(specs)
          : Object.fromEntries(specs.map((s) => [s.name, { stub: true, content_type: s.content_type,
            digest: md5digest(attachmentBytes(s)), length: s.size }]));
      }
      batch.push(doc);
    }
    await flush();
  }
  for (let i = 0; i < count; i++) {
    if (!isDeleted(i)) continue;
    const id = docId(side, i);
    batch.push({ _id: id, _rev: revs.get(id), _deleted: true });
  }
  await flush();
  const info = (await http('GET', `${base}/${enc(db)}`, { expect: [200] })).json;
  console.log(`seed ok: db=${db} side=${side} profile=${profile} docs=${count} live=${info.doc_count} ` +
    `attachment_bytes=${totalAttBytes} in ${Date.now() - t0} ms`);
}

// ---------------------------------------------------------------- replicate
async function cmdReplicate(args) {
  const base = trimSlash(need(args, 'url'));
  const source = need(args, 'source');
  const target = need(args, 'target');
  const timeout = Number(args.timeout || 300);
  const t0 = Date.now();
  let res;
  try {
    const body = { source, target };
    if (args.continuous === 'yes') body.continuous = true;
    res = await http('POST', `${base}/_replicate`, { json: body, timeoutMs: timeout * 1000 });
  } catch (e) {
    console.log(`replicate FAILED: ${source} -> ${target}: ${e.message}`);
    process.exit(1);
  }
  const j = res.json || {};
  if (args.continuous === 'yes') {
    if (res.status !== 200 || j.ok !== true) {
      console.log(`replicate FAILED: continuous ${source} -> ${target}: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 300)}`);
      process.exit(1);
    }
    console.log(`replicate ok: continuous ${source} -> ${target} started`);
    return;
  }
  const summary = `${source} -> ${target}: HTTP ${res.status} ok=${j.ok} status=${j.status} ` +
    `docs_read=${j.docs_read} docs_written=${j.docs_written} doc_write_failures=${j.doc_write_failures} ` +
    `in ${Date.now() - t0} ms`;
  if (res.status !== 200 || j.ok !== true || j.doc_write_failures !== 0 ||
      (j.status !== undefined && j.status !== 'complete') || (j.errors && j.errors.length)) {
    console.log(`replicate FAILED: ${summary} body=${res.body.toString('utf8').trim().slice(0, 500)}`);
    process.exit(1);
  }
  if (args['expect-written'] !== undefined && j.docs_written !== Number(args['expect-written'])) {
    console.log(`replicate FAILED: ${summary}: expected docs_written=${args['expect-written']}`);
    process.exit(1);
  }
  console.log(`replicate ok: ${summary}`);
}

// ---------------------------------------------------------------- verify
async function pool(items, n, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const k = next++;
      await fn(items[k], k);
    }
  });
  await Promise.all(workers);
}

async function cmdVerify(args) {
  const urls = list(args, 'url').map(trimSlash);
  const db = need(args, 'db');
  const sets = list(args, 'set');
  const skipPrefix = args['skip-prefix'];
  if (!urls.length || !sets.length) usage('verify needs --url and --set');
  const t0 = Date.now();
  const failures = [];
  const fail = (m) => {
    failures.push(m);
  };

  // Expected state
  const exp = new Map();
  let expLive = 0;
  let expDeleted = 0;
  for (const s of sets) {
    const [side, n, seed = 'ferry', profile = 'std'] = s.split(':');
    for (let i = 0; i < Number(n); i++) {
      const e = expected(profile, side, i, seed);
      if (exp.has(e.id)) usage(`duplicate id ${e.id} across --set`);
      exp.set(e.id, e);
      if (e.deleted) expDeleted++;
      else expLive++;
    }
  }

  const revsByNode = [];
  let attCount = 0;
  let attBytes = 0;
  for (const base of urls) {
    const where = `${base}/${db}`;
    const revs = new Map();
    revsByNode.push(revs);
    const info = await http('GET', `${base}/${enc(db)}`, { expect: [200, 404] });
    if (info.status === 404) {
      fail(`${where}: database missing`);
      continue;
    }
    let skipped = 0;
    if (info.json.doc_del_count !== undefined && info.json.doc_del_count !== expDeleted) {
      fail(`${where}: doc_del_count ${info.json.doc_del_count}, expected ${expDeleted}`);
    }
    const all = (await http('GET', `${base}/${enc(db)}/_all_docs?include_docs=true&conflicts=true`,
      { expect: [200], timeoutMs: 300000 })).json;
    if (skipPrefix) {
      const before = all.rows.length;
      all.rows = all.rows.filter((row) => !row.id.startsWith(skipPrefix));
      skipped = before - all.rows.length;
      all.total_rows -= skipped;
    }
    if (info.json.doc_count !== expLive + skipped) {
      fail(`${where}: doc_count ${info.json.doc_count}, expected ${expLive + skipped}`);
    }
    if (all.total_rows !== expLive) fail(`${where}: _all_docs total_rows ${all.total_rows}, expected ${expLive}`);
    if (all.rows.length !== expLive) fail(`${where}: _all_docs has ${all.rows.length} rows, expected ${expLive}`);
    const seen = new Set();
    const attJobs = [];
    for (const row of all.rows) {
      const id = row.id;
      if (id.startsWith('_design/')) {
        fail(`${where}: unexpected design doc ${id}`);
        continue;
      }
      if (seen.has(id)) fail(`${where}: ${JSON.stringify(id)} listed twice`);
      seen.add(id);
      const e = exp.get(id);
      if (!e) {
        fail(`${where}: unexpected doc ${JSON.stringify(id)}`);
        continue;
      }
      if (e.deleted) {
        fail(`${where}: ${JSON.stringify(id)} should be deleted but is live`);
        continue;
      }
      const doc = row.doc;
      if (!doc) {
        fail(`${where}: ${JSON.stringify(id)} has no doc in _all_docs`);
        continue;
      }
      revs.set(id, doc._rev);
      if (doc._conflicts) fail(`${where}: ${JSON.stringify(id)} has _conflicts ${JSON.stringify(doc._conflicts)}`);
      const gen = Number(String(doc._rev).split('-')[0]);
      if (gen !== e.gen) fail(`${where}: ${JSON.stringify(id)} rev ${doc._rev}, expected generation ${e.gen}`);
      const body = {};
      for (const [k, v] of Object.entries(doc)) if (!k.startsWith('_')) body[k] = v;
      if (!util.isDeepStrictEqual(body, e.body)) {
        fail(`${where}: ${JSON.stringify(id)} body differs: got ${JSON.stringify(body).slice(0, 200)}… ` +
          `expected ${JSON.stringify(e.body).slice(0, 200)}…`);
      }
      const stubs = doc._attachments || {};
      const gotNames = Object.keys(stubs).sort();
      const expNames = e.atts.map((a) => a.name).sort();
      if (!util.isDeepStrictEqual(gotNames, expNames)) {
        fail(`${where}: ${JSON.stringify(id)} attachments ${JSON.stringify(gotNames)}, expected ${JSON.stringify(expNames)}`);
      }
      for (const spec of e.atts) {
        const stub = stubs[spec.name];
        if (!stub) continue;
        const data = attachmentBytes(spec);
        const what = `${where}: ${JSON.stringify(id)}/${JSON.stringify(spec.name)}`;
        if (stub.content_type !== spec.content_type) fail(`${what}: content_type ${stub.content_type}, expected ${spec.content_type}`);
        if (stub.length !== data.length) fail(`${what}: length ${stub.length}, expected ${data.length}`);
        if (stub.digest !== md5digest(data)) fail(`${what}: digest ${stub.digest}, expected ${md5digest(data)}`);
        if (!stub.stub) fail(`${what}: not a stub in _all_docs`);
        attJobs.push({ id, spec, data, what });
      }
    }
    for (const [id, e] of exp) {
      if (!e.deleted && !seen.has(id)) fail(`${where}: missing doc ${JSON.stringify(id)}`);
    }
    // Raw attachment bytes
    await pool(attJobs, 8, async ({ id, spec, data, what }) => {
      const r = await http('GET', attUrl(base, db, id, spec.name), { raw: true });
      if (r.status !== 200) {
        fail(`${what}: GET attachment HTTP ${r.status}`);
        return;
      }
      if (!r.body.equals(data)) {
        let k = 0;
        while (k < Math.min(r.body.length, data.length) && r.body[k] === data[k]) k++;
        fail(`${what}: attachment bytes differ (got ${r.body.length} bytes, expected ${data.length}; first difference at offset ${k})`);
      }
      attCount++;
      attBytes += r.body.length;
    });
    // Tombstones: the only leaf is a deletion of the expected generation.
    const deleted = [...exp.values()].filter((e) => e.deleted);
    await pool(deleted, 8, async (e) => {
      const r = await http('GET', `${docUrl(base, db, e.id)}?open_revs=all`);
      const leaves = Array.isArray(r.json) ? r.json : [];
      const ok = r.status === 200 && leaves.length === 1 && leaves[0].ok && leaves[0].ok._deleted === true &&
        Number(String(leaves[0].ok._rev).split('-')[0]) === e.gen;
      if (!ok) {
        fail(`${where}: ${JSON.stringify(e.id)} should be a tombstone (one deleted leaf, generation ${e.gen}): ` +
          `HTTP ${r.status} ${r.body.toString('utf8').trim().slice(0, 160)}`);
      } else {
        revs.set(e.id, leaves[0].ok._rev);
      }
    });
  }
  // Same revision everywhere
  for (let n = 1; n < revsByNode.length; n++) {
    for (const [id, rev] of revsByNode[0]) {
      const other = revsByNode[n].get(id);
      if (other !== undefined && other !== rev) fail(`${JSON.stringify(id)}: rev ${rev} on ${urls[0]} but ${other} on ${urls[n]}`);
    }
  }
  if (failures.length) {
    for (const m of failures.slice(0, 30)) console.log(`  ${m}`);
    if (failures.length > 30) console.log(`  ... and ${failures.length - 30} more`);
    console.log(`verify FAILED: db=${db} ${failures.length} problem(s)`);
    process.exit(1);
  }
  console.log(`verify ok: db=${db} nodes=${urls.length} live_docs=${expLive} tombstones=${expDeleted} ` +
    `attachments_checked=${attCount} attachment_bytes_checked=${attBytes} in ${Date.now() - t0} ms`);
}

// ---------------------------------------------------------------- small commands
async function docCount(base, db) {
  const r = await http('GET', `${trimSlash(base)}/${enc(db)}`, { expect: [200] });
  return r.json.doc_count;
}
async function cmdCount(args) {
  console.log(await docCount(need(args, 'url'), need(args, 'db')));
}
async function cmdWaitCount(args) {
  const url = need(args, 'url');
  const db = need(args, 'db');
  const min = Number(need(args, 'min'));
  const deadline = Date.now() + Number(args.timeout || 60) * 1000;
  for (;;) {
    let n = -1;
    try {
      n = await docCount(url, db);
    } catch (e) {
      // database may not exist yet
    }
    if (n >= min) {
      console.log(n);
      return;
    }
    if (Date.now() > deadline) {
      console.log(`wait-count FAILED: ${url}/${db} doc_count ${n} < ${min}`);
      process.exit(1);
    }
    await new Promise((res) => setTimeout(res, 20));
  }
}
async function cmdTamper(args) {
  const base = trimSlash(need(args, 'url'));
  const db = need(args, 'db');
  const id = need(args, 'id');
  const doc = (await http('GET', docUrl(base, db, id), { expect: [200] })).json;
  if (args.conflict) {
    // A sibling revision written as replication would write it: a conflict.
    const sibling = { ...doc, _rev: `${doc._rev.split('-')[0]}-${'f'.repeat(32)}`, title: 'conflicting edit' };
    delete sibling._attachments;
    const r = await http('POST', `${base}/${enc(db)}/_bulk_docs`,
      { json: { docs: [sibling], new_edits: false }, expect: [201, 200] });
    void r;
    console.log(`tampered doc ${id} (added conflicting revision ${sibling._rev})`);
  } else if (args.attachment) {
    const name = args.attachment;
    const data = (await http('GET', attUrl(base, db, id, name), { raw: true, expect: [200] })).body;
    data[data.length >> 1] ^= 0x01;
    const ct = doc._attachments[name].content_type;
    const r = await fetch(`${attUrl(base, db, id, name)}?rev=${enc(doc._rev)}`,
      { method: 'PUT', headers: { 'Content-Type': ct }, body: data });
    if (r.status !== 201) throw new Error(`tamper PUT attachment: HTTP ${r.status} ${await r.text()}`);
    console.log(`tampered attachment ${id}/${name} (flipped one bit at offset ${data.length >> 1})`);
  } else {
    doc.title = doc.title + '\u0301'; // one extra combining mark
    await http('PUT', docUrl(base, db, id), { json: doc, expect: [201] });
    console.log(`tampered doc ${id} (title gained one combining mark)`);
  }
}

// ---------------------------------------------------------------- conflicts
const conflictId = (i) => `x-${String(i).padStart(5, '0')}`;
const conflictEdited = (side, i) => side === 'a' && i % 3 === 0;
function conflictVersion(side, i, seed) {
  const version = conflictEdited(side, i) ? 2 : 1;
  const body = docBody('std', `x${side}`, i, version, seed);
  const atts = [{ name: `from-${side}.bin`, content_type: 'application/octet-stream',
    size: i % 10 === 0 ? 1310720 + i : 2048 + i * 7, seed: `${seed}:x:${side}:${i}` }];
  return { body, atts, gen: version };
}
async function cmdConflicts(args) {
  const base = trimSlash(need(args, 'url'));
  const db = need(args, 'db');
  const side = need(args, 'side');
  const count = Number(need(args, 'count'));
  const seed = args.seed || 'ferry';
  await http('PUT', `${base}/${enc(db)}`, { expect: [201, 412] });
  let bytes = 0;
  for (let i0 = 0; i0 < count; i0 += 20) {
    const docs = [];
    for (let i = i0; i < Math.min(count, i0 + 20); i++) {
      const v = conflictVersion(side, i, seed);
      const first = conflictEdited(side, i) ? docBody('std', `x${side}`, i, 1, seed) : v.body;
      docs.push({ _id: conflictId(i), ...first, _attachments: inlineAttachments(v.atts) });
      bytes += v.atts[0].size;
    }
    const revs = await bulkDocs(base, db, docs);
    const edits = [];
    for (const d of docs) {
      const i = Number(d._id.slice(2));
      if (!conflictEdited(side, i)) continue;
      const v = conflictVersion(side, i, seed);
      edits.push({ _id: d._id, _rev: revs.get(d._id), ...v.body, _attachments: Object.fromEntries(
        v.atts.map((s) => [s.name, { stub: true, content_type: s.content_type,
          digest: md5digest(attachmentBytes(s)), length: s.size }])) });
    }
    if (edits.length) await bulkDocs(base, db, edits);
  }
  console.log(`conflicts ok: db=${db} side=${side} docs=${count} attachment_bytes=${bytes}`);
}

async function cmdVerifyConflicts(args) {
  const urls = list(args, 'url').map(trimSlash);
  const db = need(args, 'db');
  const count = Number(need(args, 'count'));
  const sides = need(args, 'sides').split(',');
  const seed = args.seed || 'ferry';
  const failures = [];
  const fail = (m) => failures.push(m);
  const t0 = Date.now();
  let attBytes = 0;
  const ids = Array.from({ length: count }, (_, i) => i);
  await pool(ids, 6, async (i) => {
    const id = conflictId(i);
    let ref;
    for (const base of urls) {
      const where = `${base}/${db}/${id}`;
      const w = await http('GET', `${docUrl(base, db, id)}?conflicts=true`);
      if (w.status !== 200) {
        fail(`${where}: HTTP ${w.status}`);
        continue;
      }
      const winner = { rev: w.json._rev, conflicts: (w.json._conflicts || []).slice().sort() };
      if (winner.conflicts.length !== sides.length - 1) {
        fail(`${where}: _conflicts ${JSON.stringify(w.json._conflicts)}, expected ${sides.length - 1}`);
      }
      if (ref === undefined) ref = winner;
      else if (!util.isDeepStrictEqual(ref, winner)) {
        fail(`${id}: winner/_conflicts ${JSON.stringify(winner)} on ${base}, ${JSON.stringify(ref)} on ${urls[0]}`);
      }
      const leaves = (await http('GET', `${docUrl(base, db, id)}?open_revs=all`, { expect: [200] })).json;
      if (!Array.isArray(leaves) || leaves.length !== sides.length) {
        fail(`${where}: ${Array.isArray(leaves) ? leaves.length : '?'} leaves, expected ${sides.length}`);
        continue;
      }
      const left = new Set(sides);
      for (const leaf of leaves) {
        const doc = leaf.ok;
        if (!doc) {
          fail(`${where}: leaf missing: ${JSON.stringify(leaf)}`);
          continue;
        }
        const side = doc.side && doc.side.startsWith('x') ? doc.side.slice(1) : undefined;
        if (!left.has(side)) {
          fail(`${where}: unexpected leaf ${doc._rev} (side ${doc.side})`);
          continue;
        }
        left.delete(side);
        const e = conflictVersion(side, i, seed);
        const body = {};
        for (const [k, v] of Object.entries(doc)) if (!k.startsWith('_')) body[k] = v;
        if (!util.isDeepStrictEqual(body, e.body)) fail(`${where}: leaf ${doc._rev} (side ${side}) body differs`);
        if (Number(doc._rev.split('-')[0]) !== e.gen) fail(`${where}: leaf ${doc._rev}, expected generation ${e.gen}`);
        const stubs = doc._attachments || {};
        for (const spec of e.atts) {
          const stub = stubs[spec.name];
          const data = attachmentBytes(spec);
          if (!stub || stub.digest !== md5digest(data) || stub.length !== data.length) {
            fail(`${where}: leaf ${doc._rev} attachment ${spec.name}: ${JSON.stringify(stub)}`);
            continue;
          }
          const r = await http('GET', `${attUrl(base, db, id, spec.name)}?rev=${enc(doc._rev)}`, { raw: true });
          if (r.status !== 200 || !r.body.equals(data)) {
            fail(`${where}: leaf ${doc._rev} attachment ${spec.name} bytes differ (HTTP ${r.status}, ${r.body.length} bytes)`);
          }
          attBytes += r.body.length;
        }
      }
    }
  });
  if (failures.length) {
    for (const m of failures.slice(0, 30)) console.log(`  ${m}`);
    console.log(`verify-conflicts FAILED: db=${db} ${failures.length} problem(s)`);
    process.exit(1);
  }
  console.log(`verify-conflicts ok: db=${db} nodes=${urls.length} conflicted_docs=${count} ` +
    `leaves_per_doc=${sides.length} attachment_bytes_checked=${attBytes} in ${Date.now() - t0} ms`);
}

async function cmdWaitSync(args) {
  const urls = list(args, 'url').map(trimSlash);
  const db = need(args, 'db');
  const live = Number(need(args, 'live'));
  const conflicts = Number(need(args, 'conflicts'));
  const t0 = Date.now();
  const deadline = t0 + Number(args.timeout || 300) * 1000;
  let state = '';
  for (;;) {
    let done = true;
    state = '';
    for (const base of urls) {
      let n = -1;
      let c = -1;
      try {
        n = (await http('GET', `${base}/${enc(db)}`, { expect: [200] })).json.doc_count;
        if (n === live) {
          const r = await http('GET', `${base}/${enc(db)}/_all_docs?include_docs=true&conflicts=true` +
            `&startkey=${enc('"x-"')}&endkey=${enc('"x-￰"')}`, { expect: [200] });
          c = r.json.rows.filter((row) => row.doc && row.doc._conflicts && row.doc._conflicts.length).length;
        }
      } catch (e) {
        // not there yet
      }
      state += ` ${base}: docs=${n} conflicted=${c}`;
      if (n !== live || c !== conflicts) done = false;
    }
    if (done) break;
    if (Date.now() > deadline) {
      console.log(`wait-sync FAILED after ${(Date.now() - t0) / 1000} s:${state}`);
      process.exit(1);
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  console.log(((Date.now() - t0) / 1000).toFixed(1));
}

// ---------------------------------------------------------------- main
const commands = {
  seed: cmdSeed, replicate: cmdReplicate, verify: cmdVerify, count: cmdCount,
  'wait-count': cmdWaitCount, tamper: cmdTamper, conflicts: cmdConflicts,
  'verify-conflicts': cmdVerifyConflicts, 'wait-sync': cmdWaitSync,
};
const args = parseArgs(process.argv.slice(2));
const cmd = commands[args._[0]];
if (!cmd) usage(`command must be one of: ${Object.keys(commands).join(', ')}`);
cmd(args).catch((e) => {
  console.log(`${args._[0]} FAILED: ${e.message}`);
  process.exit(1);
});
