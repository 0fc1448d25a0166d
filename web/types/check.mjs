// Compares the API declared in web/static/cascade.d.ts with the one cascade.js has when loaded:
// the module's exports, CascadeClient's public methods, instance properties and static members,
// CascadeError's fields, and the events (the keys of CascadeEventMap against the event names the
// JavaScript emits). A name on one side only fails the check. Run by TestTypeDeclarations, or
// `npm test` here after `npm ci`.
//
// CASCADE_TYPESCRIPT, when set, is the directory of the typescript package to use (the Go test
// installs it in a temporary directory, so as not to write into the source tree).

import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const staticDir = join(here, "..", "static");
const require = createRequire(import.meta.url);
const ts = require(process.env.CASCADE_TYPESCRIPT || "typescript");

const problems = [];

function compare(what, declared, actual, mayBeEmpty = false) {
  const d = new Set(declared);
  const a = new Set(actual);
  for (const n of a) if (!d.has(n)) problems.push(`${what}: "${n}" is in the JavaScript but not in cascade.d.ts`);
  for (const n of d) if (!a.has(n)) problems.push(`${what}: "${n}" is in cascade.d.ts but not in the JavaScript`);
  if (d.size === 0 && !mayBeEmpty) problems.push(`${what}: nothing declared (the check found no declarations)`);
}

// ---- the declarations --------------------------------------------------------------------------

const dtsPath = join(staticDir, "cascade.d.ts");
const source = ts.createSourceFile(dtsPath, readFileSync(dtsPath, "utf8"), ts.ScriptTarget.ES2022, true);

const isExported = (node) => (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export) !== 0;
const isStatic = (node) => (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Static) !== 0;
const nameOf = (node) => node.name && node.name.getText(source);

const declaredExports = new Set();
const classes = new Map(); // name -> ClassDeclaration
let eventMap = null;
for (const st of source.statements) {
  if (ts.isClassDeclaration(st) && isExported(st)) {
    classes.set(st.name.text, st);
    // Classes are values: interfaces and types are erased and have no counterpart in the JS.
    declaredExports.add(st.name.text);
  }
  if (ts.isExportAssignment(st)) declaredExports.add("default");
  if (ts.isInterfaceDeclaration(st) && st.name.text === "CascadeEventMap") eventMap = st;
  if ((ts.isFunctionDeclaration(st) || ts.isVariableStatement(st)) && isExported(st)) {
    for (const d of st.declarationList ? st.declarationList.declarations : [st]) declaredExports.add(d.name.getText(source));
  }
}

// EventTarget's methods are inherited: the declarations overload them for typed events only.
const inherited = new Set(["addEventListener", "removeEventListener", "dispatchEvent"]);

function members(cls) {
  const out = { methods: [], props: [], statics: [] };
  for (const m of cls.members) {
    const n = nameOf(m);
    if (!n || inherited.has(n)) continue;
    if (isStatic(m)) out.statics.push(n);
    else if (ts.isMethodDeclaration(m)) out.methods.push(n);
    else if (ts.isPropertyDeclaration(m)) out.props.push(n);
  }
  return out;
}

// ---- the JavaScript ----------------------------------------------------------------------------

const mod = await import(join(staticDir, "cascade.js"));

function jsMethods(cls, stopAt) {
  const names = new Set();
  for (let p = cls.prototype; p && p !== stopAt; p = Object.getPrototypeOf(p)) {
    for (const n of Object.getOwnPropertyNames(p)) {
      if (n === "constructor" || n.startsWith("_")) continue;
      if (typeof Object.getOwnPropertyDescriptor(p, n).value === "function") names.add(n);
    }
  }
  return [...names];
}

const publicKeys = (obj) => Object.keys(obj).filter((n) => !n.startsWith("_"));

compare("exports", declaredExports, Object.keys(mod));

const client = classes.get("CascadeClient");
if (!client) problems.push("cascade.d.ts declares no class CascadeClient");
else {
  const d = members(client);
  compare("CascadeClient methods", d.methods, jsMethods(mod.CascadeClient, EventTarget.prototype));
  compare("CascadeClient properties", d.props, publicKeys(new mod.CascadeClient()));
  compare("CascadeClient static members", d.statics, Object.keys(mod.CascadeClient));
}

const error = classes.get("CascadeError");
if (!error) problems.push("cascade.d.ts declares no class CascadeError");
else {
  const d = members(error);
  // message and stack come from Error, declared by the DOM library.
  const own = publicKeys(new mod.CascadeError("code", "message")).filter((n) => n !== "message" && n !== "stack");
  compare("CascadeError properties", d.props, own);
  compare("CascadeError methods", d.methods, jsMethods(mod.CascadeError, Error.prototype), true);
}

// Events: every `_emit("name"` of the modules is in CascadeEventMap, and every key of the map is
// emitted somewhere.
const emitted = new Set();
for (const file of ["cascade.js", ...readdirSync(join(staticDir, "cascade")).map((f) => join("cascade", f))]) {
  if (!file.endsWith(".js")) continue;
  const text = readFileSync(join(staticDir, file), "utf8");
  for (const m of text.matchAll(/_emit\(\s*"([A-Za-z]+)"/g)) emitted.add(m[1]);
}
if (!eventMap) problems.push("cascade.d.ts declares no interface CascadeEventMap");
else compare("events", eventMap.members.map(nameOf), emitted);

if (problems.length > 0) {
  console.error(`cascade.d.ts does not match cascade.js:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`cascade.d.ts matches cascade.js: ${declaredExports.size} exports, ${emitted.size} events`);
