// expect: refused no-eval
function hostile(ctx) {
  return String((0, eval)('1 + 1'));
}
