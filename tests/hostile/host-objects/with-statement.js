// expect: refused no-with
function hostile(ctx) {
  with (ctx) { return String(cart); }
}
