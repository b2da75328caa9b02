// expect: refused no-this
function hostile(ctx) {
  const o = { m() { return this; } };
  const m = o.m;
  return String(m());
}
