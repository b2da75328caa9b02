// expect: placeholder error
function render(ctx) {
  // Large frames and two functions calling each other.
  function a(n, x1, x2, x3, x4, x5, x6, x7, x8) { const t = [n, x1, x2, x3, x4, x5, x6, x7, x8]; return b(n + 1, t) + t.length; }
  function b(n, t) { return a(n, t, t, t, t, t, t, t, t); }
  return String(a(0));
}
