// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // One growing array: each growth copies it into a new backing store half as large again.
  const a = [];
  for (let i = 0; ; i++) a.push(i + 0.5);
}
