// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // Many medium strings kept alive.
  const kept = [];
  for (;;) kept.push('x'.repeat(1 << 20) + kept.length);
}
