// expect: refused no-this
function hostile(ctx) {
  function inner() { return this; }
  return String(inner());
}
