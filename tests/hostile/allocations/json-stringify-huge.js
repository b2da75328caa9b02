// expect: placeholder heap-limit|error
// limits: {"blockCpuMs": 5000, "pageCpuMs": 10000}
function render(ctx) {
  // JSON of a structure far larger than the heap.
  const rows = new Array(20000).fill('x'.repeat(10000));
  return '<p>' + JSON.stringify([rows, rows, rows]).length + '</p>';
}
