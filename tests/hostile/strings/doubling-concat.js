// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // Doubling by concatenation, flattened each time.
  let s = 'xy';
  for (;;) { s = s + s; s.indexOf('z'); }
}
