// expect: refused no-eval
function hostile(ctx) {
  return String(eval('1 + 1'));
}
