#!/usr/bin/env node
/*
 * strict_backend.js: an HTTP/1.1 backend with Node's own parser (llhttp, strict:
 * insecureHTTPParser false) for tests/integration/38-differential.sh (issue 12).
 *
 *   node strict_backend.js --port PORT --log FILE
 *
 * Records, in order, one JSON line per event in FILE:
 *   {"ev":"request","n","conn","method","url","version","body_len","identity":[[name,value]...],
 *    "names":[raw header names...],"trailers":[name,value,...]}
 *        a request parsed completely (head and body); identity = every header whose name
 *        starts, ignoring case and reading "_" as "-", with x-auth, x-forwarded, forwarded or
 *        client-cert;
 *   {"ev":"aborted","conn","method","url","body_len"}   a request whose body never ended;
 *   {"ev":"clientError","conn","code","reason","raw"}   Node's parser refused the bytes (code
 *        HPE_...) or the socket failed (ECONNRESET...); raw = the start of the bad packet.
 * Every complete request is answered 200 with a small body ("ok N\n", none for HEAD).
 */
'use strict';

const fs = require('fs');
const http = require('http');

function arg(name) {
    const i = process.argv.indexOf(name);
    if (i < 0 || i + 1 >= process.argv.length) {
        console.error(`usage: strict_backend.js --port PORT --log FILE (missing ${name})`);
        process.exit(2);
    }
    return process.argv[i + 1];
}

const port = Number(arg('--port'));
const fd = fs.openSync(arg('--log'), 'a');
const IDENTITY = /^(x-auth|x-forwarded|forwarded|client-cert)/;
let requests = 0;
let conns = 0;

function record(o) {
    fs.writeSync(fd, JSON.stringify(o) + '\n');
}

const server = http.createServer({insecureHTTPParser: false}, (req, res) => {
    const conn = req.socket.ferryConn;
    let len = 0;
    req.on('data', (d) => {
        len += d.length;
    });
    req.on('end', () => {
        requests += 1;
        const identity = [];
        const names = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            const name = req.rawHeaders[i];
            names.push(name);
            if (IDENTITY.test(name.toLowerCase().replace(/_/g, '-'))) {
                identity.push([name, req.rawHeaders[i + 1]]);
            }
        }
        record({ev: 'request', n: requests, conn, method: req.method, url: req.url,
                version: req.httpVersion, body_len: len, identity, names,
                trailers: req.rawTrailers});
        /* Node sends no body to a HEAD, only the length a GET would have. */
        const body = `ok ${requests}\n`;
        res.writeHead(200, {'Content-Type': 'text/plain',
                            'Content-Length': Buffer.byteLength(body)});
        res.end(body);
    });
    req.on('close', () => {
        if (!req.complete) {
            record({ev: 'aborted', conn, method: req.method, url: req.url, body_len: len});
        }
    });
});

server.on('connection', (socket) => {
    conns += 1;
    socket.ferryConn = conns;
});

server.on('clientError', (err, socket) => {
    record({ev: 'clientError', conn: socket.ferryConn, code: err.code || String(err),
            reason: err.reason || err.message,
            raw: err.rawPacket ? err.rawPacket.toString('latin1').slice(0, 200) : null});
    if (socket.writable && !socket.destroyed) {
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    } else {
        socket.destroy();
    }
});

server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.requestTimeout = 0;
server.listen(port, '127.0.0.1', () => {
    console.log(`listening 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
