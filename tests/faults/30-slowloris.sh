#!/usr/bin/env bash
# Fault injection (issue 8 item 3): slowloris on inbound protocol http.  30 TLS clients send
# their request head one byte per second; limits.header_timeout (3s here; default 15s) must
# answer each with 408 and close it, while a normal client is served meanwhile.
# timeout: 60
source "$(dirname "$0")/../support/faults.sh"

fault_setup PB PIN
fault_backend "$PB" backend
cat >"$T/slow.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {header_timeout: 3s, idle_timeout: 60s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
ferry_start slow "$T/slow.yaml"
# The default is 15s (config.h names it once; lint/man-defaults ties ferry.yaml(5) to it): the
# timings below count on it.
grep -Eq '^#define CONFIG_DEFAULT_HEADER_TIMEOUT_MS +\(UINT64_C\(15\) \* 1000\)' \
    "$FERRY_SRC/config/config.h" ||
    fail "config.h's CONFIG_DEFAULT_HEADER_TIMEOUT_MS is no longer 15s"

cat >"$T/slowloris.py" <<'PY'
import asyncio, json, ssl, sys, time
port, cert, key, ca, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
HEAD = b"GET /blob/10 HTTP/1.1\r\nHost: node1.test\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
async def one():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="node1.test")
    t0 = time.time()
    got = b""
    async def reader():
        nonlocal got
        while True:
            d = await r.read(65536)
            if not d:
                return
            got += d
    rt = asyncio.ensure_future(reader())
    for i in range(len(HEAD)):
        if rt.done():
            break
        try:
            w.write(HEAD[i:i + 1])
            await w.drain()
        except (ConnectionError, OSError):
            break
        await asyncio.sleep(1)
    try:
        await asyncio.wait_for(rt, 30)
    except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
        pass
    return {"status": got[:12].decode(errors="replace"), "closed_after": round(time.time() - t0, 2),
            "sent_all": i == len(HEAD) - 1}
async def main():
    res = await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps(res))
asyncio.run(main())
PY
t0=$SECONDS
python3 "$T/slowloris.py" "$PIN" "$P/good.crt" "$P/good.key" "$P/root.crt" 30 >"$T/slow.json" 2>"$T/slowloris.log" &
sl=$!
bg_register "$sl" slowloris
sleep 1
C=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" --resolve "node1.test:$PIN:127.0.0.1")
for i in 1 2 3; do
    fetch_ok "https://node1.test:$PIN/blob/65536" 65536 "${C[@]}"
done
wait "$sl" || fail "slowloris client failed: $(cat "$T/slowloris.log")"
summary=$(python3 - "$T/slow.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
bad = [r for r in res if not r["status"].startswith("HTTP/1.1 408") or r["sent_all"]
       or not 2.5 <= r["closed_after"] <= 6]
ts = [r["closed_after"] for r in res]
print(f"{len(res) - len(bad)}/{len(res)} got 408, closed after {min(ts)}-{max(ts)}s")
sys.exit(1 if bad else 0)
PY
) || fail "slowloris: not every slow client got 408 within ~3s: $(cat "$T/slow.json")"
ferry_alive slow || fail "ferry died under slowloris"
fetch_ok "https://node1.test:$PIN/blob/1048576" 1048576 "${C[@]}"
fault_row "slowloris (30 clients, 1 byte/s)" "408 + close after header_timeout (3s)" "$summary; normal client served meanwhile; alive"
ferry_stop slow
pass "faults/30-slowloris ($((SECONDS - t0))s)"
