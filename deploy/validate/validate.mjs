#!/usr/bin/env node
// validate.mjs FILE...: check Kubernetes manifests offline against the Kubernetes and
// cert-manager schemas, with no cluster and no download at run time.
//
//   npm ci --prefix deploy/validate        (once; the versions are pinned)
//   node deploy/validate/validate.mjs deploy/kubernetes/*.yaml
//
// Three checks per YAML document, each error printed as "FILE: doc N KIND/NAME: message":
//   1. schema: the object against the JSON schema of its apiVersion and kind, as bundled by the
//      npm packages kubernetes-models (the Kubernetes OpenAPI schemas) and
//      @kubernetes-models/cert-manager (cert-manager's CRDs): required fields, types, enums,
//      int-or-string, formats.  An apiVersion/kind with no bundled schema is an error too.
//   2. unknown fields: the same packages' TypeScript types, through the TypeScript compiler's
//      excess-property check (the JSON schemas allow any extra key, so `livenesProbe:` or
//      `serviceNmae:` would pass them; the API server drops such a key with a warning).
//   3. references within the files given: a StatefulSet's serviceName names a headless Service
//      (clusterIP: None) of the same namespace; a probe's or Service's named port is declared;
//      every volumeMount names a volume of the pod; a Certificate's issuerRef names an Issuer.
// Exit 0 when every document passes, 1 when any check fails, 2 on a usage error.
// Not checked: what only the API server or a controller knows (admission, defaulting,
// immutable fields, that Secrets and ConfigMaps exist in the cluster, cert-manager's webhook).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import ts from 'typescript';

const here = path.dirname(fileURLToPath(import.meta.url));

// apiVersion -> [module prefix of the models, type name prefix]; kinds are looked up in it.
const GROUPS = {
  'v1': 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'batch/v1': 'kubernetes-models/batch/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
  'cert-manager.io/v1': '@kubernetes-models/cert-manager/cert-manager.io/v1',
};

let failed = 0;
function error(where, msg) {
  failed++;
  console.log(`${where}: ${msg}`);
}

const args = process.argv.slice(2);
const separate = args[0] === '--separate';
const files = separate ? args.slice(1) : args;
if (files.length === 0 || files.some((f) => f.startsWith('-'))) {
  console.error('usage: validate.mjs [--separate] FILE.yaml...\n' +
    '  --separate: resolve references within each file only (default: across all files)');
  process.exit(2);
}

// ---- read every document ----
const docs = []; // {file, n, obj, where, mod}
for (const file of files) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    error(file, `cannot read: ${e.message}`);
    continue;
  }
  // YAML 1.1, as kubectl reads it: `defaultMode: 0440` is octal (288), not 440.
  const parsed = YAML.parseAllDocuments(text, { prettyErrors: true, version: '1.1' });
  parsed.forEach((d, i) => {
    const n = i + 1;
    for (const e of d.errors) error(`${file}: doc ${n}`, `YAML: ${e.message.split('\n')[0]}`);
    if (d.errors.length) return;
    const obj = d.toJS();
    if (obj === null || obj === undefined) return; // an empty document (a trailing ---)
    if (typeof obj !== 'object' || Array.isArray(obj)) {
      error(`${file}: doc ${n}`, 'not a mapping');
      return;
    }
    const where = `${file}: doc ${n} ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const prefix = GROUPS[obj.apiVersion];
    const mod = prefix && `${prefix}/${obj.kind}`;
    if (!prefix || !/^[A-Z][A-Za-z]+$/.test(String(obj.kind)) ||
        !fs.existsSync(path.join(here, 'node_modules', `${mod}.js`))) {
      error(where, `no bundled schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
      return;
    }
    docs.push({ file, n, obj, where, mod });
  });
}

// ---- 1. the JSON schema of each kind ----
for (const d of docs) {
  const m = await import(path.join(here, 'node_modules', `${d.mod}.js`));
  const Model = m[d.obj.kind];
  try {
    new Model(d.obj).validate();
  } catch (e) {
    for (const line of String(e.message).split('\n')) {
      if (line.trim()) error(d.where, `schema: ${line.trim()}`);
    }
  }
}

