// expect: refused no-wasm
function hostile(ctx) {
  const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
  return String(new WebAssembly.Module(bytes));
}
