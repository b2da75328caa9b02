// expect: placeholder error
function render(ctx) {
  // V8's stack guard throws RangeError: Maximum call stack size exceeded.
  function down(n) { return down(n + 1) + 1; }
  return String(down(0));
}
