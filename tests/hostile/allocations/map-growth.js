// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  const m = new Map();
  for (let i = 0; ; i++) m.set(i, i);
}
