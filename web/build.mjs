// Builds the dashboard into dist/: index.html and assets/{app.js,app.css,favicon.svg}.
// File names carry no hash: the daemon serves them with an ETag and `Cache-Control: no-cache`.
import * as esbuild from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

await rm("dist", { recursive: true, force: true });
await mkdir("dist/assets", { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome109", "firefox115", "safari16"],
  outdir: "dist/assets",
  legalComments: "none",
  logLevel: "warning",
});
await copyFile("favicon.svg", "dist/assets/favicon.svg");
// Last: scripts/build-web compares the sources with this file's time.
await copyFile("index.html", "dist/index.html");
