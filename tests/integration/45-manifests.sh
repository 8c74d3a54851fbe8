#!/usr/bin/env bash
# Goal: the deploy material is valid and says what issue 13 promises, offline.
#   1. deploy/kubernetes/*.yaml pass deploy/validate/validate.mjs: the Kubernetes and
#      cert-manager schemas (npm kubernetes-models, @kubernetes-models/cert-manager), no unknown
#      field, references between objects; and the rules of this project: ferry's liveness probe
#      is /livez and its readiness probe /readyz on the admin port of its config, no
#      `key encipherment` with an ECDSA key, secret volumes 0440 with fsGroup = ferry's group,
#      drain_timeout < CouchDB's preStop sleep < terminationGracePeriodSeconds, and the peers'
#      Service keeps unready pods (two sites down together must not wait for each other).
#   2. Each check fails on a manifest broken in a temporary copy (a misspelt field, a wrong
#      type, a Service that is not headless, an unknown apiVersion, a bad enum value, a YAML
#      error, a probe on an undeclared port; liveness on /readyz, key encipherment back, mode
#      0400, a grace period too short, no preStop, publishNotReadyAddresses gone).
#   3. deploy/docker: docker-compose.yml passes the Compose schema (npm dclint, --quiet: errors
#      only), and fails it with a misspelt key; the Dockerfile exposes the admin port and has a
#      HEALTHCHECK on /livez with deploy/docker/ferry-probe; the compose file's ferry checks are
#      /readyz and wait for a healthy CouchDB; ferry-probe exits 0 on 200 and 1 on 503, on
#      silence and on a closed port, against a stub and against the real ferry's admin endpoint.
# The npm packages come from deploy/install-deps.sh --test (npm ci --prefix deploy/validate);
# installed here when missing.  No schema is fetched at run time.
# timeout: 180
source "$(dirname "$0")/lib.sh"

K8S=$FERRY_SRC/deploy/kubernetes
V=$FERRY_SRC/deploy/validate
DOCKER=$FERRY_SRC/deploy/docker

command -v node >/dev/null || fail "node is required (node >= 20)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
    fail "node >= 20 is required, found $(node --version)"
