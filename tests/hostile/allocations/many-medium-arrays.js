// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  const kept = [];
  for (;;) kept.push(new Array(100000).fill(kept.length));
}
