// Bundles the console (src/main.js with CodeMirror) and its stylesheet into dist/, which is
// committed and embedded in the server binary (src/http/console.rs). Deterministic: the same
// sources and lockfile give the same bytes (.ci/run rebuilds and compares).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const common = { bundle: true, minify: true, legalComments: "none", charset: "utf8", logLevel: "warning", absWorkingDir: here };
await build({ ...common, entryPoints: ["src/main.js"], outfile: join(here, "dist/console.js"), format: "esm", target: "es2020" });
await build({ ...common, entryPoints: ["src/console.css"], outfile: join(here, "dist/console.css") });
