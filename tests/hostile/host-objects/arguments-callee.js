// expect: refused no-callee
function hostile(ctx) {
  return String(arguments.callee);
}
