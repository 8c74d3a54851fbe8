#!/usr/bin/env node
// pouchdb-node.js [pouchdb-server options]: run pouchdb-server (tests/node_modules) as one
// database node of tests/integration/60-replication.sh.
//
// Why a wrapper: pouchdb-replication 7.x (used by pouchdb-server 4.2.0 for POST /_replicate)
// can emit a second 'error' event on a one-shot replication whose requests fail in two
// places at once (e.g. the peer's ferry is SIGKILLed while a batch and a checkpoint are in
// flight).  The Replication object listens with once('error'), so the second emit has no
// listener and Node kills the whole server -- and an in-memory node loses its data.  The
// replication itself has already failed and POST /_replicate has already answered 500, so
// here such an error is logged (as "pouchdb-node: tolerated replicator error") and the server
// keeps running.  Any other uncaught exception still ends the process (status 70).
'use strict';

const path = require('node:path');

let tolerated = 0;
process.on('uncaughtException', (err) => {
  const stack = String((err && err.stack) || err);
  // A replication's fatal error carries the replication result (status "aborting"); its
  // stack may start in the http adapter rather than in pouchdb-replication.
  const aborted = err && err.result && err.result.status === 'aborting';
  if (aborted || stack.includes(`${path.sep}pouchdb-replication${path.sep}`)) {
    tolerated++;
    console.error(`pouchdb-node: tolerated replicator error #${tolerated}: ${(err && err.message) || err}`);
    return;
  }
  console.error('pouchdb-node: uncaught exception:', err);
  process.exit(70);
});

// FERRY_POUCH_REQUEST_LOG=FILE: append "<METHOD> <url>" for every HTTP request the server
// receives, before any routing (tests/integration/61-replication-access.sh proves with it that
// requests ferry refused never reached the database).
if (process.env.FERRY_POUCH_REQUEST_LOG) {
  const fs = require('node:fs');
  const http = require('node:http');
  const fd = fs.openSync(process.env.FERRY_POUCH_REQUEST_LOG, 'a');
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (ev, req, ...rest) {
    if (ev === 'request') fs.writeSync(fd, `${req.method} ${req.url}\n`);
    return emit.call(this, ev, req, ...rest);
  };
}

// pouchdb-server parses process.argv.slice(2), which is the same for this script.
require(path.join(__dirname, '..', 'node_modules', 'pouchdb-server', 'lib', 'index.js'));
