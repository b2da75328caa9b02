// expect: refused no-atomics
function hostile(ctx) {
  return String(Atomics.wait(new Int32Array(4), 0, 0, 10000));
}