// ---- 2. unknown fields, through the TypeScript types of the same packages ----
// A virtual file next to node_modules declares one variable per document with its kind's
// interface (`declare const d3: IStatefulSet;`); each object is then walked along that type,
// and a key the type does not have is an error, with its path.
if (docs.length) {
  const virt = path.join(here, '__manifests__.ts');
  const source = docs.map((d, i) =>
    `import type { I${d.obj.kind} as T${i} } from "${d.mod}";\nexport declare const d${i}: T${i};\n`).join('');
  const options = {
    noEmit: true, strict: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (name, lang, ...rest) =>
    name === virt ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists;
  host.fileExists = (name) => name === virt || fileExists(name);
  const readFile = host.readFile;
  host.readFile = (name) => (name === virt ? source : readFile(name));
  const program = ts.createProgram([virt], options, host);
  for (const diag of ts.getPreEmitDiagnostics(program)) {
    error('validate.mjs', `TypeScript: ${ts.flattenDiagnosticMessageText(diag.messageText, ' ')}`);
  }
  const checker = program.getTypeChecker();
  const decls = [];
  program.getSourceFile(virt).forEachChild(function visit(node) {
    if (ts.isVariableDeclaration(node)) decls.push(node);
    node.forEachChild(visit);
  });
  // walk(value, type, where): report every key of value that type does not declare.
  const walk = (value, type, where, at) => {
    if (value === null || typeof value !== 'object') return;
    type = checker.getNonNullableType(type);
    if (type.isUnion()) {
      const objs = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
      if (objs.length !== 1) return; // int-or-string and the like: the schema judged it
      type = objs[0];
    }
    if (Array.isArray(value)) {
      const elem = checker.isArrayType(type) ? checker.getTypeArguments(type)[0] : undefined;
      if (elem) value.forEach((v, i) => walk(v, elem, where, `${at}[${i}]`));
      return;
    }
    if (!(type.flags & ts.TypeFlags.Object)) return;
    if (checker.getIndexInfosOfType(type).length) { // a map (labels, data, ...)
      const idx = checker.getIndexInfosOfType(type)[0].type;
      for (const [k, v] of Object.entries(value)) walk(v, idx, where, `${at}.${k}`);
      return;
    }
    for (const [k, v] of Object.entries(value)) {
      const prop = type.getProperty(k);
      if (!prop) {
        error(where, `unknown field ${at}.${k} (not in ${checker.typeToString(type)})`);
        continue;
      }
      walk(v, checker.getTypeOfSymbol(prop), where, `${at}.${k}`);
    }
  };
  docs.forEach((d, i) => {
    const decl = decls.find((x) => x.name.getText() === `d${i}`);
    walk(d.obj, checker.getTypeAtLocation(decl.name), d.where, '');
  });
}

// ---- 3. references between the documents ----
const sets = separate ? files.map((f) => docs.filter((d) => d.file === f)) : [docs];
for (const set of sets) checkReferences(set);

// checkReferences(docs): the reference rules above, within one set of documents.
function checkReferences(docs) {
  const byKind = (kind) => docs.filter((d) => d.obj.kind === kind);
  const ns = (o) => (o.metadata && o.metadata.namespace) || 'default';
  function podSpecs(d) {
    const o = d.obj;
    if (o.kind === 'Pod') return [o.spec];
    if (['StatefulSet', 'Deployment', 'DaemonSet', 'ReplicaSet', 'Job'].includes(o.kind)) {
      return [o.spec && o.spec.template && o.spec.template.spec];
    }
    return [];
  }
  for (const d of byKind('StatefulSet')) {
    const name = d.obj.spec && d.obj.spec.serviceName;
    if (!name) continue;
    const svc = byKind('Service').find((s) => s.obj.metadata.name === name && ns(s.obj) === ns(d.obj));
    if (!svc) error(d.where, `serviceName ${name}: no Service ${name} in namespace ${ns(d.obj)} in these files`);
    else if (svc.obj.spec.clusterIP !== 'None') {
      error(d.where, `serviceName ${name}: Service ${name} is not headless (clusterIP: None)`);
    }
  }
  for (const d of docs) {
    for (const spec of podSpecs(d)) {
      if (!spec) continue;
      const volumes = new Set((spec.volumes || []).map((v) => v.name));
      for (const claim of (d.obj.spec.volumeClaimTemplates || [])) volumes.add(claim.metadata.name);
      const containers = [...(spec.initContainers || []), ...(spec.containers || [])];
      for (const c of containers) {
        const ports = new Set((c.ports || []).map((p) => p.name).filter(Boolean));
        for (const m of (c.volumeMounts || [])) {
          if (!volumes.has(m.name)) error(d.where, `container ${c.name}: volumeMount ${m.name} names no volume`);
        }
        for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
          const p = c[kind];
          const port = p && ((p.httpGet && p.httpGet.port) || (p.tcpSocket && p.tcpSocket.port));
          if (typeof port === 'string' && !ports.has(port)) {
            error(d.where, `container ${c.name}: ${kind} port ${port} is not a named port of the container`);
          }
        }
      }
    }
  }
  for (const d of byKind('Service')) {
    const sel = d.obj.spec.selector || {};
    const pods = docs.filter((w) => ns(w.obj) === ns(d.obj) && podSpecs(w).length && w.obj.spec.template &&
      Object.entries(sel).every(([k, v]) => (w.obj.spec.template.metadata.labels || {})[k] === v));
    if (Object.keys(sel).length && pods.length === 0) {
      error(d.where, 'selector matches no pod template in these files');
    }
    for (const p of (d.obj.spec.ports || [])) {
      if (typeof p.targetPort !== 'string') continue;
      const named = pods.some((w) => podSpecs(w)[0].containers.some((c) =>
        (c.ports || []).some((cp) => cp.name === p.targetPort)));
      if (pods.length && !named) error(d.where, `targetPort ${p.targetPort} is no named container port`);
    }
  }
  for (const d of byKind('Certificate')) {
    const ref = d.obj.spec.issuerRef || {};
    const kind = ref.kind || 'Issuer';
    const found = byKind(kind).some((i) => i.obj.metadata.name === ref.name &&
      (kind === 'ClusterIssuer' || ns(i.obj) === ns(d.obj)));
    if (!found) error(d.where, `issuerRef ${kind}/${ref.name} is not in these files`);
  }
}

console.log(`validate.mjs: ${docs.length} documents in ${files.length} files, ${failed} errors`);
process.exit(failed ? 1 : 0);
