// Runs a wasm32-wasip1 program under Node.js's WASI with V8, the engine Envoy embeds:
//   node tests/bench/wasi.mjs FILE.wasm [ARGS...]
// The program sees ARGS and the environment; its exit code is this script's.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [file, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
// The proxy-wasm host functions the library links against are never called outside Envoy.
const env = Object.fromEntries(
  WebAssembly.Module.imports(module)
    .filter((i) => i.module === "env")
    .map((i) => [i.name, () => { throw new Error(`host function ${i.name} called outside Envoy`); }]),
);
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
// proxy-wasm exports `_initialize` too, which Node refuses beside `_start`: hand it only these.
const { _start, memory } = instance.exports;
process.exitCode = wasi.start({ exports: { _start, memory } });
