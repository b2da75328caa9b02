// expect: refused no-globalthis
function hostile(ctx) {
  return Object.keys(globalThis).join(',');
}
