// expect: refused no-globalthis
function hostile(ctx) {
  return String(window.location);
}
