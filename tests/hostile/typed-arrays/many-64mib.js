// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  const kept = [];
  for (let i = 0; i < 100; i++) kept.push(new Uint8Array(64 << 20).fill(1));
  return '<p>' + kept.length + '</p>';
}
