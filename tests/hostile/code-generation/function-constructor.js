// expect: refused no-function-constructor
function hostile(ctx) {
  return new Function('return "x"')();
}