# Installed when any pinned package is missing or at another version.
stale=$(node -e '
  const [dir] = process.argv.slice(1);
  const deps = require(dir + "/package.json").dependencies;
  for (const [n, v] of Object.entries(deps)) {
    let have = "";
    try { have = require(dir + "/node_modules/" + n + "/package.json").version; } catch (e) {}
    if (have !== v) console.log(n);
  }' "$V")
if [ -n "$stale" ]; then
    note "installing the validator's packages: npm ci --prefix $V (log: $T/npm.log)"
    timeout -k 5 300 npm ci --prefix "$V" --no-audit --no-fund >"$T/npm.log" 2>&1 || {
        tail -n 30 "$T/npm.log" >&2
        fail "npm ci --prefix $V failed"
    }
fi

# validate OUT FILE...: run validate.mjs (--separate) on FILE...; output in OUT; prints the exit code.
validate() {
    local out=$1 rc=0
    shift
    timeout -k 5 60 node "$V/validate.mjs" --separate "$@" >"$out" 2>&1 || rc=$?
    echo "$rc"
}

# ---- 1. the shipped manifests ----
rc=$(validate "$T/shipped.out" "$K8S/certificate.yaml" "$K8S/ferry-sidecar.yaml")
[ "$rc" = 0 ] || { cat "$T/shipped.out" >&2; fail "validate.mjs: shipped manifests exit $rc, expected 0"; }
pass "shipped manifests: $(tail -n 1 "$T/shipped.out")"

# The project's rules, as a node script: rules.cjs SIDECAR CERTIFICATE; one line per broken rule.
cat >"$T/rules.cjs" <<'EOF'
'use strict';
const fs = require('node:fs');
const YAML = require(process.env.V + '/node_modules/yaml');
const load = (f) => YAML.parseAllDocuments(fs.readFileSync(f, 'utf8'), { version: '1.1' })
  .map((d) => d.toJS()).filter(Boolean);
const [sidecar, certificate] = process.argv.slice(2).map(load);
const bad = [];
const rule = (ok, msg) => { if (!ok) bad.push(msg); };
const sts = sidecar.find((o) => o.kind === 'StatefulSet');
const pod = sts.spec.template.spec;
const ferry = pod.containers.find((c) => c.name === 'ferry');
const couch = pod.containers.find((c) => c.name === 'couchdb');
const cfg = YAML.parse(sidecar.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ferry-config')
  .data['ferry.yaml']);
const adminPort = +String(cfg.admin.listen).split(':').pop();
const portOf = (name) => (ferry.ports.find((p) => p.name === name) || {}).containerPort;
const probe = (p) => p && p.httpGet && `${p.httpGet.path} port ${portOf(p.httpGet.port) || p.httpGet.port}`;
rule(probe(ferry.livenessProbe) === `/livez port ${adminPort}`,
  `ferry livenessProbe is ${probe(ferry.livenessProbe)}, expected /livez port ${adminPort}`);
rule(probe(ferry.readinessProbe) === `/readyz port ${adminPort}`,
  `ferry readinessProbe is ${probe(ferry.readinessProbe)}, expected /readyz port ${adminPort}`);
for (const c of certificate.filter((o) => o.kind === 'Certificate')) {
  const usages = c.spec.usages || ['digital signature', 'key encipherment']; // cert-manager's default
  if ((c.spec.privateKey || {}).algorithm === 'ECDSA') {
    rule(!usages.includes('key encipherment'), `Certificate ${c.metadata.name}: key encipherment with an ECDSA key`);
  }
  for (const u of ['server auth', 'client auth']) rule(usages.includes(u), `Certificate ${c.metadata.name}: no ${u}`);
}
const group = ferry.securityContext.runAsGroup;
rule(pod.securityContext.fsGroup === group, `fsGroup ${pod.securityContext.fsGroup} is not ferry's group ${group}`);
for (const v of pod.volumes.filter((x) => x.secret)) {
  rule(v.secret.defaultMode === 0o440, `secret volume ${v.name}: defaultMode ${(v.secret.defaultMode || 0).toString(8)}, expected 440`);
}
for (const svc of sidecar.filter((o) => o.kind === 'Service' && o.spec.clusterIP !== 'None')) {
  rule(svc.spec.publishNotReadyAddresses === true,
    `Service ${svc.metadata.name}: readiness would take the pod out of it (publishNotReadyAddresses)`);
}
const secs = (d) => { const m = /^(\d+)s$/.exec(d || '30s'); return m ? +m[1] : NaN; };
const drain = secs(cfg.limits && cfg.limits.drain_timeout);
const pre = couch.lifecycle && couch.lifecycle.preStop && couch.lifecycle.preStop.exec;
const sleep = pre && pre.command[0] === 'sleep' ? +pre.command[1] : 0;
const grace = pod.terminationGracePeriodSeconds;
rule(drain < sleep && sleep < grace,
  `shutdown: drain_timeout ${drain}s < CouchDB preStop sleep ${sleep}s < terminationGracePeriodSeconds ${grace} does not hold`);
for (const b of bad) console.log(b);
process.exit(bad.length ? 1 : 0);
EOF
rules() { V=$V timeout -k 5 30 node "$T/rules.cjs" "$@"; }
out=$(rules "$K8S/ferry-sidecar.yaml" "$K8S/certificate.yaml" 2>&1) || fail "shipped manifests break a rule: $out"
pass "probes /livez and /readyz on the admin port, ECDSA without key encipherment, 0440 + fsGroup, shutdown timing"

# ---- 2. broken copies: each must fail, with its reason ----
B=$T/broken
mkdir -p "$B"
# broken NAME SRC SED-EXPR EXPECTED-ERE: a copy of SRC through SED-EXPR; it must differ.
cases=()
broken() {
    sed "$3" "$K8S/$2" >"$B/$1.yaml"
    cmp -s "$B/$1.yaml" "$K8S/$2" && fail "case $1: the sed expression changed nothing in $2"
    cases+=("$1|$4")
}
broken typo ferry-sidecar.yaml 's/livenessProbe:/livenesProbe:/' 'unknown field .*livenesProbe'
broken type ferry-sidecar.yaml 's/replicas: 1/replicas: "one"/' 'replicas must be integer'
broken headless ferry-sidecar.yaml '/clusterIP: None/d' 'not headless'
broken apiversion ferry-sidecar.yaml 's#apiVersion: apps/v1#apiVersion: apps/v1beta9#' 'no bundled schema for apiVersion apps/v1beta9'
broken enum certificate.yaml 's/- digital signature/- digital signatures/' 'usages/2 must be equal to one of the allowed values'
broken yaml ferry-sidecar.yaml 's/^  replicas: 1/\treplicas: 1/' 'YAML: '
broken port ferry-sidecar.yaml '0,/port: admin/s//port: admn/' 'port admn is not a named port'
files=()
for c in "${cases[@]}"; do files+=("$B/${c%%|*}.yaml"); done
rc=$(validate "$T/broken.out" "${files[@]}")
[ "$rc" = 1 ] || { cat "$T/broken.out" >&2; fail "validate.mjs on broken copies: exit $rc, expected 1"; }
for c in "${cases[@]}"; do
    name=${c%%|*} want=${c#*|}
    grep -E "^$B/$name.yaml: .*$want" "$T/broken.out" >/dev/null ||
        { cat "$T/broken.out" >&2; fail "case $name: no error matching '$want'"; }
done
pass "validate.mjs rejects each of ${#cases[@]} broken copies with its reason"

# Each rule, broken in a copy.
rule_case() { # rule_case NAME FILE SED-EXPR EXPECTED-ERE
    local f=$B/rule-$1.yaml s=$K8S/ferry-sidecar.yaml c=$K8S/certificate.yaml out
    sed "$3" "$K8S/$2" >"$f"
    cmp -s "$f" "$K8S/$2" && fail "rule case $1: the sed expression changed nothing in $2"
    if [ "$2" = certificate.yaml ]; then c=$f; else s=$f; fi
    if out=$(rules "$s" "$c" 2>&1); then fail "rule case $1: not detected"; fi
    echo "$out" | grep -Eq "$4" || fail "rule case $1: '$out' does not match '$4'"
}
rule_case liveness ferry-sidecar.yaml 's#path: /livez#path: /readyz#' 'livenessProbe is /readyz'
rule_case readiness ferry-sidecar.yaml 's#path: /readyz#path: /healthz#' 'readinessProbe is /healthz'
rule_case keyenc certificate.yaml 's/- digital signature/- digital signature\n    - key encipherment/' 'key encipherment with an ECDSA key'
rule_case mode ferry-sidecar.yaml '0,/^\( *\)defaultMode: 0440/s//\1defaultMode: 0400/' 'defaultMode 400'
rule_case grace ferry-sidecar.yaml 's/terminationGracePeriodSeconds: [0-9]*/terminationGracePeriodSeconds: 30/' 'shutdown: '
rule_case notready ferry-sidecar.yaml '/publishNotReadyAddresses: true/d' 'publishNotReadyAddresses'
rule_case prestop ferry-sidecar.yaml '/preStop:/,/command:/d' 'CouchDB preStop sleep 0s'
pass "each project rule fails on a copy that breaks it"

# ---- 3. docker ----
df=$DOCKER/Dockerfile
grep -Eq '^EXPOSE .*\b9901\b' "$df" || fail "Dockerfile: no EXPOSE of the admin port 9901"
grep -Eq '^COPY deploy/docker/ferry-probe /usr/local/bin/ferry-probe$' "$df" || fail "Dockerfile: ferry-probe not copied"
sed -n '/^HEALTHCHECK/,/CMD/p' "$df" | grep -q 'CMD \["ferry-probe", "/livez"\]' ||
    fail "Dockerfile: HEALTHCHECK is not ferry-probe /livez"
dc=$DOCKER/docker-compose.yml
dclint() { timeout -k 5 60 node "$V/node_modules/dclint/bin/dclint.cjs" --quiet --color false "$@"; }
out=$(dclint "$dc" 2>&1) || fail "dclint (Compose schema) rejects docker-compose.yml: $out"
sed 's/stop_grace_period:/stop_grace_perod:/' "$dc" >"$B/compose-typo.yml"
cmp -s "$B/compose-typo.yml" "$dc" && fail "compose typo case: the sed expression changed nothing"
if out=$(dclint "$B/compose-typo.yml" 2>&1); then fail "dclint accepts a misspelt compose key"; fi
echo "$out" | grep -q 'additional properties' || fail "dclint on a misspelt key: $out"
# shellcheck disable=SC2016 # JavaScript, not shell
V=$V node -e '
  const YAML = require(process.env.V + "/node_modules/yaml");
  const c = YAML.parse(require("fs").readFileSync(process.argv[1], "utf8"), { merge: true });
  const bad = [];
  for (const [n, s] of Object.entries(c.services)) {
    const t = (s.healthcheck || {}).test || [];
    if (/^ferry/.test(n)) {
      if (t.join(" ") !== "CMD ferry-probe /readyz") bad.push(`${n}: healthcheck ${t.join(" ")}`);
      const dep = Object.entries(s.depends_on || {});
      if (!dep.length || dep.some(([, d]) => d.condition !== "service_healthy")) bad.push(`${n}: depends_on without service_healthy`);
    } else if (!t.join(" ").includes("/_up")) bad.push(`${n}: no CouchDB /_up healthcheck`);
  }
  if (bad.length) { console.log(bad.join("\n")); process.exit(1); }' "$dc" ||
    fail "docker-compose.yml health checks"
pass "compose file valid (dclint), a misspelt key rejected; Dockerfile: EXPOSE 9901, HEALTHCHECK ferry-probe /livez; compose: ferry /readyz after a healthy CouchDB"

probe() { FERRY_ADMIN_PORT=$1 timeout -k 2 10 bash "$DOCKER/ferry-probe" "$2" >"$T/probe.out" 2>&1; }
SP=$(free_port)
bg_run stub python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/silent":
            import time; time.sleep(8); return
        code = 200 if self.path == "/livez" else 503
        body = b"{\"status\":\"draining\"}\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$SP"
wait_port "$SP" 10
probe "$SP" /livez || fail "ferry-probe: 200 gave exit $?: $(cat "$T/probe.out")"
if probe "$SP" /readyz; then fail "ferry-probe: 503 gave exit 0"; fi
grep -q '"status":"draining"' "$T/probe.out" || fail "ferry-probe does not print the body: $(cat "$T/probe.out")"
if probe "$SP" /silent; then fail "ferry-probe: no answer gave exit 0"; fi
CP=$(free_port)
if probe "$CP" /livez; then fail "ferry-probe: closed port gave exit 0"; fi
grep -q 'nothing listens' "$T/probe.out" || fail "ferry-probe on a closed port: $(cat "$T/probe.out")"

# Against the real admin endpoint.
out=$(ferry_cmd certs init-ca --dir "$T/ca" --name "manifests CA" 2>&1) || fail "certs init-ca: $out"
out=$(ferry_cmd certs issue --ca "$T/ca" --name node.test --ip 127.0.0.1 --out "$T/node" 2>&1) ||
    fail "certs issue: $out"
AP=$(free_port) BP=$(free_port) LP=$(free_port)
http_backend "$BP"
cat >"$T/ferry.yaml" <<EOF
tls: {cert: $T/node/node.test.crt, key: $T/node/node.test.key, ca: $T/node/ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$LP", backend: "127.0.0.1:$BP"}
admin: {listen: "127.0.0.1:$AP"}
EOF
ferry_start f "$T/ferry.yaml"
probe "$AP" /healthz || fail "ferry-probe /healthz against ferry: $(cat "$T/probe.out")"
rc=0
probe "$AP" /livez || rc=$?
if head -n 1 "$T/probe.out" | grep -q ' 404 '; then
    note "this ferry has no /livez yet (404): the /livez probe of the real binary is not checked"
else
    [ "$rc" = 0 ] || fail "ferry-probe /livez against ferry: $(cat "$T/probe.out")"
fi
ferry_stop f
pass "ferry-probe: 200 -> 0; 503, silence, closed port -> 1; real admin endpoint answers it"
