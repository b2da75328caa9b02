// expect: refused no-atomics
function hostile(ctx) {
  return String(new SharedArrayBuffer(1024).byteLength);
}
