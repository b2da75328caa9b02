// expect: placeholder heap-limit
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // Catching the RangeError does not make the block's output count.
  const kept = [];
  try { for (let i = 0; i < 100; i++) kept.push(new Float64Array(8 << 20).fill(1)); } catch (e) { return '<p>caught</p>'; }
  return '<p>' + kept.length + '</p>';
}
